"""mvx: multi-version execution of one program as variants of different ISAs."""

__version__ = "0.1.0"


class MvxError(Exception):
    """An error a user can act on; the CLI prints it as one line, never as a traceback."""


# The library (mvx.api), imported when first used so that the command starts fast.
_API = ("open_run", "open_leader", "open_follower", "Run", "Outcome", "Divergence", "Event", "VariantError", "PortTimeout", "RunFailed")


def __getattr__(name: str):
    if name in _API:
        from mvx import api

        return getattr(api, name)
    raise AttributeError(f"module 'mvx' has no attribute {name!r}")
