"""The simulator's HTTP surface: one module of endpoints per API family, and the route table they share."""
