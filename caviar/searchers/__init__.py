"""Searchers by name. Third-party searchers are named "module:Class" in the spec."""

from __future__ import annotations

from caviar.loader import load_object
from caviar.searchers.base import NoOptions, Outcome, Searcher

# name -> "module:Class". hyperopt itself is imported only when a TPE searcher is built, so
# `caviar validate` does not pay for it.
SEARCHERS: dict[str, str] = {
    "random": "caviar.searchers.random:RandomSearcher",
    "grid": "caviar.searchers.grid:GridSearcher",
    "tpe": "caviar.searchers.tpe:TPESearcher",
    "coarse_to_fine": "caviar.searchers.coarse_to_fine:CoarseToFineSearcher",
    "optuna_tpe": "caviar.searchers.optuna:OptunaTPESearcher",
    "optuna_cmaes": "caviar.searchers.optuna:OptunaCmaEsSearcher",
    "optuna_motpe": "caviar.searchers.optuna:OptunaMOTPESearcher",
    "optuna_nsga2": "caviar.searchers.optuna:OptunaNSGA2Searcher",
}


def searcher_class(name: str) -> type[Searcher]:
    """The class for a registered name or a "module:Class" path."""
    cls = load_object(SEARCHERS.get(name, name))
    if not (isinstance(cls, type) and issubclass(cls, Searcher)):
        raise TypeError(f"{name} is not a subclass of caviar.searchers.Searcher")
    return cls


def options_class(name: str) -> type:
    return searcher_class(name).Options


__all__ = ["SEARCHERS", "NoOptions", "Outcome", "Searcher", "options_class", "searcher_class"]
