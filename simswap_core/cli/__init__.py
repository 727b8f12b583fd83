"""The ``simswap`` command line: one module per command (swap, faces, convert, demo); ``main`` dispatches."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
