"""Random search: independent samples, each domain on its own scale. Seeded and reproducible."""

from __future__ import annotations

from typing import Any

import numpy as np

from caviar.searchers.base import Searcher


class RandomSearcher(Searcher):
    MULTI_OBJECTIVE = True  # it learns nothing, whatever the sweep optimizes

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(self.seed)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        return self.space.sample(self.rng)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
