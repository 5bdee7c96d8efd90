"""The sweep spec: YAML in, a validated frozen `SweepSpec` out.

This is the only module that reads YAML or uses pydantic. Every problem in a spec is collected
and raised together as one `SpecError`, one line each, starting with the field path.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from caviar import objective, schedulers
from caviar import train as builtin
from caviar.errors import SpecError, did_you_mean
from caviar.objective import Mode
from caviar.searchers import SEARCHERS, options_class, searcher_class
from caviar.space import Choice, Domain, Fixed, Float, Space, parse_space

_STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
MAX_TRIALS = 100_000
MAX_EPOCHS = 10_000  # without a time budget
PLACEHOLDER = re.compile(r"<[^<>]*>")
"""A value in angle brackets: what `caviar import` could not know, for the user to fill in."""
PositiveInt = Annotated[int, Field(ge=1)]


@dataclass(frozen=True, config=_STRICT)
class TrainSpec:
    task: str | None = None
    """Built-in data set (see `caviar.train.TASKS`); or use `function`."""
    function: str | None = None
    """A user train function as "module:function"."""
    model: str = "mlp"
    data: str | None = None
    """The data file of task 'file': a .npz (x, y[, x_test, y_test]) or a .parquet."""
    label: str = "label"
    """The label column of a Parquet data file."""
    max_epochs: PositiveInt = 20
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Hyperparameters every trial gets, unsearched."""


@dataclass(frozen=True, config=_STRICT)
class SchedulerSpec:
    name: str = schedulers.DEFAULT
    options: Any = None
    """The scheduler's options dataclass (`caviar.schedulers.SCHEDULERS`)."""

    def __post_init__(self) -> None:
        if self.options is None:
            object.__setattr__(self, "options", schedulers.SCHEDULERS[self.name]())


@dataclass(frozen=True, config=_STRICT)
class BudgetSpec:
    num_samples: PositiveInt = 20
    max_concurrent: PositiveInt | None = None
    """Trials at once; default: as many as the cluster's CPUs and GPUs hold."""
    time_budget_s: Annotated[float, Field(gt=0)] | None = None
    trial_time_s: Annotated[float, Field(gt=0)] | None = None
    """A trial running longer ends as error (TrialTimeout); default: no limit."""


@dataclass(frozen=True, config=_STRICT)
class WatchdogSpec:
    """A trial silent for `factor` times its median epoch time, and at least `min_s` seconds,
    has hung: it ends as error (TrialHung) and its slot goes to the next trial."""

    factor: Annotated[float, Field(gt=1)] = 10.0
    min_s: Annotated[float, Field(gt=0)] = 60.0


@dataclass(frozen=True, config=_STRICT)
class ResourcesSpec:
    """What each trial gets; with `fuse`, what each fused group of trials gets."""

    cpu: Annotated[float, Field(gt=0)] = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0
    fuse: PositiveInt = 1
    """Up to this many trials of one shape train as one batched computation (`caviar.fused`)
    on one `cpu`/`gpu` share (on CPUs alone, as one group per whole CPU: `fused.layout`);
    each is still a trial of its own. 1: each trial alone."""


@dataclass(frozen=True, config=_STRICT)
class CheckpointSpec:
    keep: PositiveInt = 2
    """Checkpoints kept per trial (the most recent ones)."""


TRACKERS = {
    # name: (the module it needs, the package that has it, its options)
    "mlflow": ("mlflow", "mlflow", ("tracking_uri",)),
    "wandb": ("wandb", "wandb", ("project",)),
    "tensorboard": ("tensorboardX", "tensorboardX", ()),
}
"""The experiment trackers a sweep can log to (`loggers:`), through Ray Tune's callbacks."""


@dataclass(frozen=True, config=_STRICT)
class LoggerSpec:
    """An experiment tracker: one run per trial with its hyperparameters and every epoch's
    metrics (`caviar.ray_seam.trackers`)."""

    name: str
    tracking_uri: str | None = None
    """mlflow: where runs go; default MLFLOW_TRACKING_URI, else a file store in the run dir."""
    project: str | None = None
    """wandb: the project; default the sweep's name."""


@dataclass(frozen=True, config=_STRICT)
class SearcherSpec:
    name: str = "tpe"
    """Random for TPE's first n_startup trials, then model-based."""
    options: Any = None
    """The searcher's own options dataclass, validated against its `Options`."""
    warm_start: tuple[str, ...] = ()
    """Run directories of earlier sweeps whose trials the searcher learns from first."""


def _metric(value: Any) -> str | tuple[str, ...]:
    """One metric's name, or a list of several (a multi-objective sweep), kept as a tuple."""
    if isinstance(value, str):
        return value
    names = list(value) if isinstance(value, (list, tuple)) else []
    if len(set(names)) == len(names) >= 2 and all(isinstance(n, str) and n for n in names):
        return tuple(names)
    raise ValueError(
        "expected a metric's name, or a list of 2 or more different names (a sweep of "
        "several metrics)"
    )


def _mode(value: Any) -> Mode | tuple[Mode, ...]:
    """min or max, or a list of them: one per metric."""
    if value in ("min", "max"):
        return value
    several = isinstance(value, (list, tuple))
    if several and len(value) >= 2 and all(v in ("min", "max") for v in value):
        return tuple(value)
    raise ValueError("expected 'min' or 'max'" + (" for each metric" if several else ""))


@dataclass(frozen=True, config=_STRICT)
class SweepSpec:
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    metric: Annotated[str | tuple[str, ...], PlainValidator(_metric)]
    """What the sweep optimizes; a list of several metrics optimizes them all (`metrics`)."""
    mode: Annotated[Mode | tuple[Mode, ...], PlainValidator(_mode)]
    """min or max; one per metric for several."""
    train: TrainSpec
    space: Space
    searcher: SearcherSpec = SearcherSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    budget: BudgetSpec = BudgetSpec()
    resources: ResourcesSpec = ResourcesSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    storage: str | None = None
    watchdog: WatchdogSpec = WatchdogSpec()
    loggers: tuple[LoggerSpec, ...] = ()
    """Experiment trackers (`TRACKERS`) every trial is logged to."""
    seed: Annotated[int, Field(ge=0)] = 0
    max_failures: Annotated[int, Field(ge=0)] = 0
    """Restarts of a failed trial, each from its latest checkpoint, before it ends as error."""

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric the sweep optimizes: one, or several (a multi-objective sweep: its
        trials are ranked by Pareto dominance; the first is the one Ray and the progress
        lines show)."""
        return objective.as_tuple(self.metric)

    @property
    def modes(self) -> tuple[Mode, ...]:
        return objective.as_tuple(self.mode)  # type: ignore[return-value]

    def trial_space(self) -> Space:
        """What a trial's config holds: max_epochs, the fixed values, then the searched space."""
        fixed = {"max_epochs": self.train.max_epochs, **self.train.fixed}
        return Space(
            tuple((k, Fixed(v)) for k, v in fixed.items()) + self.space.domains,
            self.space.conditions,
        )


# --- YAML ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 (no dot) as a float, as YAML 1.2 and every user does, and
    refuses a key given twice in one mapping (YAML forbids it; PyYAML keeps the last
    silently, and a second `space:` would drop the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` may override: not a repeat
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = key in first
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice in one mapping (first at line {first[key]}), and "
                    "only the last would count; keep one",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file; check the path to the sweep spec")
    try:
        return parse_yaml(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        kind = "YAML" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise SpecError(f"{path}{where}: {kind}: {problem}") from None


def parse_yaml(text: str) -> Any:
    """YAML text as data, with numbers like 1e-4 read as numbers."""
    return yaml.load(text, Loader=_Loader)


class FlowMap(dict):
    """A mapping `dump_yaml` writes on one line, as specs write domains: {uniform: [0, 1]}."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    FlowMap, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m, flow_style=True)
)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


# --- validation ---------------------------------------------------------------------------


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file."""
    return parse_spec(read_yaml(path), source=str(path))


def parse_spec(raw: Any, source: str = "FILE") -> SweepSpec:
    """Validate a spec given as plain data; raise `SpecError` listing every problem. `source`
    names the file in the advice for a file of another tool."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"spec: expected a mapping of keys, found {type(raw).__name__}")
    if "method" in raw and "parameters" in raw and "space" not in raw:
        # Every other problem would only follow from the file being another tool's.
        raise SpecError(
            "spec: this looks like a W&B sweep config (top-level method and parameters, no "
            f"space); convert it with: caviar import wandb {source}"
        )
    raw = dict(raw)
    problems: list[str] = []

    space_raw = raw.pop("space", None)
    space = Space(())
    if space_raw is None:
        problems.append(
            "space: missing; add at least one parameter, e.g. lr: {loguniform: [1e-4, 1]}"
        )
    elif not isinstance(space_raw, Mapping) or not space_raw:
        problems.append(
            f"space: expected a non-empty mapping of parameter names, found {space_raw!r}"
        )
    else:
        space, space_problems = parse_space(space_raw)
        problems.extend(space_problems)

    # Several metrics: no early stopping (see `_several_metrics`), and by default a searcher
    # that takes several.
    several = isinstance(raw.get("metric"), (list, tuple))
    scheduler = _parse_scheduler(
        raw.pop("scheduler", None) or ({"name": "fifo"} if several else {}), problems
    )
    # PBT explores configurations itself: its initial population is drawn at random.
    default = "random" if scheduler.name == "pbt" or several else SearcherSpec.name
    searcher = _parse_searcher(raw.pop("searcher", None) or {"name": default}, problems)
    loggers = _parse_loggers(raw.pop("loggers", None), problems)

    fields = {
        **raw,
        "space": space,
        "searcher": searcher,
        "scheduler": scheduler,
        "loggers": loggers,
    }
    spec, invalid = _validate(fields, problems)
    if spec is not None:
        problems.extend(_cross_checks(spec, invalid))
    if problems:
        raise SpecError(problems)
    assert spec is not None
    return spec


# Stand-ins for required fields that failed, so that the rest of a spec can still be checked.
_STAND_INS = {"name": "spec", "metric": "", "mode": "max", "train": {}}


def _validate(fields: dict[str, Any], problems: list[str]) -> tuple[SweepSpec | None, set[str]]:
    """The spec, its problems added to `problems`, and the fields that failed ("budget",
    "train.max_epochs"). A failed field is left out (its default or a stand-in takes its
    place), so the cross checks find the spec's other problems in the same pass; they must not
    judge the failed fields."""
    adapter = TypeAdapter(SweepSpec)
    try:
        return adapter.validate_python(fields), set()
    except ValidationError as e:
        errors = e.errors()
    problems.extend(_explain(err) for err in errors)
    invalid = set()
    for err in errors:
        loc = tuple(str(p) for p in err["loc"])
        if not loc:
            return None, invalid
        section = fields.get(loc[0])
        if len(loc) > 1 and isinstance(section, Mapping):  # one key of a section
            fields[loc[0]] = {k: v for k, v in section.items() if str(k) != loc[1]}
        else:
            fields.pop(loc[0], None)
            if loc[0] in _STAND_INS:
                fields[loc[0]] = _STAND_INS[loc[0]]
        if err["type"] != "unexpected_keyword_argument":  # an unknown key is read by nothing
            invalid.add(".".join(loc[:2]))
    try:
        return adapter.validate_python(fields), invalid
    except ValidationError:  # not expected: every problem is reported all the same
        return None, invalid


def _parse_searcher(raw: Any, problems: list[str]) -> SearcherSpec:
    warm: tuple[str, ...] = ()
    if isinstance(raw, Mapping) and "warm_start" in raw:
        raw = dict(raw)
        given = raw.pop("warm_start")
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list) or not all(isinstance(d, str) for d in given):
            problems.append(
                f"searcher.warm_start: expected a list of run directories, found {given!r}"
            )
        else:
            from caviar.storage import Location

            warm = tuple(given)
            for d in warm:
                if not (Location.of(d) / "trials.parquet").is_file():
                    problems.append(
                        f"searcher.warm_start: no trials.parquet in {d!r}; give the run "
                        "directories `caviar run` printed"
                    )
    parsed = _parse_named("searcher", raw, SEARCHERS, options_class, problems, plugins=True)
    return SearcherSpec(*parsed, warm) if parsed else SearcherSpec(warm_start=warm)


def _parse_loggers(raw: Any, problems: list[str]) -> tuple[LoggerSpec, ...]:
    """`loggers: [mlflow, {name: wandb, project: p}]`: each a tracker's name, or a mapping of
    its name and options; each tracker once, its package installed."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raw = [raw]
    known = ", ".join(TRACKERS)
    found: list[LoggerSpec] = []
    for item in raw:
        options = dict(item) if isinstance(item, Mapping) else {"name": item}
        name = options.pop("name", None)
        if not isinstance(name, str) or name not in TRACKERS:
            what = f"unknown tracker {name!r}" if isinstance(name, str) else f"found {item!r}"
            hint = did_you_mean(name, TRACKERS) if isinstance(name, str) else ""
            problems.append(
                f"loggers: {what}{hint} (expected a list of trackers: {known}; or "
                "{name: mlflow, tracking_uri: ...})"
            )
            continue
        module, package, valid = TRACKERS[name]
        for key in [k for k in options if k not in valid]:
            problems.append(
                f"loggers.{name}.{key}: unknown option for tracker '{name}'"
                f"{did_you_mean(str(key), valid)} (valid options: {', '.join(['name', *valid])})"
            )
            options.pop(key)
        for key, value in list(options.items()):
            if not isinstance(value, str) or not value:
                problems.append(f"loggers.{name}.{key}: expected a string, found {value!r}")
                options.pop(key)
        if any(t.name == name for t in found):
            problems.append(f"loggers: tracker '{name}' named twice; name each tracker once")
            continue
        if importlib.util.find_spec(module) is None:
            problems.append(
                f"loggers: tracker '{name}' needs the {package} package, which is not "
                f"installed; pip install '{package}' (or pip install 'caviar[trackers]')"
            )
        found.append(LoggerSpec(name, **options))
    return tuple(found)


def _parse_scheduler(raw: Any, problems: list[str]) -> SchedulerSpec:
    parsed = _parse_named(
        "scheduler", raw, schedulers.SCHEDULERS, schedulers.SCHEDULERS.__getitem__, problems
    )
    return SchedulerSpec(*parsed) if parsed else SchedulerSpec()


def _parse_named(
    section: str,
    raw: Any,
    names: Mapping[str, Any],
    options_of: Any,
    problems: list[str],
    plugins: bool = False,
) -> tuple[str, Any] | None:
    """A section naming a pluggable part and its options, ``{name: x, option: value, ...}``
    (or just the name): (name, the part's validated options), or None after a problem."""
    default = SearcherSpec.name if section == "searcher" else SchedulerSpec.name
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        problems.append(f"{section}: expected a mapping such as {{name: {default}}}, found {raw!r}")
        return None
    options = dict(raw)
    name = str(options.pop("name", default))
    if name not in names and not (plugins and ":" in name):
        extra = ", or 'module:Class'" if plugins else ""
        problems.append(
            f"{section}.name: unknown {section} '{name}'{did_you_mean(name, names)} "
            f"(expected one of {', '.join(names)}{extra})"
        )
        return None
    try:
        cls = options_of(name)
    except Exception as e:  # noqa: BLE001 - import errors of user plugins are user errors
        problems.append(f"{section}.name: cannot load '{name}': {e}")
        return None
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in [k for k in options if k not in valid]:
        # A scheduler's options are keys of its section, as the other sections' are.
        what = (
            ("key", "keys")
            if section == "scheduler"
            else (f"option for {section} '{name}'", "options")
        )
        problems.append(
            f"{section}.{key}: unknown {what[0]}{did_you_mean(key, valid)} "
            f"(valid {what[1]}: {', '.join(['name', *valid])})"
        )
        options.pop(key)
    try:
        return name, TypeAdapter(cls).validate_python(options)
    except ValidationError as e:
        problems.extend(_explain(err, prefix=(section,), cls=cls) for err in e.errors())
        return None


def _cross_checks(spec: SweepSpec, invalid: set[str]) -> list[str]:
    """The problems between fields, leaving alone those `invalid` names (see `_validate`)."""

    def valid(*fields: str) -> bool:
        return not any(
            f == i or f.startswith(i + ".") or i.startswith(f + ".")
            for f in fields
            for i in invalid
        )

    problems = []
    t = spec.train
    if valid("train.task", "train.function") and (t.task is None) == (t.function is None):
        problems.append(
            "train: expected exactly one of 'task' (built-in data: "
            f"{', '.join(builtin.TASKS)}) or 'function' (\"module:function\"), "
            f"found task={t.task!r} and function={t.function!r}"
        )
    if t.task is not None and valid("train.task"):
        if t.task not in builtin.TASKS:
            problems.append(
                f"train.task: unknown task '{t.task}'{did_you_mean(t.task, builtin.TASKS)} "
                f"(expected one of {', '.join(builtin.TASKS)})"
            )
        if valid("train.model") and t.model not in builtin.MODELS:
            problems.append(
                f"train.model: unknown model '{t.model}'{did_you_mean(t.model, builtin.MODELS)} "
                f"(expected one of {', '.join(builtin.MODELS)})"
            )
        for metric in spec.metrics if valid("metric") else ():
            if metric not in builtin.METRICS and not PLACEHOLDER.fullmatch(metric):
                problems.append(
                    f"metric: the built-in train function does not report '{metric}'"
                    f"{did_you_mean(metric, builtin.METRICS)} "
                    f"(it reports {', '.join(builtin.METRICS)})"
                )
        if "test_acc" in spec.metrics:
            problems.append(
                "metric: test_acc scores the test split, which must never pick trials; "
                "use val_acc or val_loss"
            )
        problems.extend(_check_builtin_values(spec, read_data=valid("train.data", "train.label")))
    for where, value, what in (
        ("metric", spec.metrics[0], "the metric your train function reports"),
        (
            "train.function",
            t.function,
            '"module:function" (e.g. mytrain:train), the function that takes the config dict '
            "and reports with caviar.report or ray.tune.report",
        ),
    ):
        if value and PLACEHOLDER.fullmatch(value):
            problems.append(
                f"{where}: {value} is a placeholder left by caviar import; write {what}"
            )
    if t.function is not None and not re.fullmatch(r"[\w.]+:\w+|<[^<>]*>", t.function):
        problems.append(
            f'train.function: expected "module:function" (e.g. mytrain:train), found {t.function!r}'
        )
    for where, keys in (("train.fixed", t.fixed), ("space", spec.space.names)):
        if "max_epochs" in keys:
            problems.append(f"{where}.max_epochs: set it as train.max_epochs, which ASHA uses too")
    for key in sorted(set(t.fixed) & set(spec.space.names)):
        problems.append(f"train.fixed.{key}: also searched in space.{key}; keep one of the two")
    if spec.searcher.options is not None and valid(
        "train.fixed", "train.max_epochs", "budget.num_samples"
    ):
        cls = searcher_class(spec.searcher.name)
        problems.extend(
            cls.check(spec.trial_space(), spec.searcher.options, spec.budget.num_samples)
        )
    if valid("metric"):
        problems.extend(_several_metrics(spec, mode_valid=valid("mode")))
        problems.extend(
            f"metric: '{m}' is a name that caviar's tables or Ray Tune use for their own (the "
            f"trial's {m}); report the metric under a name of yours and set metric to it"
            for m in spec.metrics
            if m in objective.RESERVED
        )
    if spec.scheduler.name == "pbt" and spec.searcher.name != "random":
        problems.append(
            f"searcher.name: scheduler pbt explores configurations itself and takes its "
            f"initial population at random; found searcher '{spec.searcher.name}'; use "
            "searcher random, or leave the searcher out"
        )
    problems.extend(_fused(spec))
    if spec.budget.num_samples > MAX_TRIALS:
        problems.append(
            f"budget.num_samples: at most {MAX_TRIALS:,} trials per sweep (Ray Tune keeps every "
            f"trial in the driver's memory), found {spec.budget.num_samples:,}; split the sweep "
            "or narrow the space with coarse_to_fine"
        )
    if t.max_epochs > MAX_EPOCHS and spec.budget.time_budget_s is None and valid("budget"):
        problems.append(
            f"train.max_epochs: {t.max_epochs:,} epochs with no budget.time_budget_s would run "
            f"for ever; set budget.time_budget_s, or at most {MAX_EPOCHS:,} epochs"
        )
    first = next(
        (f for f in ("grace_period", "min_epochs") if hasattr(spec.scheduler.options, f)), None
    )
    if (
        first
        and valid("train.max_epochs")
        and getattr(spec.scheduler.options, first) > t.max_epochs
    ):
        problems.append(
            f"scheduler.{first}: must be <= train.max_epochs ({t.max_epochs}), "
            f"found {getattr(spec.scheduler.options, first)}"
        )
    return problems


def _fused(spec: SweepSpec) -> list[str]:
    if spec.resources.fuse == 1:
        return []
    problems = []
    if spec.train.function:
        problems.append(
            "resources.fuse: fused trials train the built-in train function's models as one "
            f"batched computation, and this sweep runs train.function {spec.train.function!r}; "
            "remove resources.fuse, or use train.task and train.model"
        )
    # Fused trials cannot pause: a paused member would hold its group at the next epoch's
    # barrier. The schedulers that only continue or stop trials can fuse.
    if spec.scheduler.name in schedulers.PAUSING:
        fusing = [name for name in schedulers.SCHEDULERS if name not in schedulers.PAUSING]
        problems.append(
            f"scheduler.name: scheduler '{spec.scheduler.name}' pauses trials, which fused "
            f"trials cannot; use one of {', '.join(fusing)} with resources.fuse, or "
            "remove resources.fuse"
        )
    return problems


def _several_metrics(spec: SweepSpec, mode_valid: bool) -> list[str]:
    """A mode per metric; with several metrics, a searcher that searches several, and no
    early stopping: a trial behind on one metric at an early rung may lead on another at the
    end, so every trial trains to the end (as Optuna prunes no multi-objective study)."""
    metrics, n = ", ".join(spec.metrics), len(spec.metrics)
    problems = []
    if mode_valid and n != len(spec.modes):
        want = f"{n} modes, one per metric ({metrics})" if n > 1 else "'min' or 'max'"
        problems.append(f"mode: expected {want}, found {_plain(spec.mode)!r}")
    if n == 1:
        return problems
    name = spec.searcher.name
    if spec.searcher.options is not None and not searcher_class(name).MULTI_OBJECTIVE:
        able = [s for s in SEARCHERS if searcher_class(s).MULTI_OBJECTIVE]
        problems.append(
            f"searcher.name: searcher '{name}' optimizes one metric, and this sweep has {n} "
            f"({metrics}); use one that searches several: {', '.join(able)}"
        )
    if spec.scheduler.name != "fifo":
        problems.append(
            f"scheduler.name: scheduler '{spec.scheduler.name}' stops trials early by one "
            f"metric, and this sweep has {n} ({metrics}): a trial behind on one early may "
            "lead on another at the end, so every trial trains to the end (Optuna prunes no "
            "multi-objective study either); use scheduler fifo, or leave the scheduler out"
        )
    return problems


def _plain(value: Any) -> Any:
    """A tuple of the spec as the list it was written as."""
    return list(value) if isinstance(value, tuple) else value


def _candidates(d: Domain) -> list[Any]:
    """The values a domain can produce, or its bounds for numeric domains."""
    if isinstance(d, Fixed):
        return [d.value]
    if isinstance(d, Choice):
        return list(d.values)
    return [d.low, d.high]  # type: ignore[attr-defined]


def _check_builtin_values(spec: SweepSpec, read_data: bool) -> list[str]:
    """Every fixed and searched value of the built-in function's hyperparameters is one its
    declaration (`caviar.train.KNOBS`) allows. `read_data`: whether train.data and
    train.label are valid, to bound batch_size by the training split."""
    from caviar.train.data import DataError, examples, split_sizes

    problems = []
    train_size = None
    if spec.train.task in builtin.TASKS and read_data:
        try:
            found = examples(spec.train.task, spec.train.data, spec.train.label)
            train_size = split_sizes(*found)[0]
        except DataError as e:
            problems.extend(e.problems)
    for name, d in spec.trial_space():
        where = f"train.fixed.{name}" if name in spec.train.fixed else f"space.{name}"
        if name == "max_epochs":
            continue
        knob = builtin.KNOBS_BY_NAME.get(name)
        if knob is None:
            problems.append(
                f"{where}: the built-in train function has no hyperparameter '{name}'"
                f"{did_you_mean(name, builtin.HYPERPARAMETERS)} "
                f"(known: {', '.join(sorted(builtin.HYPERPARAMETERS))})"
            )
            continue
        why = ""
        if name == "batch_size" and train_size is not None:
            knob = dataclasses.replace(knob, high=train_size, high_inclusive=True)
            why = " (the training split's size)"
        if knob.integer and isinstance(d, Float) and not _integer_valued(d):
            problems.append(
                f"{where}: expected integer values of {name}, found {d.to_raw()}; "
                "use randint or lograndint"
            )
            continue
        for value in _candidates(d):
            if knob.choices is not None and value not in knob.choices:
                allowed = knob.choices
                problems.append(
                    f"{where}: unknown {name} {value!r}"
                    f"{did_you_mean(str(value), map(str, allowed))} "
                    f"(expected one of {', '.join(map(str, allowed))})"
                )
            elif not knob.accepts(value):
                problems.append(f"{where}: expected {knob.expected(value)}{why}, found {value!r}")
    return problems


def _integer_valued(d: Float) -> bool:
    """Whether every value of a float domain is a whole number: multiples of a whole q
    between whole bounds."""
    return d.q is not None and all(float(v).is_integer() for v in (d.low, d.high, d.q))


def _explain(err: Mapping[str, Any], prefix: tuple = (), cls: type = SweepSpec) -> str:
    """One line for one pydantic error: path, what was expected, what was found, the fix."""
    loc = tuple(str(p) for p in err["loc"])
    path = ".".join(prefix + loc) or "spec"
    kind, found = err["type"], err.get("input")
    if kind == "unexpected_keyword_argument":
        valid = _field_names(cls, loc[:-1])
        return f"{path}: unknown key{did_you_mean(loc[-1], valid)} (valid keys: {', '.join(valid)})"
    if kind == "missing" or kind == "missing_argument":
        return f"{path}: missing; this key is required"
    if kind == "string_pattern_mismatch" and loc == ("name",):
        return (
            f"name: expected letters, digits, '_', '.' or '-' (it names the run directory), "
            f"found {found!r}"
        )
    if kind == "dataclass_type":  # pydantic: "a dictionary or an instance of BudgetSpec"
        valid = _field_names(cls, loc)
        return f"{path}: expected a mapping of {', '.join(valid)}, found {found!r}"
    msg = err["msg"].replace("Input should be", "expected").replace("Value error, ", "")
    return f"{path}: {msg}, found {found!r}"


def _field_names(cls: type, loc: tuple[str, ...]) -> list[str]:
    for part in loc:
        hints = typing.get_type_hints(cls)
        cls = hints.get(part, None)
        if cls is None or not dataclasses.is_dataclass(cls):
            return []
    return [f.name for f in dataclasses.fields(cls)]


def spec_to_dict(spec: SweepSpec) -> dict[str, Any]:
    """The resolved spec as plain data, in the shape it is written (for spec.yaml)."""
    out = dataclasses.asdict(spec)
    out["metric"], out["mode"] = _plain(spec.metric), _plain(spec.mode)
    out["space"] = spec.space.to_raw()
    for section in ("searcher", "scheduler"):
        part = getattr(spec, section)
        opts = dataclasses.asdict(part.options) if part.options else {}
        out[section] = {"name": part.name, **opts}
    if spec.searcher.warm_start:
        out["searcher"]["warm_start"] = list(spec.searcher.warm_start)
    out["loggers"] = [
        {k: v for k, v in dataclasses.asdict(t).items() if v is not None}
        if t.tracking_uri or t.project
        else t.name
        for t in spec.loggers
    ]
    if not spec.loggers:
        del out["loggers"]
    return out
