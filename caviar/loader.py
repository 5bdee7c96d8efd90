"""The one loader for objects named "module:attr" in a spec: a user's train function, a
third-party searcher."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any

from caviar.errors import CaviarError


def load_object(target: str, search_path: str | None = None) -> Any:
    """Import "module:attr", looking in `search_path` (the user's working directory) too.
    Raises ImportError or AttributeError, whose messages the callers turn into their own."""
    module_name, _, attr = target.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise
    except Exception as e:  # the module does not parse, or raised while it was imported
        if isinstance(e, SyntaxError):
            where, what = f"{e.filename}:{e.lineno}", e.msg
        else:
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where, what = f"{frame.filename}:{frame.lineno}", str(e)
        raise ImportError(f"{type(e).__name__} at {where}: {what}") from None
    return getattr(module, attr)


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
    check_takes_config(fn, target)
    return fn


def check_takes_config(fn: Callable[..., Any], target: str) -> None:
    """A train function is called with one argument, the config dict: one that cannot take it
    would fail in every trial."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or an extension's function: nothing to read
        return
    try:
        signature.bind({})
    except TypeError as e:
        raise CaviarError(
            f"train.function: {target!r} has the signature {signature}, which cannot take the "
            f"one argument caviar calls it with ({e}); define it as def train(config): ..."
        ) from None
