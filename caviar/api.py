"""caviar from Python (a notebook, a script): `run`, `resume`, `submit` and `load`, and `Run`,
a finished sweep's results. The `caviar` command is a thin layer over these.

    import caviar

    def train(config):
        for epoch in range(1, config["max_epochs"] + 1):
            caviar.report({"epoch": epoch, "val_acc": ...})

    run = caviar.run("spec.yaml", train=train, budget__num_samples=8)
    run.leaderboard()        # a DataFrame, best first; in Jupyter `run` shows it as a table
    run.best                 # the best trial: trial_id, config, value, checkpoint
    run.report()             # the HTML report's path

Nothing here imports Ray or torch until a sweep starts (`import caviar` stays light).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caviar.errors import CaviarError, Interrupted
from caviar.loader import check_takes_config

if TYPE_CHECKING:
    import pandas as pd

    from caviar import analysis
    from caviar.spec import SweepSpec


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` (a spec as plain data) with `overrides` set: each key a top-level spec key
    (``seed``) or a path into the spec with ``__`` between the levels (``budget__num_samples``
    sets ``budget: {num_samples: ...}``; ``space__lr`` replaces the domain of ``lr``). A copy;
    `raw` is left as it is."""
    out = copy.deepcopy(dict(raw))
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        if not leaf or not all(parents):
            raise CaviarError(
                f"{key}: an override is a spec key, or a path with __ between its levels "
                "(e.g. budget__num_samples=8)"
            )
        node = out
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = "__".join(parents[: i + 1])
                raise CaviarError(
                    f"{key}: {where} is {child!r} in the spec, not a section with keys"
                )
            else:
                child = node[part] = dict(child)
            node = child
        node[leaf] = value
    return out


def _function_name(fn: Callable) -> str:
    """What spec.yaml's train.function says of a function object: "module:name"."""
    name = getattr(fn, "__name__", "")
    if not name.isidentifier():  # a lambda, a functools.partial
        name = "train"
    module = getattr(fn, "__module__", None) or ""
    if not all(part.isidentifier() for part in module.split(".")):  # "<run_path>", ""
        module = "__main__"
    return f"{module}:{name}"


def build_spec(
    spec: Any, train: Any = None, overrides: Mapping[str, Any] | None = None
) -> tuple[SweepSpec, Callable | None]:
    """The validated spec from a path, a dict of the YAML's shape or a `SweepSpec`, with
    `overrides` (`apply_overrides`) and `train`: a callable (returned, to ship as an object;
    train.function names it) or "module:function" (train.function); either replaces a built-in
    task. Raises `SpecError` listing every problem, before anything starts."""
    from caviar.spec import SweepSpec, parse_spec, read_yaml, spec_to_dict

    source = "the spec"
    if isinstance(spec, SweepSpec):
        raw = spec_to_dict(spec)
    elif isinstance(spec, Mapping):
        raw = dict(spec)
    elif isinstance(spec, (str, Path)):
        raw, source = read_yaml(spec), str(spec)
        if not isinstance(raw, Mapping):
            return parse_spec(raw, source=source), None  # its own error
    else:
        raise CaviarError(
            f"spec: expected a path, a dict or a SweepSpec, found {type(spec).__name__}"
        )
    raw = apply_overrides(raw, overrides or {})
    fn = None
    if train is not None:
        if callable(train):
            fn, target = train, _function_name(train)
            check_takes_config(fn, target)
        elif isinstance(train, str):
            target = train
        else:
            raise CaviarError(
                f"train: expected a function or 'module:function', found {type(train).__name__}"
            )
        section = dict(raw.get("train") or {})
        section.pop("task", None)
        raw["train"] = {**section, "function": target}
    return parse_spec(raw, source=source), fn


def run(
    spec: Any,
    train: Any = None,
    *,
    storage: str | None = None,
    name: str | None = None,
    address: str | None = None,
    **overrides: Any,
) -> Run:
    """Run a sweep and return its results.

    spec: a YAML file's path, a dict of the YAML's shape, or a `caviar.spec.SweepSpec`.
    train: the train function, as a function (one defined in a notebook cell works: Ray sends
    it to the trials by value) or "module:function"; default: the spec's train section.
    storage, name, address: as `caviar run`'s --storage, --name, --address.
    overrides: spec keys, a path's levels joined by ``__``: ``budget__num_samples=4``,
    ``train__max_epochs=2``, ``seed=1``.

    Progress is printed a line per finished trial; in Jupyter a line above them is updated
    live. Raises `caviar.errors.CaviarError` (a bad spec, a run directory in use) and
    `caviar.errors.Interrupted` (Ctrl-C: resume with `caviar.resume`)."""
    built, fn = build_spec(spec, train, overrides)
    from caviar import driver

    try:
        run_dir = driver.run(
            built,
            address=address,
            storage=storage,
            name=name,
            train_fn=fn,
            progress_view=_live_view(built.name),
        )
    except Interrupted as e:
        if fn is not None:  # `caviar resume` could not import it: say how from Python
            said, _, _ = str(e).partition("; continue with: ")
            e.args = (f"{said}; continue with: caviar.resume({e.run_dir!r}, train=...)",)
        raise
    return load(run_dir)


def resume(run_dir: str | Path, *, train: Any = None, address: str | None = None) -> Run:
    """Continue a sweep whose driver died or was stopped (as `caviar resume`). `train`: the
    train function object again, for a run started with `caviar.run(spec, train=fn)`."""
    if train is not None and not callable(train):
        raise CaviarError(
            f"train: expected the train function itself, found {type(train).__name__} (a "
            "'module:function' is already in the run's spec.yaml)"
        )
    from caviar import driver

    out = driver.resume(
        str(run_dir), address=address, train_fn=train, progress_view=_live_view(None)
    )
    return load(out)


def submit(
    spec: Any,
    *,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    train: str | None = None,
    **overrides: Any,
) -> str:
    """Submit the sweep to a Ray cluster's Jobs API (as `caviar submit`); return the job id.
    `train` is "module:function" only: the job ships the module, and a function object
    (one from a notebook) cannot be shipped; put it in a .py file beside the notebook."""
    if callable(train):
        raise CaviarError(
            "train: submit ships the train function's module to the cluster, so it takes "
            "'module:function'; put the function in a .py file in the working directory and "
            "pass its name, or use caviar.run(..., address=...) to run it from here"
        )
    built, _ = build_spec(spec, train, overrides)
    from caviar import jobs

    return jobs.submit(built, address=address, storage=storage, name=name)


def load(run_dir: str | Path) -> Run:
    """A finished (or interrupted) sweep's results, from its run directory (path or URI)."""
    from caviar import analysis

    return Run(analysis.load(run_dir))


class Run:
    """A sweep's results: its run directory, spec and tables, the leaderboard, the best trial
    and the HTML report. The tables and plots of `caviar.analysis` take ``run.analysis``."""

    def __init__(self, analysis_run: analysis.Run) -> None:
        self.analysis = analysis_run

    @property
    def run_dir(self) -> str:
        return self.analysis.run_dir

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved spec, as spec.yaml has it."""
        return self.analysis.spec

    @property
    def trials(self) -> pd.DataFrame:
        """trials.parquet: one row per trial."""
        return self.analysis.trials

    @property
    def history(self) -> pd.DataFrame:
        """history.parquet: one row per (trial, epoch)."""
        return self.analysis.history

    def leaderboard(self, top: int | None = 10) -> pd.DataFrame:
        """The trials that rank, best first (as `caviar results`); `top=None` for all."""
        from caviar import analysis

        return analysis.leaderboard(self.analysis, top)

    @property
    def best(self) -> analysis.Best:
        """The best trial: trial_id, config, metric value, epochs and checkpoint."""
        from caviar import analysis

        return analysis.best(self.analysis)

    def report(self, path: str | Path | None = None) -> str:
        """Write the HTML report (default RUN_DIR/report.html); return where it went."""
        from caviar.html_report import write_report

        return write_report(self.run_dir, path)

    def _shown(self, top: int = 10) -> pd.DataFrame:
        from caviar.results import board_columns

        board = self.leaderboard(top)
        cols = board_columns(board, self.analysis.metrics)
        return board[cols].rename(columns=lambda c: c.removeprefix("param_"))

    def _summary(self) -> str:
        counts = self.trials["status"].astype(str).value_counts()
        done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"{self.analysis.name}: {len(self.trials)} trials ({done}); {self.run_dir}"

    def __repr__(self) -> str:
        shown = self._shown()
        table = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return f"<caviar.Run {self._summary()}>\n{table}"

    def _repr_html_(self) -> str:
        import html

        table = self._shown().to_html(
            index=False, float_format=lambda v: f"{v:.4g}", classes="caviar-leaderboard"
        )
        return f"<p><b>caviar run</b> {html.escape(self._summary())}</p>\n{table}"


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _live_view(sweep: str | None) -> Callable[[Any], Any] | None:
    """In a Jupyter kernel, a factory the driver calls with its `ray_seam.Progress`: a Ray
    callback that keeps one display line up to date with Progress's counts, best value and
    time as trials start and end. Elsewhere None: Progress's printed lines are the progress."""
    if not _in_notebook():
        return None

    def view(progress: Any) -> Any:
        from IPython.display import display
        from ray.tune import Callback

        class LiveView(Callback):
            # Shown at the first trial's start: Ray Tune clears a notebook cell's output as
            # it starts (its own notebook reporter), which would take an earlier display.
            handle: Any = None

            def text(self) -> Any:
                from IPython.display import Pretty

                running = len(progress.in_flight)
                best = f"{progress.best:.4g}" if progress.best is not None else "-"
                elapsed = progress.clock() - progress.started
                return Pretty(
                    f"caviar{' ' + sweep if sweep else ''}: {progress.done}/{progress.total} "
                    f"trials done, {running} running, {progress.stopped_early} stopped early, "
                    f"best {progress.metric} {best}, {elapsed:.0f}s"
                )

            def update(self, trials: list) -> None:
                if self.handle is None:
                    self.handle = display(self.text(), display_id=True)
                else:
                    self.handle.update(self.text())

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any):
                self.update(trials)

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any):
                self.update(trials)

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any):
                self.update(trials)

        return LiveView()

    return view
