"""One HTML page about a run: status counts, the best trial (with several metrics, the Pareto
front), the leaderboard, what stopping early saved, caviar's stopping audit (when the run has
one) and every plot.

The page is self-contained and readable offline: inline CSS, plots as base64 PNG ``data:``
URIs, no scripts, no external URLs. ``caviar report RUN_DIR`` writes it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from caviar import analysis
from caviar.errors import RunDirError
from caviar.results import ranking_columns
from caviar.storage import Location

REPORT_FILE = "report.html"
LEADERBOARD_ROWS = 20

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; }
tr.best td { font-weight: 600; background: #fff8e0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.25em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
ul.warnings li { color: #9a3b00; }
"""


def default_report_path(run_dir: str | Path) -> str:
    """``<run_dir>/report.html`` for a local run directory; for a remote one (s3://, gs://),
    ``<run name>-report.html`` in the working directory."""
    loc = Location.of(run_dir)
    if loc.is_local:
        return str(Path(loc.path) / REPORT_FILE)
    return str(Path.cwd() / f"{loc.name}-{REPORT_FILE}")


def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> str:
    """Write the report of `run_dir` to `out_path` (a path or URI; default
    `default_report_path`) and return where it went."""
    run = analysis.load(run_dir)
    page = render_report(run)
    target = str(out_path) if out_path is not None else default_report_path(run_dir)
    loc = Location.of(target)
    try:
        if loc.is_local:
            Path(loc.path).parent.mkdir(parents=True, exist_ok=True)
        loc.write_text(page)
    except OSError as e:
        raise RunDirError(f"--out: cannot write {loc.uri!r} ({e}); pass a writable path") from None
    return loc.uri


def render_report(run: analysis.Run) -> str:
    """The report as one HTML string."""
    sections = [
        f"<h1>{_e(run.name)}</h1>",
        f'<p class="meta">{_summary(run)}</p>',
        "<h2>Trials by status</h2>",
        _counts_table(run),
        "<h2>Pareto front</h2>" if len(run.metrics) > 1 else "<h2>Best trial</h2>",
        _front_section(run) if len(run.metrics) > 1 else _best_section(run),
        f"<h2>Leaderboard (top {LEADERBOARD_ROWS})</h2>",
        _leaderboard_table(run),
        "<h2>What stopping early saved</h2>",
        _savings(run),
        _audit_section(run),
        "<h2>Plots</h2>",
        *(_figure_html(plot, run) for plot in _plots(run)),
        _no_regions_note(run),
        _errors_section(run),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>caviar report: {_e(run.name)}</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n"
    )


def _plots(run: analysis.Run) -> list[Any]:
    """Every plot; the coarse-to-fine ones only for a run that has regions, the Pareto front
    first for a run of several metrics."""
    per_round = (analysis.plot_regions, analysis.plot_metric_by_round)
    front = [analysis.plot_pareto_front] if len(run.metrics) > 1 else []
    return front + [p for p in analysis.PLOTS if not (run.regions.empty and p in per_round)]


def _no_regions_note(run: analysis.Run) -> str:
    if not run.regions.empty:
        return ""
    searcher = (run.spec.get("searcher") or {}).get("name", "?")
    return (
        f"<p>No coarse-to-fine regions: this run's searcher is {_e(searcher)}; the "
        "coarse_to_fine searcher writes regions.parquet, and the report then shows them.</p>"
    )


def _cls(text: bool) -> str:
    return ' class="text"' if text else ""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def _summary(run: analysis.Run) -> str:
    spec = run.spec
    train = spec.get("train") or {}
    what = train.get("task") or train.get("function") or "?"
    searcher = (spec.get("searcher") or {}).get("name", "?")
    options = ", ".join(f"{k} {v}" for k, v in asdict(run.scheduler_options).items())
    sched_text = str(run.scheduler["name"]) + (f" ({options})" if options else "")
    budget = (spec.get("budget") or {}).get("num_samples", "?")
    goals = ", ".join(
        f"{_e(d)} <b>{_e(m)}</b>" for m, d in zip(run.metrics, run.modes, strict=True)
    )
    return (
        f"Run directory <code>{_e(run.run_dir)}</code><br>"
        f"{goals} &middot; {_e(what)} "
        f"{_e(train.get('model', '')) if train.get('task') else ''} &middot; "
        f"max_epochs {_e(run.max_epochs)} &middot; {_e(budget)} trials &middot; "
        f"searcher {_e(searcher)} &middot; scheduler {_e(sched_text)} &middot; "
        f"searched: {_e(', '.join(run.searched) or 'nothing')}"
    )


def _counts_table(run: analysis.Run) -> str:
    counts = analysis.status_counts(run)
    head = "".join(f"<th>{_e(s)}</th>" for s in counts.index) + "<th>total</th>"
    body = "".join(f"<td>{int(n)}</td>" for n in counts.values) + f"<td>{len(run.trials)}</td>"
    return f'<table id="status-counts"><tr>{head}</tr><tr>{body}</tr></table>'


def _best_section(run: analysis.Run) -> str:
    try:
        b = analysis.best(run)
    except RunDirError as e:
        return f"<p>{_e(e)}</p>"
    rows = [
        ("trial", b.trial_id),
        (f"best {b.metric} ({b.mode})", _fmt(b.value)),
        ("test_acc", _fmt(b.test_acc) if b.test_acc is not None else "not reported"),
        ("status", f"{b.status}, round {b.round}, {b.epochs} epochs"),
        ("checkpoint", f"{b.checkpoint} (epoch {b.checkpoint_epoch})" if b.checkpoint else "none"),
        *((f"config: {k}", _fmt(v)) for k, v in b.config.items()),
    ]
    body = "".join(
        f'<tr><th class="text">{_e(k)}</th><td class="text">{_e(v)}</td></tr>' for k, v in rows
    )
    return f'<table id="best">{body}</table>'


def _front_section(run: analysis.Run) -> str:
    """The trials on the Pareto front, each with its metrics' last values and its config."""
    front = analysis.pareto_front(run)
    if front.empty:
        return f"<p>No trial finished with a value of each of {_e(', '.join(run.metrics))}.</p>"
    goals = ", ".join(f"{d} {m}" for m, d in zip(run.metrics, run.modes, strict=True))
    return (
        f"<p>{len(front)} trials no other trial beats on every metric ({_e(goals)}; each "
        "metric's last value), by the first metric:</p>"
        + _trials_table(run, "front", front, list(run.metrics))
    )


def _leaderboard_table(run: analysis.Run) -> str:
    board = analysis.leaderboard(run, top=LEADERBOARD_ROWS)
    return _trials_table(run, "leaderboard", board, ranking_columns(run.metrics))


def _trials_table(run: analysis.Run, table_id: str, board: pd.DataFrame, ranking: list[str]) -> str:
    """Trials: id, status, round, epochs, the `ranking` columns, test_acc and the searched
    hyperparameters; the best highlighted (the first row, or the Pareto front)."""
    params = [f"param_{n}" for n in run.searched]
    cols = ["trial_id", "status", "round", "epochs", *ranking]
    cols += [c for c in ("test_acc",) if c in board] + params
    text = {"trial_id", "status"}
    head = '<th class="text">#</th>' + "".join(
        f"<th{_cls(c in text)}>{_e(c.removeprefix('param_'))}</th>" for c in cols
    )
    if board.empty:
        rows = [
            f'<tr><td class="text" colspan="{len(cols) + 1}">no trial finished with a '
            f"{_e(run.metric)} value</td></tr>"
        ]
    else:
        rows = []
        for rank, (_, row) in enumerate(board.iterrows(), start=1):
            cells = "".join(f"<td{_cls(c in text)}>{_e(_fmt(row.get(c)))}</td>" for c in cols)
            best = bool(row["pareto"]) if "pareto" in board else rank == 1
            cls = ' class="best"' if best else ""
            rows.append(f'<tr{cls}><td class="text">{rank}</td>{cells}</tr>')
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def _savings(run: analysis.Run) -> str:
    s = analysis.stopping_summary(run)
    if s.trials == 0:
        return "<p>No trial trained an epoch.</p>"
    pct = 100 * s.epochs_saved / s.epochs_full if s.epochs_full else 0.0
    tpct = 100 * s.seconds_saved / s.seconds_full if s.seconds_full else 0.0
    by = (
        f" ({s.epochs_saved_by_scheduler:,} epochs by {_e(analysis.scheduler_label(run))})"
        if run.scheduler["name"] != "fifo"
        else ""
    )
    return (
        f"<p>{s.trials} trials trained {s.epochs_trained:,} epochs; running every trial stopped "
        f"early on to max_epochs ({run.max_epochs}) would have taken {s.epochs_full:,} epochs: "
        f"<b>{pct:.0f}% saved</b>{by}. Training time "
        f"{s.seconds_trained:,.0f} s of an estimated {s.seconds_full:,.0f} s: "
        f"<b>{tpct:.0f}% saved</b>.</p>"
    )


def _audit_section(run: analysis.Run) -> str:
    """caviar's stopping audit: a row per rung, its warnings and the verdict; "" without one."""
    audit = analysis.audit(run)
    if audit is None:
        return ""
    cols = [c for c in audit.columns if c != "warning"]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(row[c]))}</td>" for c in cols) + "</tr>"
        for _, row in audit.iterrows()
    )
    warnings = analysis.audit_warnings(run)
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return (
        "<h2>Stopping audit</h2>"
        "<p>Each rung of caviar's scheduler stops trials only once the ranking there agrees "
        "with a later one (Spearman rank correlation <code>agreement</code> at least the "
        "<code>trust</code> option), and spares the trials within the metric's noise of the "
        "cut.</p>"
        f'<table id="audit"><tr>{head}</tr>{rows}</table>'
        + (f'<ul class="warnings" id="audit-warnings">{items}</ul>' if warnings else "")
        + f"<p>{_e(analysis.audit_verdict(run))}.</p>"
    )


def _figure_html(plot: Any, run: analysis.Run) -> str:
    fig = plot(run)
    buf = io.BytesIO()
    # No Software tag: the page holds no URL at all, not even inside an image.
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    caption = (plot.__doc__ or plot.__name__).strip().split("\n\n")[0]
    caption = " ".join(caption.split())
    name = plot.__name__.removeprefix("plot_")
    return (
        f'<figure id="{_e(name)}"><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _errors_section(run: analysis.Run) -> str:
    t = run.trials
    if "error" not in t:
        return ""
    failed = t[t["status"] == "error"]
    if failed.empty:
        return ""
    items = []
    for _, row in failed.head(10).iterrows():
        text = str(row.get("error") or "").strip()
        last = text.splitlines()[-1] if text else "(no traceback)"
        items.append(f"<li><code>{_e(row['trial_id'])}</code>: {_e(last)}</li>")
    more = f"<p>and {len(failed) - 10} more.</p>" if len(failed) > 10 else ""
    return (
        f"<h2>Errors ({len(failed)} trials)</h2><ul>{''.join(items)}</ul>{more}"
        "<p>Full tracebacks are in the <code>error</code> column of trials.parquet.</p>"
    )
