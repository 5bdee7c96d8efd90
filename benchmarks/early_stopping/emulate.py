"""caviar's default sweep emulated in-process, in seconds instead of minutes: the same
searcher and stopping rule objects the real sweep uses (`caviar.searchers`,
`caviar.stopping.Stopping`), `--concurrent` trials advancing one epoch each in turn, as
Ray's event loop serves them. Ray's ASHA is emulated with caviar's rule set to trust every
rung from the start (ASHA's cut: the top 1/reduction_factor of everything recorded there).

For exploring the rule's options on the bank before a real run of `python -m
benchmarks.early_stopping` (which is what RESULTS.md reports):

    python -m benchmarks.early_stopping.emulate --families agree disagree --seeds 30 \\
        [--option min_pairs=4 ...]

With `--distinct`, a trial replays the bank's nearest configuration that no trial of its sweep
has replayed yet: a sensitivity check on the bank's resolution, not what the benchmark does.
A searcher that concentrates (TPE) sends many proposals near the best to the same banked
configuration, and each replays that curve exactly, where a real training run would differ by
seed noise (or be a curve not banked); sending them further away distorts the other way.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

from benchmarks.early_stopping.bank import MAX_EPOCHS, TASKS
from benchmarks.early_stopping.curves import SYNTHETIC, curves, space_of
from caviar.searchers import Outcome, searcher_class
from caviar.spec import parse_spec
from caviar.stopping import STOP, Stopping, StoppingOptions


class _Asha(Stopping):
    """ASHA's rule in caviar's terms: every rung trusted, ranked by best so far, no noise band,
    no window."""

    def trusted(self, rung: float) -> bool:
        return True

    def agreement(self, rung: float) -> None:
        return None

    def noise(self) -> float:
        return 0.0


def sweep(
    family: str,
    seed: int,
    trials: int,
    concurrent: int,
    rule: str,
    options: dict[str, Any],
    searcher: str | None = None,
    distinct: bool = False,
) -> tuple[float, int]:
    """The final value of the configuration the sweep hands the user (its best trial by best so
    far, then by last value) and the epochs it trained. `distinct`: see the module's doc."""
    raw = {
        "name": family,
        "metric": "val_acc",
        "mode": "max",
        "seed": seed,
        "train": {"function": "m:f", "max_epochs": MAX_EPOCHS},
        "space": space_of(family),
        "budget": {"num_samples": trials},
    }
    if searcher or rule == "asha":
        raw["searcher"] = {"name": searcher or "random"}
    spec = parse_spec(raw)
    searcher = searcher_class(spec.searcher.name)(
        spec.trial_space(), "val_acc", "max", trials, seed, spec.searcher.options
    )
    if rule == "asha":
        stopping: Stopping = _Asha("max", MAX_EPOCHS, StoppingOptions(window=0))
    else:
        defaults = spec.scheduler.options
        stopping = Stopping("max", MAX_EPOCHS, dataclasses.replace(defaults, **options))
    curve_of = curves(family)
    replayed: set[int] = set()
    running: list[dict[str, Any]] = []
    started = epochs = 0
    best: tuple[tuple[float, float], float] | None = None
    while started < trials or running:
        while started < trials and len(running) < concurrent:
            trial_id = f"t{started}"
            config = searcher.suggest(trial_id)
            started += 1
            if config is None:
                continue
            stopping.on_add(trial_id)
            if distinct and family not in SYNTHETIC:
                row = curve_of.nearest(config, exclude=replayed)
                replayed.add(row)
                curve = curve_of.curves[row]
            else:
                curve = curve_of.curve(config)
            running.append({"id": trial_id, "config": config, "curve": curve})
        for t in list(running):
            epoch = t.setdefault("epoch", 0) + 1
            t["epoch"] = epoch
            value = float(t["curve"][epoch - 1])
            epochs += 1
            t["best"] = max(t.get("best", value), value)
            decision = stopping.on_result(t["id"], epoch, value)
            if decision == STOP or epoch >= MAX_EPOCHS:
                running.remove(t)
                status = "completed" if epoch >= MAX_EPOCHS else "early_stopped"
                searcher.on_trial_complete(t["id"], Outcome(status, value, t["best"], epoch))
                # Ranked as `caviar.results.leaderboard` ranks: best so far, then last value.
                if best is None or (t["best"], value) > best[0]:
                    best = ((t["best"], value), float(t["curve"][-1]))
    assert best is not None
    return best[1], epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=[*TASKS, *SYNTHETIC])
    parser.add_argument("--rules", nargs="+", default=["caviar", "asha"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], help="NAME=VALUE of the rule")
    parser.add_argument("--searcher", help="instead of the default (ASHA: random)")
    parser.add_argument(
        "--distinct", action="store_true", help="no banked configuration replayed twice a sweep"
    )
    args = parser.parse_args()
    options = parse_options(args.option)
    for family in args.families:
        for rule in args.rules:
            finals, spent = [], []
            for seed in range(args.seeds):
                final, epochs = sweep(
                    family,
                    seed,
                    args.trials,
                    args.concurrent,
                    rule,
                    options,
                    args.searcher,
                    args.distinct,
                )
                finals.append(final)
                spent.append(epochs)
            sem = statistics.stdev(finals) / len(finals) ** 0.5
            print(
                f"{family:12s} {rule:7s} final {statistics.fmean(finals):.4f} ± {sem:.4f} "
                f"(sem)  epochs {statistics.fmean(spent):6.0f}",
                flush=True,
            )


def parse_options(texts: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` texts as options of the rule, each of the type of its default."""
    defaults = StoppingOptions()
    pairs = (text.partition("=")[::2] for text in texts)
    return {name: type(getattr(defaults, name))(value) for name, value in pairs}


if __name__ == "__main__":
    main()
