"""The one loader for objects named "module:attr" in a spec: a user's train function, a
third-party searcher."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def load_object(target: str, search_path: str | None = None) -> Any:
    """Import "module:attr", looking in `search_path` (the user's working directory) too.
    Raises ImportError or AttributeError, whose messages the callers turn into their own."""
    module_name, _, attr = target.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    return getattr(importlib.import_module(module_name), attr)
