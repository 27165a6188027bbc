"""The ``nao-ws`` command line: one click group (``main``), a module per group of commands. Nothing here
imports torch before a command runs, so ``--help`` answers at once."""
from .main import cli, main

__all__ = ["cli", "main"]
