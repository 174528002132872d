"""Watching the desk from outside: health checks, the database gauges, the metrics server and marks."""
