"""A W&B sweep config or a Ray Tune search space as a caviar spec.

`from_wandb` and `from_tune` return the spec as plain data, the shape a YAML spec has, and
notes for the user: what was mapped approximately and what has no equivalent. `to_yaml` writes
both, the notes as comments. What cannot be mapped raises `SpecError`, one line per problem,
naming its key path, what caviar expects and what was found. What an importer cannot know (the
train function, the metric of a bare Ray search space) is written as a placeholder in angle
brackets, which `caviar validate` refuses until it is replaced.

Ray is never imported here: a Ray Tune search space holds Ray's own objects, so Ray is already
imported when there is one to read, and their classes are looked up in `sys.modules`.
"""

from __future__ import annotations

import ast
import datetime
import inspect
import json
import math
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from caviar import train as builtin
from caviar.errors import SpecError, did_you_mean

TRAIN_PLACEHOLDER = "<module:function>"
METRIC_PLACEHOLDER = "<metric>"
MODE_PLACEHOLDER = "<max or min>"
DEFAULT_SAMPLES = 20  # caviar's default budget.num_samples
_FIFO = (
    "No trial stops early; caviar's default scheduler, caviar, stops trials early only at "
    "rungs whose ranking proved to predict the final one: try scheduler: {name: caviar}"
)
MAX_CHOICES = 100
"""Ray's qrandint values become a choice of the multiples (integers, as Ray gives them) up to
this many; beyond, a quniform (floats)."""

Converted = tuple[Any, "str | None"]
"""A caviar domain as a spec writes it, and a note about the conversion (or None)."""


def _flow(domain: Mapping[str, Any]) -> str:
    """A domain as one line of YAML: {loguniform: [0.0001, 0.1]}."""
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in domain.items()) + "}"


def _num(x: float) -> float:
    """A computed bound to 6 significant digits, as a user would write it."""
    return float(f"{x:.6g}")


def _unbounded(what: str, kind: str, center: float, spread: float, q=None, log=False) -> NoReturn:
    """Refuse an unbounded distribution, giving the bounded domain to write instead: center
    +- 2 spreads (95% of a normal's mass), of ln x for a log-normal."""
    lo, hi = center - 2 * spread, center + 2 * spread
    if log:
        lo, hi = math.exp(lo), math.exp(hi)
    fix = {kind: [_num(lo), _num(hi), *([q] if q is not None else [])]}
    within = "ln x within " if log else ""
    raise ValueError(
        f"{what} is unbounded, and caviar's domains are bounded; write {_flow(fix)} instead "
        f"({within}mean +- 2 standard deviations: 95% of its mass)"
    )


def _choice(values: Any) -> Converted:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"expected a non-empty list of values, found {values!r}")
    if any(isinstance(v, Mapping) for v in values):
        raise ValueError(
            "a choice among dicts: caviar chooses among values (a choice among mappings is a "
            "conditional space there); make each dict's entries parameters of their own, or "
            "choose among names and build the dicts in the train function"
        )
    return {"choice": list(values)}, None


def _ints(kind: str, lo: int, hi: int) -> dict[str, Any]:
    return {"value": lo} if lo == hi else {kind: [lo, hi]}


# --- Ray Tune -----------------------------------------------------------------------------


def _snap(bound: float, q: float, round_fn: Callable[[float], float]) -> float:
    """A bound moved inwards onto the multiples of q, as Ray's `Quantized` does."""
    scaled = bound / q
    index = round(scaled) if math.isclose(scaled, round(scaled)) else round_fn(scaled)
    return _num(index * q)


def _ray_float(lower: float, upper: float, q: float | None = None, log: bool = False) -> Converted:
    """uniform, loguniform, quniform, qloguniform: Ray samples [lower, upper], or for a q its
    multiples between the bounds moved inwards onto them, as caviar does."""
    kind = "loguniform" if log else "uniform"
    if q is None:
        return {kind: [lower, upper]}, None
    return {"q" + kind: [_snap(lower, q, math.ceil), _snap(upper, q, math.floor), q]}, None


def _ray_int(lower: int, upper: int, q: int = 1, log: bool = False) -> Converted:
    """randint, lograndint, qrandint, qlograndint. Ray: with q == 1 `upper` is excluded; with
    q > 1 the values are the multiples of q from ceil(lower / q) * q to floor(upper / q) * q,
    both included. caviar's integer domains include both bounds."""
    kind = "lograndint" if log else "randint"
    if q == 1:
        note = f"Ray's upper bound {upper} is excluded, caviar's included: [{lower}, {upper - 1}]"
        return _ints(kind, lower, upper - 1), note
    lo, hi = math.ceil(lower / q) * q, math.floor(upper / q) * q
    if not log and (hi - lo) // q + 1 <= MAX_CHOICES:
        return {"choice": list(range(lo, hi + 1, q))}, None
    return {("qloguniform" if log else "quniform"): [lo, hi, q]}, (
        f"caviar's {'qloguniform' if log else 'quniform'} gives floats ({lo}.0, ...) where Ray "
        "gave integers: a train function of your own must int() them"
    )


def _sample_from(func: Any) -> NoReturn:
    raise ValueError(
        "tune.sample_from runs a function caviar cannot see into; write the values it gives as "
        "a domain ({choice: [...]}, {uniform: [low, high]}, ...), or compute the value from "
        "the others in the train function"
    )


# Ray Tune's domain functions, with Ray's own parameter names (ray/tune/search/sample.py), as
# caviar domains. Ray domain objects are read back into these calls (`_ray_call`), and
# `caviar validate` reads a spec value such as "tune.loguniform(1e-4, 1e-1)" through them.
RAY_DOMAINS: dict[str, Callable[..., Converted]] = {
    "uniform": lambda lower, upper: _ray_float(lower, upper),
    "quniform": lambda lower, upper, q: _ray_float(lower, upper, q),
    "loguniform": lambda lower, upper, base=None: _ray_float(lower, upper, log=True),
    "qloguniform": lambda lower, upper, q, base=None: _ray_float(lower, upper, q, log=True),
    "randint": lambda lower, upper: _ray_int(lower, upper),
    "lograndint": lambda lower, upper, base=None: _ray_int(lower, upper, log=True),
    "qrandint": lambda lower, upper, q=1: _ray_int(lower, upper, q),
    "qlograndint": lambda lower, upper, q, base=None: _ray_int(lower, upper, q, log=True),
    "choice": _choice,
    "grid_search": _choice,
    "randn": lambda mean=0.0, sd=1.0: _unbounded("randn", "uniform", mean, sd),
    "qrandn": lambda mean, sd, q: _unbounded("qrandn", "quniform", mean, sd, q),
    "sample_from": _sample_from,
}


def _ray_call(value: Any) -> tuple[str, tuple] | None:
    """A Ray domain object (or a grid_search dict) as the call that makes it: its function's
    name in `RAY_DOMAINS` and arguments; None for a constant."""
    if isinstance(value, Mapping) and set(value) == {"grid_search"}:
        return "grid_search", (value["grid_search"],)
    if isinstance(value, Mapping) and set(value) == {"eval"}:  # Ray's lambda in eval syntax
        return "sample_from", (value["eval"],)
    sample = sys.modules.get("ray.tune.search.sample")
    if sample is None or not isinstance(value, sample.Domain):
        return None
    if isinstance(value, sample.Function):
        return "sample_from", (value.func,)
    if isinstance(value, sample.Categorical):
        return ("grid_search" if value.is_grid() else "choice"), (value.categories,)
    sampler = value.get_sampler()
    q = sampler.q if isinstance(sampler, sample.Quantized) else None
    base = sampler.get_sampler() if q is not None else sampler
    if isinstance(base, sample.Normal):
        return ("randn", (base.mean, base.sd)) if q is None else ("qrandn", (base.mean, base.sd, q))
    name = (
        ("q" if q is not None else "")
        + ("log" if isinstance(base, sample.LogUniform) else "")
        + ("randint" if isinstance(value, sample.Integer) else "uniform")
    )
    return name, (value.lower, value.upper, *([q] if q is not None else []))


def _plain(value: Any) -> Any:
    """A value as YAML writes it: numpy scalars as Python numbers, tuples as lists; ValueError
    for objects a spec cannot hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(
        f"{value!r} ({type(value).__name__}) is not a value a YAML spec can hold; set it in the "
        "train function, or choose among names and build it there"
    )


def _searched_inside(value: Any) -> bool:
    if isinstance(value, Mapping):
        return _ray_call(value) is not None or any(map(_searched_inside, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_searched_inside, value))
    return _ray_call(value) is not None


_RAY_CODE = re.compile(
    r"^\s*(?:(?:ray\.)?tune\.)?(?P<fn>" + "|".join(RAY_DOMAINS) + r")\s*\((?P<args>.*)\)\s*$",
    re.S,
)


def ray_code_problem(text: str) -> str | None:
    """What to write instead of Ray Tune code given as a spec value ("tune.loguniform(1e-4,
    1e-1)", "randint(1, 10)"), which would otherwise be a fixed string; None for other text."""
    m = _RAY_CODE.match(text)
    if m is None:
        return None
    head = f"{text.strip()!r} is Ray Tune code, which a spec does not run (it is a string)"
    try:
        call = ast.parse(f"f({m['args']})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]  # type: ignore[attr-defined]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}  # type: ignore
    except (SyntaxError, ValueError, TypeError, AttributeError):
        args = None
    try:
        domain, note = RAY_DOMAINS[m["fn"]](*args, **kwargs) if args is not None else (None, None)
    except ValueError as e:
        return f"{head}; {e}"
    except TypeError:
        domain = None
    if domain is None:
        return f"{head}; write it as a caviar domain such as {{loguniform: [low, high]}}"
    return f"{head}; write it as {_flow(domain)}" + (f" ({note})" if note else "")


# Ray Tune's schedulers (by class name; ASHAScheduler is AsyncHyperBandScheduler) as caviar's,
# each option read from the attribute of Ray's object (ray/tune/schedulers/). "max_epochs" is
# Ray's max_t: caviar's train.max_epochs.
RAY_SCHEDULERS: dict[str, tuple[str, dict[str, str]]] = {
    "FIFOScheduler": ("fifo", {}),
    "AsyncHyperBandScheduler": (
        "asha",
        {"reduction_factor": "_reduction_factor", "max_epochs": "_max_t"},
    ),
    "HyperBandScheduler": ("hyperband", {"reduction_factor": "_eta", "max_epochs": "_max_t_attr"}),
    "MedianStoppingRule": (
        "median",
        {"grace_period": "_grace_period", "min_samples_required": "_min_samples_required"},
    ),
    "PopulationBasedTraining": (
        "pbt",
        {
            "perturbation_interval": "_perturbation_interval",
            "quantile_fraction": "_quantile_fraction",
            "resample_probability": "_resample_probability",
        },
    ),
}
_TIME_VALUED = ("grace_period", "perturbation_interval", "max_epochs")
_EPOCH_ATTRS = ("training_iteration", "epoch")


def _ray_scheduler(s: Any, notes: list[str]) -> dict[str, Any] | None:
    """The scheduler section (with "max_epochs" for train.max_epochs), or None: caviar's
    default."""
    kind = type(s).__name__ if s is not None else "FIFOScheduler"
    if kind not in RAY_SCHEDULERS:
        notes.append(
            f"scheduler: Ray's {kind} has no caviar equivalent; left out, so caviar's own "
            "scheduler stops trials early (see README.md, Schedulers)"
        )
        return None
    name, attrs = RAY_SCHEDULERS[kind]
    options = {k: getattr(s, a) for k, a in attrs.items() if getattr(s, a, None) is not None}
    if name == "asha":  # bracket 0's rungs are grace_period * rf**k, highest first
        options["grace_period"] = s._brackets[0]._rungs[-1][0] if s._brackets[0]._rungs else 1
        options["brackets"] = len(s._brackets)
    for key in _TIME_VALUED:
        if isinstance(options.get(key), float) and options[key].is_integer():
            options[key] = int(options[key])
    time_attr = getattr(s, "_time_attr", "training_iteration")
    if time_attr not in _EPOCH_ATTRS:
        dropped = [k for k in _TIME_VALUED if options.pop(k, None) is not None]
        notes.append(
            f"scheduler: Ray's {kind} counted {time_attr}; caviar counts epochs (reports), so "
            f"{', '.join(dropped) or 'nothing'} took caviar's defaults: set them in epochs"
        )
    if name == "fifo":
        notes.append(f"scheduler: fifo, as Ray's default. {_FIFO}")
    if name == "pbt" and (mutations := getattr(s, "_hyperparam_mutations", None)):
        notes.append(
            f"scheduler: Ray's PBT mutated {', '.join(map(str, mutations))}; caviar's pbt "
            "perturbs every searched parameter (the built-in train function's: those that "
            "keep the model's shape); fix any that must not change"
        )
    return {"name": name, **options}


# Optuna's samplers (by class name) as caviar's searchers, with their n_startup_trials.
OPTUNA_SAMPLERS = {
    "TPESampler": "optuna_tpe",
    "CmaEsSampler": "optuna_cmaes",
    "RandomSampler": "random",
}


def _hyperopt(alg: Any) -> dict[str, Any]:
    given = getattr(getattr(alg, "algo", None), "keywords", {})  # tpe.suggest's partial
    return {
        "name": "tpe",
        **({"n_startup": given["n_startup_jobs"]} if "n_startup_jobs" in given else {}),
        **({"gamma": given["gamma"]} if "gamma" in given else {}),
    }


def _optuna(alg: Any) -> dict[str, Any]:
    sampler = getattr(alg, "_sampler", None)
    kind = type(sampler).__name__ if sampler is not None else "TPESampler"
    name = OPTUNA_SAMPLERS.get(kind)
    if name is None:
        raise ValueError(
            f"Optuna's {kind} has no caviar searcher (expected one of {', '.join(OPTUNA_SAMPLERS)})"
        )
    n_startup = getattr(sampler, "_n_startup_trials", None)
    return {"name": name, **({"n_startup": n_startup} if n_startup and name != "random" else {})}


# Ray Tune's search algorithms (by class name) as caviar's searchers.
RAY_SEARCHERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "BasicVariantGenerator": lambda alg: {"name": "random"},
    "HyperOptSearch": _hyperopt,
    "OptunaSearch": _optuna,
}


def _ray_searcher(alg: Any, notes: list[str]) -> tuple[dict[str, Any], int | None]:
    """The searcher section and the max_concurrent of a ConcurrencyLimiter around it."""
    limit = None
    while type(alg).__name__ == "ConcurrencyLimiter":
        limit, alg = alg.max_concurrent, alg.searcher
    kind = type(alg).__name__ if alg is not None else "BasicVariantGenerator"
    if kind not in RAY_SEARCHERS:
        notes.append(
            f"searcher: Ray's {kind} has no caviar equivalent; using tpe, caviar's model-based "
            "searcher (optuna_tpe and optuna_cmaes are there too)"
        )
        return {"name": "tpe"}, limit
    return RAY_SEARCHERS[kind](alg), limit


def _tune_parts(obj: Any) -> tuple[Any, Mapping[str, Any], Any, Any]:
    """(TuneConfig or None, param_space, trainable or None, RunConfig or None)."""
    if hasattr(obj, "_local_tuner"):  # a tune.Tuner
        t = obj._local_tuner
        if t is None:
            raise SpecError("tune.Tuner: a Ray Client tuner; import its param_space instead")
        return t._tune_config, t._param_space or {}, t._trainable, t._run_config
    if isinstance(obj, Mapping):
        return None, obj, None, None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        spaces = [o for o in obj if isinstance(o, Mapping)]
        configs = [o for o in obj if hasattr(o, "num_samples") and hasattr(o, "search_alg")]
        if len(spaces) == 1 and len(configs) == 1:
            return configs[0], spaces[0], None, None
    raise SpecError(
        "tune: expected a param_space dict, a (TuneConfig, param_space) pair or a tune.Tuner, "
        f"found {type(obj).__name__}"
    )


def _function_name(fn: Any) -> str | None:
    """ "module:function" for a plain module-level function, else None."""
    if not inspect.isfunction(fn) or fn.__module__ == "__main__":
        return None
    return f"{fn.__module__}:{fn.__qualname__}" if fn.__qualname__.isidentifier() else None


def _dotted(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Ray's nested param_space flat, with dotted names: caviar nests them again in the
    config the train function gets (`caviar.space.nested`). A mapping of constants stays one
    value."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and _ray_call(value) is None and _searched_inside(value):
            out.extend(_dotted(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def from_tune(obj: Any, *, train: str | None = None, name: str | None = None):
    """A Ray Tune `param_space` dict, a `(TuneConfig, param_space)` pair or a `tune.Tuner` as a
    caviar spec (plain data) and notes."""
    config, param_space, trainable, run_config = _tune_parts(obj)
    notes: list[str] = []
    problems: list[str] = []
    space: dict[str, Any] = {}
    grid: list[str] = []
    for key, value in _dotted(param_space):
        call = _ray_call(value)
        try:
            if call is None and _searched_inside(value):
                raise ValueError(
                    f"a {type(value).__name__} with searched values inside: caviar searches "
                    "named parameters; give each searched value a name of its own"
                )
            domain, note = RAY_DOMAINS[call[0]](*call[1]) if call else ({"value": value}, None)
            space[key] = _plain(domain)
        except (ValueError, TypeError) as e:
            problems.append(f"param_space.{key}: {e}")
            continue
        if note:
            notes.append(f"space.{key}: {note}")
        if call and call[0] == "grid_search":
            grid.append(key)

    s = getattr(config, "scheduler", None)
    alg = getattr(config, "search_alg", None)
    scheduler = _ray_scheduler(s, notes)
    try:
        searcher, limit = _ray_searcher(alg, notes)
    except ValueError as e:
        problems.append(f"search_alg: {e}")
        searcher, limit = {"name": "tpe"}, None
    max_epochs = scheduler.pop("max_epochs", None) if scheduler else None
    stop = getattr(run_config, "stop", None)
    if isinstance(stop, Mapping):
        max_epochs = next((stop[k] for k in _EPOCH_ATTRS if k in stop), max_epochs)

    # Ray takes metric and mode from TuneConfig, else from the scheduler or search algorithm.
    metric, mode = (
        next(
            (
                v
                for o in (config, s, alg)
                for v in (getattr(o, a, None), getattr(o, "_" + a, None))
                if v
            ),
            None,
        )
        for a in ("metric", "mode")
    )
    if metric is None or mode is None:
        notes.append(
            "metric, mode: not given (a bare param_space does not say them); replace the "
            "placeholders with the metric your train function reports and max or min"
        )

    num_samples = getattr(config, "num_samples", None)
    grid_size = math.prod(len(space[g]["choice"]) for g in grid)
    if num_samples is None or num_samples < 1:
        if not grid:
            notes.append(
                f"budget.num_samples: {DEFAULT_SAMPLES}, caviar's default"
                + (" (Ray's num_samples -1 ran until time_budget_s)" if num_samples else "")
            )
        elif num_samples is not None:
            notes.append(
                "budget.num_samples: Ray's num_samples -1 repeated the grid until "
                "time_budget_s; caviar runs it once"
            )
        num_samples = 1 if grid else DEFAULT_SAMPLES  # Ray's default runs a grid once
    if grid:
        num_samples *= grid_size
        searched = [k for k, d in space.items() if "value" not in d]
        if searcher["name"] == "random" and set(searched) == set(grid):
            searcher = {"name": "grid"}
        else:
            notes.append(
                f"space: {', '.join(grid)}: Ray crossed these grid_search values with the other "
                "parameters; caviar samples them with the searcher, as choices "
                f"(num_samples {num_samples}: Ray's times the grid's {grid_size})"
            )
    budget: dict[str, Any] = {"num_samples": num_samples}
    if concurrent := (getattr(config, "max_concurrent_trials", None) or limit):
        budget["max_concurrent"] = concurrent
    if seconds := getattr(config, "time_budget_s", None):
        if isinstance(seconds, datetime.timedelta):
            seconds = seconds.total_seconds()
        budget["time_budget_s"] = seconds

    if train is None and (found := _function_name(trainable)):
        train = found
        notes.append(f"train.function: the Tuner's {found}")
    if train not in builtin.TASKS:
        notes.append(
            "train: a Ray Tune train function runs unchanged: caviar routes ray.tune.report and "
            "tune.get_checkpoint (each report is an epoch, as Ray counts training_iteration)"
        )
    spec = {
        "name": name or "tune-sweep",
        "metric": metric or METRIC_PLACEHOLDER,
        "mode": mode or MODE_PLACEHOLDER,
        "space": space,
        "searcher": searcher,
        "scheduler": scheduler,
        "budget": budget,
    }
    return _finish(spec, train, max_epochs, notes, problems)


# --- W&B ----------------------------------------------------------------------------------


def _exp(lo: float, hi: float) -> tuple[float, float]:
    return _num(math.exp(lo)), _num(math.exp(hi))


def _same(lo: float, hi: float) -> tuple[float, float]:
    return lo, hi


# W&B's bounded distributions as (caviar domain, its bounds from W&B's min and max). W&B's
# integer bounds include both ends, as caviar's do.
WANDB_DISTRIBUTIONS: dict[str, tuple[str, Callable[[float, float], tuple[float, float]]]] = {
    "uniform": ("uniform", _same),
    "int_uniform": ("randint", _same),
    "q_uniform": ("quniform", _same),
    "log_uniform_values": ("loguniform", _same),
    "q_log_uniform_values": ("qloguniform", _same),
    "log_uniform": ("loguniform", _exp),  # min and max are natural-log exponents
    "q_log_uniform": ("qloguniform", _exp),
    # X = 1 / Y with Y log-uniform on [1/max, 1/min]: ln X = -ln Y is uniform on
    # [ln min, ln max], so X is log-uniform on [min, max].
    "inv_log_uniform_values": ("loguniform", _same),
    # ln(1/X) uniform on [min, max]: X log-uniform on [e^-max, e^-min].
    "inv_log_uniform": ("loguniform", lambda lo, hi: _exp(-hi, -lo)),
}
# W&B's distributions that caviar cannot sample: (the domain to write instead, log scale).
WANDB_UNBOUNDED = {
    "normal": ("uniform", False),
    "q_normal": ("quniform", False),
    "log_normal": ("loguniform", True),
    "q_log_normal": ("qloguniform", True),
}
_WANDB_OTHER = ("constant", "categorical", "categorical_w_probabilities", "beta", "q_beta")
_WANDB_PARAM_KEYS = ("distribution", "value", "values", "probabilities", "min", "max", "q")
_WANDB_PARAM_KEYS += ("mu", "sigma", "a", "b")
WANDB_METHODS = {"grid": "grid", "random": "random", "bayes": "tpe"}
WANDB_GOALS = {"maximize": "max", "minimize": "min"}
# Keys of a W&B sweep with no caviar equivalent: left out, with a note.
_WANDB_LEFT_OUT = {
    "entity": "caviar does not log to W&B; results are Parquet tables under storage",
    "project": "caviar does not log to W&B; results are Parquet tables under storage",
    "description": "caviar specs have no description; this note keeps it",
    "controller": "caviar's driver controls the sweep",
    "apiVersion": "",
    "kind": "",
    "job": "W&B Launch; `caviar submit` sends a sweep to a Ray cluster",
    "image_uri": "W&B Launch; `caviar submit` sends a sweep to a Ray cluster",
}
_WANDB_KEYS = ("method", "metric", "parameters", "early_terminate", "run_cap", "name", "program")
_WANDB_KEYS += ("command", *_WANDB_LEFT_OUT)


def _wandb_flat(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """W&B's parameters with nested ``parameters:`` flat, under dotted names."""
    out: list[tuple[str, Any]] = []
    for key, p in params.items():
        name = f"{prefix}{key}"
        if isinstance(p, Mapping) and isinstance(p.get("parameters"), Mapping):
            out.extend(_wandb_flat(p["parameters"], f"{name}."))
        else:
            out.append((name, p))
    return out


def _wandb_param(name: str, p: Any, grid: bool) -> Converted:
    """One W&B parameter as a caviar domain; ValueError with the fix."""
    if not isinstance(p, Mapping):
        raise ValueError(
            f"expected a mapping such as {{values: [...]}} or {{min: 0, max: 1}}, found {p!r}"
        )
    for key in p:
        if key not in _WANDB_PARAM_KEYS:
            raise ValueError(
                f"unknown key '{key}'{did_you_mean(str(key), _WANDB_PARAM_KEYS)} "
                f"(W&B's parameter keys: {', '.join(_WANDB_PARAM_KEYS)}, parameters)"
            )
    dist = p.get("distribution") or _wandb_infer(p)
    if dist == "constant":
        return {"value": p["value"]}, None
    if dist in ("categorical", "categorical_w_probabilities"):
        note = "W&B's probabilities are dropped: caviar's choices are equally likely"
        return _choice(p.get("values"))[0], note if "probabilities" in p else None
    if dist in WANDB_UNBOUNDED:
        kind, log = WANDB_UNBOUNDED[dist]
        q = p.get("q", 1.0) if kind.startswith("q") else None
        _unbounded(
            f"distribution {dist} (mu {p.get('mu', 0.0)}, sigma {p.get('sigma', 1.0)})",
            kind,
            p.get("mu", 0.0),
            p.get("sigma", 1.0),
            q,
            log,
        )
    if dist in ("beta", "q_beta"):
        fix = {"uniform": [0, 1]} if dist == "beta" else {"quniform": [0, 1, p.get("q", 1.0)]}
        raise ValueError(
            f"distribution {dist} has no caviar equivalent; write {_flow(fix)} instead (its "
            "support), or a narrower range around where its mass is"
        )
    if dist not in WANDB_DISTRIBUTIONS:
        known = [*_WANDB_OTHER, *WANDB_DISTRIBUTIONS, *WANDB_UNBOUNDED]
        raise ValueError(
            f"unknown distribution '{dist}'{did_you_mean(str(dist), known)} "
            f"(W&B's: {', '.join(known)})"
        )
    if "min" not in p or "max" not in p:
        raise ValueError(f"distribution {dist} needs min and max, found keys {sorted(p)}")
    kind, bounds = WANDB_DISTRIBUTIONS[dist]
    lo, hi = bounds(p["min"], p["max"])
    q = p.get("q", 1.0)
    if grid:  # W&B's grid takes int_uniform's integers and q_uniform's numpy.arange
        if dist == "int_uniform":
            return {"choice": list(range(lo, hi + 1))}, None
        if dist == "q_uniform":
            values = [_num(v) for v in np.arange(lo, hi, q).tolist()]
            return {
                "choice": values
            }, "W&B's grid values for q_uniform: from min by q, max excluded"
        raise ValueError(
            f"method grid takes values, value, int_uniform and q_uniform (as W&B's does), "
            f"found distribution {dist}; list the values to try as values: [...]"
        )
    if kind == "randint":
        return _ints(kind, lo, hi), None
    if kind.startswith("q"):
        whole = all(isinstance(v, int) for v in (p["min"], p["max"], q))
        note = (
            f"caviar's {kind} gives floats ({lo}.0, ...) where W&B gave integers: a train "
            "function of your own must int() them"
            if whole
            else None
        )
        return {kind: [lo, hi, q]}, note
    return {kind: [lo, hi]}, None


def _wandb_infer(p: Mapping[str, Any]) -> str:
    """The distribution W&B infers for a parameter without one."""
    if "values" in p:
        return "categorical_w_probabilities" if "probabilities" in p else "categorical"
    if "value" in p:
        return "constant"
    if "min" in p and "max" in p:
        ints = all(isinstance(p[k], int) and not isinstance(p[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise ValueError(
        f"expected values, value, or min and max (or a distribution), found keys {sorted(p)}"
    )


def _wandb_scheduler(et: Any, problems: list[str], notes: list[str]) -> tuple[dict, int | None]:
    """W&B's early_terminate as a scheduler section, and train.max_epochs (max_iter)."""
    if et is None:
        notes.append(f"scheduler: fifo, as W&B without early_terminate. {_FIFO}")
        return {"name": "fifo"}, None
    if not isinstance(et, Mapping) or et.get("type") != "hyperband":
        found = et.get("type") if isinstance(et, Mapping) else et
        problems.append(f"early_terminate.type: expected hyperband (W&B's only), found {found!r}")
        return {"name": "fifo"}, None
    allowed = ("type", "min_iter", "max_iter", "s", "eta", "strict")
    for key in et:
        if key not in allowed:
            problems.append(
                f"early_terminate.{key}: unknown key{did_you_mean(str(key), allowed)} "
                f"(W&B's: {', '.join(allowed)})"
            )
    eta = et.get("eta", 3)
    max_epochs = None
    if "min_iter" in et:
        grace, how = et["min_iter"], f"min_iter {et['min_iter']}"
    elif "max_iter" in et and "s" in et:
        # W&B's bands: int(max_iter / eta**k) for k = 1..s while >= 1; the first is the lowest.
        grace = max(1, int(et["max_iter"] / eta ** et["s"]))
        how = f"max_iter {et['max_iter']} / eta**s {eta}**{et['s']}"
        max_epochs = et["max_iter"]
    else:
        problems.append(f"early_terminate: expected min_iter, or max_iter and s, found {dict(et)}")
        return {"name": "fifo"}, None
    notes.append(
        f"scheduler: W&B's hyperband early_terminate is caviar's asha: first rung at epoch "
        f"{grace} ({how}), then every {eta}x, keeping the top 1/{eta}. W&B counted the "
        "metric's logged steps; caviar counts reported epochs"
        + ("; train.max_epochs is max_iter" if max_epochs else "")
        + ("; strict has no equivalent" if "strict" in et else "")
    )
    return {"name": "asha", "grace_period": grace, "reduction_factor": eta}, max_epochs


def from_wandb(sweep: Mapping[str, Any], *, train: str | None = None, name: str | None = None):
    """A W&B sweep config (as read from its YAML) as a caviar spec (plain data) and notes."""
    if not isinstance(sweep, Mapping):
        raise SpecError(f"W&B sweep: expected a mapping of keys, found {type(sweep).__name__}")
    notes: list[str] = []
    problems: list[str] = []
    for key in sweep:
        if key not in _WANDB_KEYS:
            extra = (
                "; caviar optimizes one metric"
                if key == "metrics"
                else "; W&B's custom engines have no import"
                if key == "scheduler"
                else ""
            )
            problems.append(
                f"{key}: unknown or unsupported W&B key{did_you_mean(str(key), _WANDB_KEYS)}"
                f"{extra} (supported: {', '.join(_WANDB_KEYS)})"
            )
        elif key in _WANDB_LEFT_OUT:
            why = _WANDB_LEFT_OUT[key]
            notes.append(f"{key}: {sweep[key]!r} left out" + (f"; {why}" if why else ""))

    method = sweep.get("method")
    searcher = {"name": WANDB_METHODS.get(method, "random")}
    if method not in WANDB_METHODS:
        problems.append(
            f"method: expected one of {', '.join(WANDB_METHODS)}, found {method!r}"
            + ("; W&B's custom engines have no import" if method == "custom" else "")
        )
    if method == "bayes":
        notes.append(
            "searcher: tpe for W&B's bayes (a Gaussian process): caviar's model-based "
            "searcher; optuna_tpe and optuna_cmaes are there too"
        )

    metric, mode = METRIC_PLACEHOLDER, "min"
    m = sweep.get("metric")
    if m is None:
        notes.append("metric: not given; replace the placeholder with the metric to optimize")
    elif not isinstance(m, Mapping) or "name" not in m:
        problems.append(f"metric: expected {{name: ..., goal: maximize or minimize}}, found {m!r}")
    else:
        metric = m["name"]
        goal = m.get("goal", "minimize")  # W&B's default
        if goal not in WANDB_GOALS:
            problems.append(f"metric.goal: expected maximize or minimize, found {goal!r}")
        mode = WANDB_GOALS.get(goal, "min")
        for key in set(m) - {"name", "goal"}:
            notes.append(f"metric.{key}: W&B's {key} has no caviar equivalent; left out")

    space: dict[str, Any] = {}
    params = sweep.get("parameters")
    if not isinstance(params, Mapping) or not params:
        problems.append(f"parameters: expected a mapping of parameters, found {params!r}")
        params = {}
    for key, p in _wandb_flat(params):
        try:
            space[key], note = _wandb_param(key, p, method == "grid")
        except ValueError as e:
            problems.append(f"parameters.{key}: {e}")
            continue
        if note:
            notes.append(f"space.{key}: {note}")
    if any("." in key for key in space):
        notes.append(
            "space: W&B's nested parameters have dotted names (a.b); your train function gets "
            "them nested again, config['a']['b'], as wandb.config gave them"
        )

    scheduler, max_epochs = _wandb_scheduler(sweep.get("early_terminate"), problems, notes)
    run_cap = sweep.get("run_cap")
    if method == "grid":
        num_samples = math.prod(len(d["choice"]) for d in space.values() if "choice" in d)
        if run_cap and run_cap < num_samples:
            notes.append(
                f"budget.num_samples: {num_samples}, the whole grid: caviar runs whole grids "
                f"(W&B's run_cap {run_cap} stopped it early)"
            )
    elif run_cap:
        num_samples = run_cap
    else:
        num_samples = DEFAULT_SAMPLES
        notes.append(
            f"budget.num_samples: {num_samples}, caviar's default: W&B ran until its agents "
            "stopped; set the number of trials"
        )
    where = sweep.get("program") or sweep.get("command")
    if where and train is None:
        notes.append(
            f"program/command {where!r}: W&B ran it as a script; caviar calls a function with "
            "the config dict: name it (import again with --train MODULE:FUNCTION)"
        )
    if train not in builtin.TASKS:
        notes.append(
            "train: replace wandb.init / wandb.config / wandb.log in your train function: it "
            "takes the config dict (config['lr']) and reports each epoch with "
            "caviar.report({'epoch': epoch, METRIC: value})"
        )
    spec = {
        "name": str(sweep.get("name") or name or "wandb-sweep"),
        "metric": metric,
        "mode": mode,
        "space": space,
        "searcher": searcher,
        "scheduler": scheduler,
        "budget": {"num_samples": num_samples},
    }
    return _finish(spec, train, max_epochs, notes, problems)


# --- both ---------------------------------------------------------------------------------


def _finish(
    spec: dict[str, Any], train: str | None, max_epochs: Any, notes: list, problems: list
) -> tuple[dict[str, Any], list[str]]:
    """The spec with its name made safe and its train section, in a spec's order; or
    SpecError listing every problem. A scheduler of None is left out (caviar's default)."""
    from caviar.space import parse_space

    name = spec["name"]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:100] or "imported"
    if safe != name:
        notes.append(f"name: {safe!r} for {name!r} (it names the run directory)")
    if train in builtin.TASKS:
        section: dict[str, Any] = {"task": train}
    else:
        section = {"function": train or TRAIN_PLACEHOLDER}
    if not train:
        notes.append(
            f"train.function: {TRAIN_PLACEHOLDER} is a placeholder: name your train function "
            "as module:function (or import again with --train MODULE:FUNCTION); caviar "
            "validate refuses the spec until then"
        )
    # A fixed max_epochs is caviar's train.max_epochs (the train function still gets it).
    space = spec["space"]
    fixed = space.pop("max_epochs", None)
    if fixed is not None and "value" not in fixed:
        problems.append(
            "max_epochs: searched, but it is caviar's train.max_epochs (also ASHA's max_t); "
            "fix it to one value"
        )
    max_epochs = fixed["value"] if fixed and "value" in fixed else max_epochs
    if max_epochs is None:
        notes.append(
            "train.max_epochs: caviar's default 20; set it to the epochs a trial trains (the "
            "train function gets it as config['max_epochs'])"
        )
    else:
        section["max_epochs"] = max_epochs
    problems.extend(f"imported {p}" for p in parse_space(space)[1])
    if problems:
        raise SpecError(problems)
    out = {"name": safe, "metric": spec["metric"], "mode": spec["mode"], "train": section}
    out.update((k, v) for k, v in spec.items() if k not in out and v is not None)
    return out, notes


def to_yaml(spec: Mapping[str, Any], notes: Sequence[str]) -> str:
    """The spec as YAML text, the notes as comments above it."""
    from caviar.spec import FlowMap, dump_yaml

    head = "".join(
        f"# {line}\n"
        for note in notes
        for line in textwrap.wrap(note, 96, subsequent_indent="    ", break_on_hyphens=False)
    )
    flow = {k: FlowMap(v) for k, v in spec.items() if k in ("searcher", "scheduler", "budget")}
    space = {k: FlowMap(d) if isinstance(d, Mapping) else d for k, d in spec["space"].items()}
    return head + dump_yaml({**spec, "space": space, **flow})
