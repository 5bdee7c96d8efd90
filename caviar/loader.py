"""The one loader for objects named "module:attr" in a spec: a user's train function, a
third-party searcher."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from caviar.errors import CaviarError


def load_object(target: str, search_path: str | None = None) -> Any:
    """Import "module:attr", looking in `search_path` (the user's working directory) too.
    Raises ImportError or AttributeError, whose messages the callers turn into their own."""
    module_name, _, attr = target.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    return getattr(importlib.import_module(module_name), attr)


def load_function(target: str, search_path: str | None = None) -> Callable[[dict], Any]:
    """The user's train function "module:function", from `search_path` (the user's working
    directory) or an installed module."""
    try:
        fn = load_object(target, search_path)
    except (ImportError, AttributeError) as e:
        raise CaviarError(
            f"train.function: cannot import {target!r} ({type(e).__name__}: {e}); the module "
            "must be importable from the working directory or installed"
        ) from None
    if not callable(fn):
        raise CaviarError(f"train.function: {target!r} is not callable")
    return fn
