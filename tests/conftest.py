"""Shared fixtures. Tests that start Ray use a private local instance with its own temp dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

QUICK_SPEC = {
    "name": "t",
    "metric": "val_acc",
    "mode": "max",
    "train": {"task": "digits", "model": "mlp", "max_epochs": 4, "fixed": {"optimizer": "adamw"}},
    "space": {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "hidden": {"randint": [16, 64]},
        "batch_size": {"choice": [32, 64]},
    },
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "budget": {"num_samples": 8},
}


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec dict (QUICK_SPEC updated with the given keys) to a YAML file."""

    def write(raw: dict | None = None, text: str | None = None, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text if text is not None else yaml.safe_dump({**QUICK_SPEC, **(raw or {})}, sort_keys=False))
        return path

    return write


@pytest.fixture
def private_ray_tmp(monkeypatch: pytest.MonkeyPatch):
    """Point Ray at a private temp dir (short, for its Unix sockets); nothing is shared."""
    d = tempfile.mkdtemp(prefix="caviar-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", d)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield Path(d)
