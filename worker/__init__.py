"""The worker: a sandboxed process that turns one file at a time into a note."""

__version__ = "0.1.0"
