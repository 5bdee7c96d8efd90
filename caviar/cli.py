"""The `caviar` command. Exit codes: 0 success, 2 a user error (one line per problem, no
traceback), 1 an internal error."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caviar.errors import CaviarError, Interrupted


def _validate(args: argparse.Namespace) -> None:
    from caviar.spec import load_spec

    spec = load_spec(args.spec)
    if spec.train.function:
        import os

        from caviar.loader import load_function

        load_function(spec.train.function, os.getcwd())
    searched = ", ".join(spec.space.searched) or "nothing"
    print(
        f"{args.spec}: ok: sweep '{spec.name}', {spec.budget.num_samples} trials of "
        f"{spec.train.task or spec.train.function}, searching {searched} with "
        f"{spec.searcher.name}, scheduler {spec.scheduler.name}, "
        + ", ".join(f"{d} {m}" for m, d in zip(spec.metrics, spec.modes, strict=True))
    )
    if len(spec.metrics) > 1:
        print(
            f"{args.spec}: {len(spec.metrics)} metrics: every trial trains to the end (no early "
            "stopping); the result is the Pareto front, the trials no other beats on every "
            "metric (by each metric's last value), which `caviar best` lists"
        )
    from caviar.searchers import searcher_class

    summary = searcher_class(spec.searcher.name).summary(
        spec.trial_space(), spec.searcher.options, spec.budget.num_samples
    )
    if summary:
        print(f"{args.spec}: {spec.searcher.name}: {summary}")
    r = spec.resources
    if r.fuse > 1:
        from caviar.fused import layout

        lay = layout(r)
        split = (
            f" (as {lay.groups} groups of up to {lay.size}, cpu {lay.cpu:g} each)"
            if lay.groups > 1
            else ""
        )
        print(
            f"{args.spec}: fused: up to {r.fuse} trials of one shape train together on each "
            f"share of cpu {r.cpu:g}, gpu {r.gpu:g}{split}"
        )
    for metric, mode in zip(spec.metrics, spec.modes, strict=True):
        for warning in mode_warnings(metric, mode):
            print(f"{args.spec}: warning: {warning}")
    from caviar.schedulers import PAUSING

    limit, n = spec.budget.max_concurrent, spec.budget.num_samples
    if spec.scheduler.name in PAUSING and limit and limit < n:
        print(
            f"{args.spec}: warning: budget.max_concurrent: {limit} counts the trials "
            f"{spec.scheduler.name} pauses too, so at most {limit} of the {n} take part in it "
            f"at once ({'a bracket' if spec.scheduler.name == 'hyperband' else 'the population'}"
            "); leave it out to have every trial in it and the cluster bound those running"
        )
    full = spec.budget.num_samples * spec.train.max_epochs
    print(
        f"{args.spec}: epoch budget: at most {full:,} epochs ({spec.budget.num_samples} trials x "
        f"{spec.train.max_epochs}); `caviar plan {args.spec}` estimates what early stopping saves"
    )


_HIGHER_IS_BETTER = ("acc", "auc", "f1", "precision", "recall", "iou", "map", "r2", "bleu")
_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "rmse", "perplexity", "wer", "cer", "nll")


def mode_warnings(metric: str, mode: str) -> list[str]:
    """A warning when the mode contradicts the metric's name (an accuracy minimized, a loss
    maximized): a common slip that makes the sweep look for the worst trials."""
    words = metric.lower().replace("-", "_").split("_")
    if mode == "min" and any(w.startswith(h) for w in words for h in _HIGHER_IS_BETTER):
        return [f"mode: min, but '{metric}' looks like a score where higher is better; mode: max?"]
    if mode == "max" and any(w.startswith(h) for w in words for h in _LOWER_IS_BETTER):
        return [f"mode: max, but '{metric}' looks like a loss where lower is better; mode: min?"]
    return []


def _import(args: argparse.Namespace) -> None:
    from caviar import importers

    if args.source == "wandb":
        from caviar.spec import read_yaml

        sweep = read_yaml(args.file)
        spec, notes = importers.from_wandb(sweep, train=args.train, name=Path(args.file).stem)
        origin = args.file
    else:
        obj = _load_tune_object(args.object)
        name = args.object.rpartition(":")[2]
        spec, notes = importers.from_tune(obj, train=args.train, name=name)
        origin = args.object
    notes = [f"imported from {origin} by `caviar import {args.source}`", *notes]
    text = importers.to_yaml(spec, notes)
    for note in notes[1:]:
        print(f"caviar: note: {note}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{args.out}: written; check it with: caviar validate {args.out}", file=sys.stderr)
    else:
        print(text, end="")


def _load_tune_object(target: str) -> object:
    """MODULE:OBJECT (from the working directory or installed) or path/to/file.py:OBJECT."""
    import os

    from caviar.loader import load_object

    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise CaviarError(
            f"tune: expected MODULE:OBJECT (e.g. search_space:config), found {target!r}"
        )
    try:
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise ImportError(f"no such file {where}")
            return load_object(f"{Path(where).stem}:{attr}", str(Path(where).parent.resolve()))
        return load_object(target, os.getcwd())
    except (ImportError, AttributeError) as e:
        raise CaviarError(
            f"tune: cannot import {target!r} ({type(e).__name__}: {e}); the module must be "
            "importable from the working directory, or given as path/to/file.py"
        ) from None


def _plan(args: argparse.Namespace) -> None:
    from caviar import plan
    from caviar.spec import load_spec

    spec = load_spec(args.spec)
    seconds = None
    if args.probe and spec.train.task:
        what = "one trial's" if spec.resources.fuse == 1 else "one fused group's"
        print(f"probing {what} epoch time ...", flush=True)
        seconds = plan.probe(spec)
    print(plan.make_plan(spec, plan.local_concurrency(spec), seconds).text())
    if args.probe and not spec.train.task:
        print(
            "  wall time: not estimated; the probe times the built-in train function only, and "
            f"{spec.train.function} is not run before the sweep"
        )


def _run(args: argparse.Namespace) -> None:
    from caviar import api  # the spec is validated before Ray starts

    run = api.run(args.spec, address=args.address, storage=args.storage, name=args.name)
    _print_results(run.run_dir, top=5, as_json=False)
    print(run.run_dir)


def _resume(args: argparse.Namespace) -> None:
    from caviar import api

    run = api.resume(args.run_dir, address=args.address)
    _print_results(run.run_dir, top=5, as_json=False)
    print(run.run_dir)


def _submit(args: argparse.Namespace) -> int:
    from caviar import api, jobs

    job_id = api.submit(args.spec, address=args.address, storage=args.storage, name=args.name)
    print(job_id, flush=True)
    return jobs.follow(args.address, job_id) if args.wait else 0


def _jobs(args: argparse.Namespace) -> None:
    from caviar import jobs

    for j in jobs.list_jobs(args.address):
        print(
            f"{j.submission_id}  {j.status.value:9s}  {j.metadata.get(jobs.METADATA_KEY)}  "
            f"{j.metadata.get('run_dir', '')}"
        )


def _status(args: argparse.Namespace) -> None:
    from caviar import jobs

    info = jobs.status(args.address, args.job)
    print(
        f"{args.job}: {info.status.value}  run dir {info.metadata.get('run_dir', '?')}"
        + (f"  ({info.message})" if info.message else "")
    )


def _logs(args: argparse.Namespace) -> int:
    from caviar import jobs

    if args.follow:
        return jobs.follow(args.address, args.job)
    print(jobs.logs(args.address, args.job), end="")
    return 0


def _stop(args: argparse.Namespace) -> None:
    from caviar import jobs

    stopped = jobs.stop(args.address, args.job)
    print(f"{args.job}: {'stop requested' if stopped else 'already ended'}")


def _lr_find(args: argparse.Namespace) -> None:
    from caviar.spec import load_spec

    spec = load_spec(args.spec)
    if spec.train.task is None:
        raise CaviarError(
            "train: lr-find runs the built-in train function; this spec names "
            f"{spec.train.function!r}"
        )
    # Every searched value but the learning rate at the middle of its domain, on its scale.
    config = {name: d.from_unit(0.5) for name, d in spec.trial_space()}
    from caviar.train.data import load
    from caviar.train.lr_find import lr_find, plot

    data = load(spec.train.task, spec.seed, spec.train.data, spec.train.label)
    result = lr_find(data, spec.train.model, config)
    print(f"suggested lr: {result.suggestion:.3g} (steepest descent of the smoothed loss)")
    print(f"range for the spec:  {result.spec_line()}")
    if args.out:
        try:
            plot(result, args.out)
        except OSError as e:
            raise CaviarError(
                f"--out: cannot write {args.out!r} ({e.strerror or e}); pass a writable path"
            ) from None
        print(f"plot: {args.out}")


def _results(args: argparse.Namespace) -> None:
    _print_results(args.run_dir, top=args.top, as_json=args.json)


def _at_least_0(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, found {text!r}")
    return n


def _print_results(run_dir: str, top: int, as_json: bool) -> None:
    import pandas as pd

    from caviar import objective
    from caviar.analysis import read_spec
    from caviar.results import board_columns, leaderboard, load_trials
    from caviar.storage import Location

    trials = load_trials(run_dir)
    spec = read_spec(Location.of(run_dir))
    metric, mode = spec["metric"], spec["mode"]
    board = leaderboard(trials, metric, mode, top)
    if as_json:
        # json.dumps keeps floats exact (pandas' to_json rounds to 10 digits); NaN -> null.
        records = board.astype(object).where(board.notna(), None).to_dict("records")
        print(json.dumps(records, indent=2, default=str))
        return
    counts = trials["status"].value_counts().to_dict()
    print(f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if board.empty:
        named = " and ".join(objective.as_tuple(metric))
        print(
            f"no trial to rank: none has reported {named} (errored and diverged trials do not rank)"
        )
    else:
        cols = board_columns(board, metric)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            shown = board[cols].rename(columns=lambda c: c.removeprefix("param_"))
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    from caviar import analysis

    if audit := analysis.audit_text(analysis.load(run_dir)):
        print(audit)


def _best(args: argparse.Namespace) -> None:
    from caviar import analysis

    run = analysis.load(args.run_dir)
    if len(run.metrics) > 1:
        _print_front(run, args.export)
        return
    b = analysis.best(run)
    print(f"best trial: {b.trial_id} ({b.status}, round {b.round}, {b.epochs} epochs)")
    at = f" at epoch {b.best_epoch}" if b.best_epoch is not None else ""
    print(f"{b.metric} ({b.mode}): {b.value:.6g}{at}")
    print(f"test_acc: {b.test_acc:.6g}" if b.test_acc is not None else "test_acc: not reported")
    print("config:")
    for name, value in b.config.items():
        print(f"  {name}: {value}")
    if b.checkpoint:
        print(f"checkpoint: {b.checkpoint} (epoch {b.checkpoint_epoch})")
        if b.best_epoch is not None and b.checkpoint_epoch != b.best_epoch:
            print(
                f"  the epoch-{b.best_epoch} checkpoint is gone (Ray keeps the latest "
                "checkpoint.keep); this is the trial's latest"
            )
    if args.export:
        path = analysis.export_best(run, args.export)
        print(f"exported: {path}")
        print("load it with:")
        print("  from caviar.analysis import load_model")
        print(f"  model = load_model({str(path)!r})  # torch.nn.Module in eval mode")


def _print_front(run: Any, export: str | None) -> None:
    """`caviar best` of a run of several metrics: every trial of the Pareto front, its metrics'
    last values and its config; with `export`, each one's model (at its last epoch)."""
    from caviar import analysis
    from caviar.errors import RunDirError

    goals = ", ".join(f"{d} {m}" for m, d in zip(run.metrics, run.modes, strict=True))
    front = analysis.pareto_front(run)
    if front.empty:
        raise RunDirError(
            f"{run.run_dir}: no Pareto front: no trial finished with a value of each of "
            f"{', '.join(run.metrics)}"
        )
    ranked = len(analysis.leaderboard(run))
    print(f"Pareto front: {len(front)} of {ranked} trials ({goals}; each metric's last value)")
    for _, row in front.iterrows():
        b = analysis.best(run, str(row["trial_id"]))
        values = " ".join(f"{m}={row[m]:.6g}" for m in run.metrics)
        test = f" test_acc={b.test_acc:.6g}" if b.test_acc is not None else ""
        print(f"trial {b.trial_id} ({b.status}, {b.epochs} epochs): {values}{test}")
        for name, value in b.config.items():
            print(f"  {name}: {value}")
        if export:
            print(f"  exported: {analysis.export_best(run, export, b.trial_id)}")


def _run_beside_dashboard(args: argparse.Namespace) -> None:
    """`caviar run --dashboard [PORT]`: the dashboard of the storage root served from this
    process (127.0.0.1) while the sweep runs."""
    if args.dashboard is None:
        return _run(args)
    from caviar.dashboard.server import Background
    from caviar.rundir import DEFAULT_STORAGE
    from caviar.spec import load_spec

    storage = args.storage or load_spec(args.spec).storage or DEFAULT_STORAGE
    dashboard = Background(storage, "127.0.0.1", args.dashboard)
    print(f"caviar: dashboard: {dashboard.url}", flush=True)
    try:
        return _run(args)
    finally:
        dashboard.close()


def _serve(args: argparse.Namespace) -> None:
    from caviar.dashboard.server import serve
    from caviar.rundir import DEFAULT_STORAGE

    serve(args.storage or DEFAULT_STORAGE, args.host, args.port, args.token, args.jobs_address)


def _report(args: argparse.Namespace) -> None:
    from caviar.html_report import write_report

    print(write_report(args.run_dir, args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caviar", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a sweep spec; nothing is launched")
    v.add_argument("spec")
    v.set_defaults(func=_validate)

    im = sub.add_parser(
        "import", help="a W&B sweep config or a Ray Tune search space as a caviar spec"
    )
    sources = im.add_subparsers(dest="source", required=True)
    for source, arg, what in (
        ("wandb", "file", "the W&B sweep config (YAML)"),
        (
            "tune",
            "object",
            "MODULE:OBJECT: a param_space dict, a (TuneConfig, param_space) pair or a tune.Tuner",
        ),
    ):
        i = sources.add_parser(source, help=f"import {what}")
        i.add_argument(arg, help=what)
        i.add_argument(
            "--train",
            metavar="MODULE:FUNCTION",
            help="the train function, or a built-in task such as mnist1d",
        )
        i.add_argument(
            "-o", "--out", metavar="OUT.yaml", help="write the spec here (default: stdout)"
        )
        i.set_defaults(func=_import)

    pl = sub.add_parser(
        "plan", help="trials and epochs per rung, total epochs, wall time: before launching"
    )
    pl.add_argument("spec")
    pl.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="skip timing one trial's epoch (the built-in train function's) here",
    )
    pl.set_defaults(func=_plan)

    r = sub.add_parser("run", help="run a sweep; prints the run directory")
    r.add_argument("spec")
    ray_help = (
        "Ray address ('auto' joins `ray start --head`); "
        "default: RAY_ADDRESS, else a private local Ray"
    )
    r.add_argument("--address", help=ray_help)
    r.add_argument("--storage", help="root directory for run directories (default ./caviar_runs)")
    r.add_argument("--name", help="run directory name (default: <spec name>-<timestamp>)")
    r.add_argument(
        "--dashboard",
        nargs="?",
        type=int,
        const=8765,
        metavar="PORT",
        help="serve the live dashboard on 127.0.0.1:PORT (default 8765) while it runs",
    )
    r.set_defaults(func=_run_beside_dashboard)

    c = sub.add_parser("resume", help="continue a sweep whose driver died or was stopped")
    c.add_argument("run_dir", help="the run directory `caviar run` printed")
    c.add_argument("--address", help=ray_help)
    c.set_defaults(func=_resume)

    address_help = "the cluster's Jobs API, http://HEAD:8265 (default: $CAVIAR_JOBS_ADDRESS)"
    j = sub.add_parser("submit", help="run a sweep on a Ray cluster as a Ray job")
    j.add_argument("spec")
    j.add_argument("--address", help=address_help)
    j.add_argument(
        "--storage", help="run directories' root, seen by every node (NFS, s3://, gs://)"
    )
    j.add_argument("--name", help="run directory name (default: <spec name>-<timestamp>)")
    j.add_argument(
        "--wait", action="store_true", help="stream progress; exit with the sweep's outcome"
    )
    j.set_defaults(func=_submit)
    for command, func, what in (
        ("jobs", _jobs, "list caviar sweeps on a cluster"),
        ("status", _status, "a sweep job's status"),
        ("logs", _logs, "a sweep job's output"),
        ("stop", _stop, "stop a sweep job"),
    ):
        c = sub.add_parser(command, help=what)
        if command != "jobs":
            c.add_argument("job", help="the job id `caviar submit` printed")
        if command == "logs":
            c.add_argument("--follow", action="store_true", help="stream until the job ends")
        c.add_argument("--address", help=address_help)
        c.set_defaults(func=func)

    f = sub.add_parser("lr-find", help="LR range test with the spec's model and data")
    f.add_argument("spec")
    f.add_argument("--out", help="write the loss-vs-LR plot to this PNG")
    f.set_defaults(func=_lr_find)

    s = sub.add_parser("results", help="the best trials of a run")
    s.add_argument("run_dir")
    s.add_argument(
        "--top",
        type=_at_least_0,
        default=10,
        metavar="K",
        help="the best K trials (default 10; 0: every trial that ranks)",
    )
    s.add_argument("--json", action="store_true", help="JSON records instead of a table")
    s.set_defaults(func=_results)

    b = sub.add_parser("best", help="the best trial: its config, metric and model")
    b.add_argument("run_dir")
    b.add_argument(
        "--export", metavar="DIR", help="write its model to one file in DIR, for inference"
    )
    b.set_defaults(func=_best)

    h = sub.add_parser("report", help="one self-contained HTML page about a run")
    h.add_argument("run_dir")
    h.add_argument(
        "--out", help="where to write it (default: RUN_DIR/report.html for a local run dir)"
    )
    h.set_defaults(func=_report)

    w = sub.add_parser("serve", help="a live web dashboard of every sweep under a storage root")
    w.add_argument("storage", nargs="?", help="the run directories' root (default ./caviar_runs)")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    w.add_argument("--port", type=int, default=8765)
    w.add_argument(
        "--token",
        help="require this token on every request (default: none on 127.0.0.1; on any other "
        "host a new one, printed at start)",
    )
    w.add_argument(
        "--jobs-address",
        help="the Jobs API (http://HEAD:8265) that the stop button uses for sweeps run by "
        "`caviar submit` (default: $CAVIAR_JOBS_ADDRESS)",
    )
    w.set_defaults(func=_serve)
    return p


def _log_to_stderr() -> None:
    """caviar's own log lines (searcher warnings, round changes) on stderr; Ray's stay Ray's."""
    logger = logging.getLogger("caviar")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("caviar: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return args.func(args) or 0
    except CaviarError as e:
        for problem in e.problems:
            print(f"caviar: error: {problem}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"caviar: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("caviar: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
