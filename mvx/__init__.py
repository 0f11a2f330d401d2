"""mvx: multi-version execution of one program as variants of different ISAs."""

__version__ = "0.1.0"


class MvxError(Exception):
    """An error a user can act on; the CLI prints it as one line, never as a traceback."""
