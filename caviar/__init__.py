"""caviar: many models trained in parallel with different hyperparameters, the best kept."""

from caviar.session import get_checkpoint, report

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "get_checkpoint", "load", "report", "resume", "run", "submit"]

_API = ("Run", "load", "resume", "run", "submit")


def __getattr__(name: str):
    """The Python API (`caviar.api`), imported on first use: `import caviar` stays light (no
    Ray, no torch, no pandas) for the train functions that only call `caviar.report`."""
    if name in _API:
        from caviar import api

        return getattr(api, name)
    raise AttributeError(f"module 'caviar' has no attribute {name!r}")
