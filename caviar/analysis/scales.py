"""Where a value sits in its domain, on the domain's own scale: positions of choices, unit
coordinates (`caviar.space.Numeric.to_unit`) and matplotlib axes laid out on that scale. The
scale's transform itself lives in `caviar.space` only."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from caviar.space import Choice, Domain, Numeric

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _choice_positions(domain: Choice, values: pd.Series) -> np.ndarray:
    index = {_key(v): i for i, v in enumerate(domain.values)}
    return np.array([index.get(_key(v), np.nan) for v in values], dtype=float)


def _key(value: Any) -> Any:
    # Parquet gives numpy scalars back; choices in spec.yaml are plain Python values.
    value = value.item() if isinstance(value, np.generic) else value
    return (type(value) is bool, value)


def _positions(domain: Domain, values: pd.Series) -> np.ndarray:
    if isinstance(domain, Choice):
        return _choice_positions(domain, values)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _unit(domain: Domain, value: Any, clip: bool = True) -> float:
    """The value's place in its domain, 0 to 1 on the domain's own scale (past the ends when
    not `clip`ped); NaN for a value the domain cannot place."""
    try:
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(domain, Choice):
            return float(_choice_positions(domain, pd.Series([value]))[0] + 0.5) / len(
                domain.values
            )
        u = domain.to_unit(value)
        return float(min(max(u, 0.0), 1.0)) if clip else float(u)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return math.nan


def _domain_ends(domain: Domain) -> tuple[str, str]:
    if isinstance(domain, Choice):
        return str(domain.values[0]), str(domain.values[-1])
    if isinstance(domain, Numeric):
        return f"{domain.low:.3g}", f"{domain.high:.3g}"
    return "", ""


def _elementwise(f: Callable[[float], float]) -> Callable[[Any], np.ndarray]:
    """`f` over an array, as matplotlib's function scales call it; NaN where `f` cannot go."""

    def apply_one(v: float) -> float:
        try:
            return float(f(float(v)))
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.nan

    return np.vectorize(apply_one, otypes=[float])


def _set_scale(ax: Axes, domain: Domain, axis: str = "x") -> None:
    """The axis on the domain's scale: log for log domains, the domain's own transform (1 - value
    on a log scale) for one_minus_log ones, one tick per value for choices."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
    ax_obj = ax.xaxis if axis == "x" else ax.yaxis
    if isinstance(domain, Choice):
        ax_obj.set_major_locator(FixedLocator(range(len(domain.values))))
        ax_obj.set_ticklabels([str(v) for v in domain.values])
        (ax.set_xlim if axis == "x" else ax.set_ylim)(-0.5, len(domain.values) - 0.5)
        return
    if not isinstance(domain, Numeric):
        return
    if domain.scale == "log":
        set_scale("log")
        low, high = domain.low, domain.high
        if low > 0 and high / low < 300:
            # Under ~2 decades matplotlib labels minor ticks too, and they collide.
            ax_obj.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax_obj.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax_obj.set_minor_formatter(NullFormatter())
    elif domain.scale == "one_minus_log":
        transform = (_elementwise(domain.to_unit), _elementwise(domain.value_at))
        set_scale("function", functions=transform)
        ticks = [1 - 10.0**-k for k in range(0, 8)]
        low, high = domain.low, domain.high
        inside = [v for v in ticks if low <= v <= high] or [low, high]
        ax_obj.set_major_locator(FixedLocator(sorted({low, *inside, high})))
        ax_obj.set_ticklabels([f"{v:.4g}" for v in sorted({low, *inside, high})])


def _scale_note(domain: Domain) -> str:
    scale = domain.scale if isinstance(domain, Numeric) else "linear"
    return {"log": " (log)", "one_minus_log": " (log of 1 - x)"}.get(scale, "")
