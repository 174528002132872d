"""The workflow language: workflow files as a typed spec, loaded with positions and validated.

Pure: reads text and returns specs or located problems; no database, no exchange.
"""
