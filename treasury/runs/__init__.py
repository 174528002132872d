"""Runs: starting them, people's signed decisions on them, executing their steps, reading them.

The I/O around the engine: every state change is committed together with its audit event.
"""
