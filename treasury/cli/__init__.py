"""The ``treasury`` command line: parse, call library code, print. Nothing else."""

from treasury.cli.main import main

__all__ = ["main"]
