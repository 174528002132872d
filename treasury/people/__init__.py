"""People, their credentials and the signed decisions they make."""
