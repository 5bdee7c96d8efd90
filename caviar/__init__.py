"""caviar: many models trained in parallel with different hyperparameters, the best kept."""

from caviar.session import get_checkpoint, report

__version__ = "0.1.0"
__all__ = ["__version__", "get_checkpoint", "report"]
