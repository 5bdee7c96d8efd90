"""A finished sweep, read back from its run directory: tables, plots and the best model.

    from caviar import analysis

    run = analysis.load("caviar_runs/quickstart-20261123-170612")   # a path or a URI
    analysis.leaderboard(run, top=10)        # trials that rank, best first (as `caviar results`)
    analysis.pareto_front(run)               # several metrics: the trials no other beats on all
    analysis.plot_learning_curves(run)       # every plot returns a matplotlib Figure
    analysis.importance(run)                 # pandas Series, most important parameter first
    analysis.stopping_summary(run)           # the scheduler's rungs and what stopping early saved
    print(analysis.audit_text(run))          # caviar's scheduler: what each rung measured and did
    best = analysis.best(run)                # trial id, config, metric value, test_acc, checkpoint
    path = analysis.export_best(run, "models")   # one file: weights, architecture, config

Loading an exported model for inference (caviar and torch installed; no run directory, no Ray):

    from caviar.analysis import load_model
    model = load_model("models/quickstart-1a2b3c4d.pt")   # torch.nn.Module, in eval mode
    with torch.no_grad():
        predicted = model(x).argmax(1)

``x`` is a tensor of raw inputs, shape (n, *shape): the built-in train function standardizes
every feature with the training split's mean and standard deviation, and its exported model
does the same itself, in a `caviar.analysis.standardize.Standardize` module ahead of the
network. ``caviar.train.data.load(task, seed)`` gives splits already standardized: feed those
to the network alone, ``model[-1]``. A model whose checkpoint carried no standardization (your
own train function, or a file of format version 1) is the bare network and takes inputs as its
training did. The file is a plain ``torch.save`` dict: ``state_dict``, ``arch`` (what
`caviar.train.models.build` takes), ``input_mean`` and ``input_std`` (or None), ``config``,
``metric``, ``value``, ``mode``, ``test_acc``, ``trial_id``, ``epoch``, ``spec``; read it with
``torch.load(path, weights_only=True)``.

Trials rank as in ``caviar results`` (`caviar.objective.RANKED`: completed, stopped early, and
the unfinished trials of an interrupted sweep): the leaderboard, the best trial, importance
and the plots that mark the best trial or compare trials by their best metric take the same
trials.

Everything here reads the Parquet tables and ``spec.yaml`` only, except `best` and
`export_best`, which also look into Ray's trial directory for checkpoints. Plots never raise
for lack of data: they return a Figure that says "no data" and why. Figures are built with
``matplotlib.figure.Figure``, not pyplot, so no backend is chosen or changed and no figure is
kept alive by pyplot; in Jupyter run ``%matplotlib inline`` once and a returned Figure shows.

Modules: `run` (loading a run directory), `tables` (leaderboard, statuses, the scheduler's
rungs and savings, caviar's stopping audit, importance), `plots`, `export` (the best trial
and its model), `standardize` (the exported model's input standardization; imports torch);
`scales` places values on their domain's scale for both tables and plots.
"""

from caviar.analysis.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    Best,
    ModelFileError,
    best,
    export_best,
    load_model,
)
from caviar.analysis.plots import (
    OUTCOME_COLORS,
    PLOTS,
    plot_importance,
    plot_learning_curves,
    plot_lr_batch_interaction,
    plot_metric_by_round,
    plot_parallel_coordinates,
    plot_param_effects,
    plot_pareto_front,
    plot_regions,
    plot_rung_survival,
)
from caviar.analysis.run import Run, load, read_spec
from caviar.analysis.tables import (
    SCHEDULER_LABELS,
    STOPPED_BY_SCHEDULER,
    AshaSummary,
    StoppingSummary,
    asha_rungs,
    asha_summary,
    audit,
    audit_text,
    audit_verdict,
    audit_warnings,
    importance,
    leaderboard,
    outcomes,
    pareto_front,
    scheduler_label,
    scheduler_rungs,
    status_counts,
    stopping_summary,
)

# Kept for code that read it here; what ranks is `caviar.objective.RANKED`.
from caviar.objective import HEALTHY

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "HEALTHY",
    "OUTCOME_COLORS",
    "PLOTS",
    "SCHEDULER_LABELS",
    "STOPPED_BY_SCHEDULER",
    "AshaSummary",
    "Best",
    "ModelFileError",
    "Run",
    "StoppingSummary",
    "asha_rungs",
    "asha_summary",
    "audit",
    "audit_text",
    "audit_verdict",
    "audit_warnings",
    "best",
    "export_best",
    "importance",
    "leaderboard",
    "load",
    "load_model",
    "outcomes",
    "pareto_front",
    "plot_importance",
    "plot_learning_curves",
    "plot_lr_batch_interaction",
    "plot_metric_by_round",
    "plot_parallel_coordinates",
    "plot_param_effects",
    "plot_pareto_front",
    "plot_regions",
    "plot_rung_survival",
    "read_spec",
    "scheduler_label",
    "scheduler_rungs",
    "status_counts",
    "stopping_summary",
]
