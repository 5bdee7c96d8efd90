"""How a train function talks to the sweep: `report` once per epoch and `get_checkpoint` to
resume. The same two calls work inside a Ray Tune trial and in a plain Python process (tests,
notebooks, `caviar lr-find`), where results are kept in memory."""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import pickle
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

CHECKPOINT_FILE = "checkpoint.pkl"
FINAL = "caviar_final"
"""Marks the result a one-shot objective returned."""


class Diverged(Exception):
    """Raised by `report` after a non-finite metric; the trial ends with status diverged."""


class ReportError(TypeError):
    """A train function reported something the sweep cannot use."""


class OutOfMemoryError(Exception):
    """The train function ran out of memory: the trial ends in error alone, its
    ``error_type`` in trials.parquet is ``OutOfMemoryError`` (as for a trial Ray's memory
    monitor kills), and the other trials go on."""


def _memory_kind(e: BaseException) -> str | None:
    """ "CPU" or "GPU" if `e` is an allocation failure, else None."""
    if isinstance(e, MemoryError):
        return "CPU"
    torch = sys.modules.get("torch")  # only a train function that imported it can raise its
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        return "GPU"
    if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # torch's CPU allocator
        return "CPU"
    return None


class Pickled(bytes):
    """A checkpoint dict already pickled, as a checkpoint file holds it: a fused trial passes
    its group's checkpoints on this way, so its process never imports torch."""


class Session:
    """Where reports go. The base class keeps them in memory."""

    def __init__(self, metric: str | Sequence[str] | None = None, checkpoint: dict | None = None):
        self.metrics = (metric,) if isinstance(metric, str) else tuple(metric or ())
        """The sweep's metrics, each of which every report must carry as a number."""
        self.metric = self.metrics[0] if self.metrics else None
        """The first: what Ray ranks by, and whose non-finite value is divergence."""
        self.results: list[dict[str, Any]] = []
        self.checkpoint = checkpoint
        self.reported = 0
        self.last_epoch = 0
        """The epoch of the latest report, or of the checkpoint the trial resumed from."""

    def report(self, metrics: dict[str, Any], checkpoint: dict | Pickled | None) -> None:
        self.results.append(metrics)
        if checkpoint is not None:
            # A round trip through pickle, as a real checkpoint would take.
            self.checkpoint = pickle.loads(_pickled(checkpoint))

    def get_checkpoint(self, pickled: bool = False) -> dict | Pickled | None:
        state = self._resumed_from(self.checkpoint)
        return Pickled(_pickled(state)) if pickled and state is not None else state

    def _resumed_from(self, state: Any) -> Any:
        """The checkpoint a trial resumes from: its epoch is the trial's latest."""
        if isinstance(state, dict) and isinstance(state.get("epoch"), int):
            self.last_epoch = state["epoch"]
        return state


def _pickled(checkpoint: dict | Pickled) -> bytes:
    return checkpoint if isinstance(checkpoint, Pickled) else pickle.dumps(checkpoint, protocol=5)


def where() -> dict[str, str]:
    """Where this Ray worker trains: its node, and its GPU's model when it has one."""
    import ray

    out = {"node_id": ray.get_runtime_context().get_node_id()}
    if ray.get_gpu_ids():
        import torch  # a GPU trial trains with torch; ask it which GPU this is

        out["gpu_model"] = torch.cuda.get_device_name(0)
    return out


class RaySession(Session):
    """Reports to Ray Tune; checkpoints are a pickled dict in a checkpoint directory."""

    def __init__(self, metric: str | Sequence[str] | None = None):
        super().__init__(metric)
        self.where = where()

    def report(self, metrics: dict[str, Any], checkpoint: Any) -> None:
        from ray import tune

        # A fused trial's metrics say where its group trained.
        metrics = {**self.where, **metrics}
        if checkpoint is None:
            _ray("tune.report")(metrics)
            return
        if isinstance(checkpoint, tune.Checkpoint):  # a Ray Tune function's own directory
            # Its epoch goes with it: a trial restored from it goes on counting from there.
            with open(os.path.join(checkpoint.path, EPOCH_FILE), "w") as f:
                f.write(str(metrics["epoch"]))
            _ray("tune.report")(metrics, checkpoint=checkpoint)
            return
        # Ray copies the directory to the run's storage inside report(), so a temporary
        # directory is enough.
        with tempfile.TemporaryDirectory(prefix="caviar-ckpt-") as d:
            with open(os.path.join(d, CHECKPOINT_FILE), "wb") as f:
                f.write(_pickled(checkpoint))
            with open(os.path.join(d, EPOCH_FILE), "w") as f:
                f.write(str(metrics["epoch"]))
            _ray("tune.report")(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    def get_checkpoint(self, pickled: bool = False) -> dict | Pickled | None:
        ckpt = self.ray_checkpoint()  # its epoch file, when it has one, sets last_epoch
        if ckpt is None:
            return None
        with _directory(ckpt) as d, open(os.path.join(d, CHECKPOINT_FILE), "rb") as f:
            return Pickled(f.read()) if pickled else self._resumed_from(pickle.load(f))

    def ray_checkpoint(self) -> Any:
        """The trial's checkpoint as Ray Tune gives it (for a Ray Tune train function)."""
        ckpt = _ray("tune.get_checkpoint")()
        if ckpt is not None:
            with _directory(ckpt) as d:
                path = os.path.join(d, EPOCH_FILE)
                if os.path.exists(path):
                    with open(path) as f:
                        self.last_epoch = int(f.read())
        return ckpt


@contextmanager
def _directory(ckpt: Any) -> Iterator[str]:
    """A Ray checkpoint's directory, read where it is when it is on this machine's disk. (Ray
    reads in place only from pyarrow's own local filesystem; from the one caviar writes local
    run directories with, `storage.ReplacingLocalHandler`, it would copy the checkpoint first.)"""
    from caviar.storage import is_local

    if is_local(ckpt.filesystem):
        yield ckpt.path
    else:
        with ckpt.as_directory() as d:
            yield d


# --- Ray Tune train functions, unchanged ------------------------------------------------------

EPOCH_FILE = ".caviar_epoch"
_RAY: dict[str, Callable[..., Any]] = {}
"""Ray Tune's own report and get_checkpoint, before `use_ray_tune_functions` routes them."""


def _ray(key: str) -> Callable[..., Any]:
    """Ray's own function `key` ("tune.report", ...), whether or not caviar routes it."""
    if key in _RAY:
        return _RAY[key]
    import ray.train
    import ray.tune

    module, name = key.split(".")
    return getattr(getattr(ray, module), name)


def use_ray_tune_functions() -> None:
    """Route `ray.tune.report` / `ray.train.report` and `ray.tune.get_checkpoint` /
    `ray.train.get_checkpoint` through caviar while a caviar trial runs in this process, so a
    function written for Ray Tune runs unchanged: its reports are checked and recorded like
    `caviar.report`'s (their epoch counted as Ray counts ``training_iteration`` when they
    carry none), its checkpoint directories pass through, and a restored trial goes on
    counting from its checkpoint's epoch. Outside a caviar trial Ray's own functions run.
    Call it before the user's module is imported (``from ray.tune import report`` binds at
    import)."""
    import ray.train
    import ray.tune

    if _RAY:
        return
    for module, name in ((ray.tune, "tune"), (ray.train, "train")):
        _RAY[f"{name}.report"] = module.report
        _RAY[f"{name}.get_checkpoint"] = module.get_checkpoint
        module.report = functools.partial(_ray_report, name)
        module.get_checkpoint = functools.partial(_ray_get_checkpoint, name)


def _ray_report(which: str, metrics: Mapping[str, Any], *, checkpoint: Any = None) -> None:
    s = _current
    if not isinstance(s, RaySession):
        return _ray(f"{which}.report")(metrics, checkpoint=checkpoint)
    if not isinstance(metrics, Mapping):
        raise ReportError(
            f"ray.{which}.report: expected a dict of metrics, found {type(metrics).__name__}"
        )
    report(metrics, checkpoint)


def _ray_get_checkpoint(which: str) -> Any:
    s = _current
    if not isinstance(s, RaySession):
        return _ray(f"{which}.get_checkpoint")()
    return s.ray_checkpoint()


_current: Session | None = None


@contextmanager
def active(session: Session) -> Iterator[Session]:
    """Make `session` receive `report` and `get_checkpoint` calls in this process."""
    global _current
    previous, _current = _current, session
    try:
        yield session
    finally:
        _current = previous


def _session() -> Session:
    global _current
    if _current is None:
        _current = Session()
    return _current


def report(metrics: Mapping[str, Any], checkpoint: dict | None = None) -> None:
    """Report one epoch's metrics and optionally a checkpoint dict. ``epoch`` (an integer from
    1) defaults to the next one: one more than the last report's, or than the epoch of the
    checkpoint a restored trial resumed from (as Ray counts ``training_iteration`` and W&B
    counts ``wandb.log`` steps).

    A non-finite value of the sweep's metric, or ``diverged: True``, ends the trial as
    diverged: the report is recorded and then `Diverged` is raised out of the train function.
    """
    s = _session()
    metrics = dict(metrics)
    epoch = metrics.setdefault("epoch", s.last_epoch + 1)
    if isinstance(epoch, float) and epoch.is_integer():
        metrics["epoch"] = epoch = int(epoch)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        # Epoch k is the k-th epoch trained: rungs count so, and a trial completes at
        # max_epochs (a loop counting from 0 would never get there).
        fix = (
            "epochs count from 1, and a trial completes at max_epochs: where the loop counts "
            "from 0 (for epoch in range(n)), report epoch + 1"
            if epoch == 0 and type(epoch) is int
            else "report the epoch's number, or leave 'epoch' out to count each report as the "
            "next epoch"
        )
        raise ReportError(
            f"caviar.report: metrics need an integer 'epoch' >= 1, found {epoch!r}; {fix}"
        )
    for name in s.metrics:
        if name not in metrics:
            raise ReportError(
                f"caviar.report: the sweep's metric '{name}' is missing from the reported "
                f"keys {sorted(metrics)}; report it, or set `metric` in the spec to one of them"
            )
        number = metrics[name]
        if not isinstance(number, numbers.Real) or isinstance(number, bool):
            item = " (a tensor's .item())" if hasattr(number, "item") else ""
            raise ReportError(
                f"caviar.report: the sweep's metric '{name}' must be a number, found "
                f"{number!r} ({type(number).__name__}) at epoch {epoch}; report it as a "
                f"float{item}"
            )
        metrics[name] = float(number)  # numpy scalars as well: a float is what is recorded
    value = metrics.get(s.metric) if s.metric is not None else None
    if s.metric is not None and s.reported and epoch <= s.last_epoch:
        # Within one run of the train function epochs go up; only a restored trial replays.
        final = metrics.get(FINAL) and epoch == s.last_epoch  # a returned dict: the last word
        if not final:
            raise ReportError(
                f"caviar.report: epoch {epoch} reported after epoch {s.last_epoch}; the later "
                "report would replace the earlier ones at that epoch and after: report each "
                "epoch once, in order, with all its metrics in one dict"
            )
    diverged = bool(metrics.get("diverged")) or (
        isinstance(value, (int, float)) and not math.isfinite(value)
    )
    if diverged:
        metrics["diverged"] = True
    s.report(metrics, checkpoint)
    s.reported += 1
    s.last_epoch = epoch
    if diverged:
        raise Diverged(f"{s.metric}={value!r} at epoch {epoch}")


def get_checkpoint(pickled: bool = False) -> dict | Pickled | None:
    """The latest checkpoint dict of this trial if it is being resumed, else None; `pickled`:
    as its file holds it, unread."""
    return _session().get_checkpoint(pickled)


def run(fn: Callable[[dict], Any], config: dict[str, Any], session: Session) -> Session:
    """Run a train function in `session`: a returned dict counts as a final report, and a
    diverged trial ends quietly (its status is in its last report)."""
    with active(session):
        try:
            out = fn(dict(config))
        except Diverged:
            return session
        except Exception as e:
            kind = _memory_kind(e)
            if kind is None:
                raise
            if kind == "GPU":
                # Give what the trial held back to the trials sharing the GPU: drop the
                # tensors its frames still reference, then torch's cache of them.
                traceback.clear_frames(e.__traceback__)
                sys.modules["torch"].cuda.empty_cache()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OutOfMemoryError(
                f"the trial ran out of {kind} memory ({first}); lower batch_size or the "
                "model's size, or give each trial a larger share of a node (resources)"
            ) from e
        if isinstance(out, Mapping):
            # The trial's last result: a scheduler's stop at this point stops nothing.
            out = {**out, FINAL: True}
            with contextlib.suppress(Diverged):
                report(out)
        elif not session.reported and not session.last_epoch:
            raise ReportError(
                f"caviar.report: the train function returned {out!r} without reporting "
                "anything; call caviar.report (or ray.tune.report) once per epoch, or return "
                "the final metrics as a dict"
            )
    return session
