"""Fused trials on Ray (`resources: {fuse: k}`): up to k trials of one shape train as one
`caviar.train.population.Population` in a group actor, and each is still a Ray Tune trial.

A member trial holds no CPU or GPU: it asks the sweep's `Broker` for a group of its shape
(`caviar.train.group_key`), sends that group its configuration (and its checkpoint when it
resumes), and reports each epoch's metrics and checkpoint as they come back, as the built-in
train function does. So Ray Tune's searcher, scheduler, checkpoints, retries and resume see
every member as the trial it is; the groups hold the resources (`resources.cpu`/`gpu` each).

- A group trains an epoch once every member in it has asked for the next one: members report,
  the scheduler decides, the ones it continues ask again.
- A member the scheduler stops never asks again: the driver's `Release` callback has the
  broker take it out of its group, whose barrier then waits for one member fewer. New trials
  join groups of their shape that have room, or an empty group, between two epochs.
- A member that diverges or finishes leaves the population (`Population.train_epoch`); its
  trial ends as diverged or completed and the others go on.
- When a group's training raises, every member in it fails (a trial error each, retried from
  its checkpoint under `max_failures`) and the broker replaces the group.

This module talks to Ray (imported where it is used, so `Group` and `Broker` are tested without
it; `caviar.ray_seam.Release` is the driver's side); torch is imported only inside groups.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from caviar import session
from caviar.train import group_key

if TYPE_CHECKING:
    from caviar.spec import ResourcesSpec, SweepSpec

MEMBER_MEMORY = 128 * 2**20
"""The Ray `memory` a member trial asks for: its process passes results and checkpoints on and
trains nothing. (Ray needs a trial to ask for something; it asks for no CPU.)"""


class Group:
    """A population of member trials that trains one epoch whenever every member has asked
    for it. Runs as an async Ray actor; `next` and `remove` are its only calls."""

    def __init__(self, data: Any, model: str, threads: int, where: dict | None = None) -> None:
        from caviar.train.population import Population

        # All torch work in one thread of its own: CPU torch's OpenMP threads are a team per
        # calling thread, and a second team on the same cores slows both (measured: 2.7x).
        self.torch = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="caviar-group")
        self.population = self._in_torch(Population, data, model, threads=threads)
        self.where = session.where() if where is None else where
        self.asked: dict[str, asyncio.Future] = {}
        self.joining: dict[str, tuple[dict, dict | None]] = {}
        self.gone: set[str] = set()
        self.busy = False
        self.failed: BaseException | None = None

    async def next(
        self, key: str, config: dict | None = None, checkpoint: session.Pickled | None = None
    ) -> tuple[dict, session.Pickled | None, bool] | None:
        """The member's next epoch: (metrics, checkpoint, done), once every member has asked.
        Its first call brings its config (and checkpoint, resuming). None: nothing left to
        train (removed, or resumed from its last epoch)."""
        if self.failed is not None:
            raise RuntimeError(f"this trial's fused group failed: {self.failed!r}")
        if key in self.gone:
            return None
        if config is not None:
            self.joining[key] = (config, checkpoint)
        future = asyncio.get_running_loop().create_future()
        self.asked[key] = future
        self._step()
        return await future

    def remove(self, key: str) -> None:
        """Take a member out (stopped by the scheduler, or failed) before the next epoch."""
        self.gone.add(key)
        self.joining.pop(key, None)
        future = self.asked.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)
        self._step()

    def _step(self) -> None:
        """Between epochs: let members in and out, and train if every member has asked."""
        if self.busy:
            return
        population = self.population
        for key in [k for k in population.keys if k in self.gone]:
            self._in_torch(population.remove, key)
        for key, (config, checkpoint) in self.joining.items():
            try:
                state = None if checkpoint is None else pickle.loads(checkpoint)
                joined = self._in_torch(population.add, key, config, state)
            except Exception as e:  # this member's own problem: the others go on
                self.asked.pop(key).set_exception(e)
                continue
            if not joined:
                self.asked.pop(key).set_result(None)
        self.joining.clear()
        if len(population) and all(k in self.asked for k in population.keys):
            self.busy = True
            self._epoch_task = asyncio.get_running_loop().create_task(self._epoch())

    async def _epoch(self) -> None:
        try:
            # In the torch thread: remove() calls that arrive meanwhile wait for the epoch's end.
            out = await asyncio.get_running_loop().run_in_executor(self.torch, self._train_epoch)
        except BaseException as e:
            self.failed = e
            for future in self.asked.values():
                if not future.done():
                    future.set_exception(e)
            self.asked.clear()
            return
        for key, metrics, checkpoint, done in out:
            future = self.asked.pop(key, None)  # None: removed during the epoch
            if future is not None:
                future.set_result(({**metrics, **self.where}, checkpoint, done))
        self.busy = False
        self._step()

    def _in_torch(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """fn's result, run in the torch thread (between epochs, so it waits for no epoch)."""
        return self.torch.submit(fn, *args, **kwargs).result()

    def _train_epoch(self) -> list[tuple[str, dict, session.Pickled | None, bool]]:
        """An epoch, with each checkpoint pickled here: a member's process passes it on as it
        is, without torch."""
        return [
            (key, metrics, None if ckpt is None else session.Pickled(pickle.dumps(ckpt, 5)), done)
            for key, metrics, ckpt, done in self.population.train_epoch()
        ]


@dataclass
class _Slot:
    actor: Any
    key: tuple | None = None
    members: set[str] = field(default_factory=set)


class Broker:
    """Places member trials in groups: one of their shape with room, else an empty one, else
    a new one while there are fewer than `max_groups` (the resources they share hold that
    many); otherwise the member waits for a group to empty. Runs as an async Ray actor,
    created by the driver, so it and its groups go when the sweep's driver does."""

    def __init__(
        self,
        data: list,
        model: str,
        size: int,
        max_groups: int,
        threads: int,
        cpu: float,
        gpu: float,
        prestart: int = 0,
    ) -> None:
        self.data = data[0]  # an ObjectRef, kept as one: each group resolves it
        self.size, self.max_groups = size, max_groups
        self.model, self.threads, self.cpu, self.gpu = model, threads, cpu, gpu
        self.slots: dict[int, _Slot] = {}
        self.member: dict[str, tuple[int, str]] = {}
        self.ids = itertools.count()
        self.changed = asyncio.Condition()
        for _ in range(prestart):  # started while Ray Tune starts the member trials
            self.slots[next(self.ids)] = _Slot(self._new_group())

    async def assign(self, trial_id: str, key: tuple) -> tuple[int, Any, str]:
        """(group id, group, member key) for a trial; a member key is new at every call, so a
        retried trial never meets what its earlier attempt left behind."""
        self._release(trial_id)  # an earlier attempt of this trial
        async with self.changed:
            while (gid := self._place(key)) is None:
                await self.changed.wait()
        slot = self.slots[gid]
        slot.key = key
        slot.members.add(trial_id)
        member = f"{trial_id}/{next(self.ids)}"
        self.member[trial_id] = (gid, member)
        return gid, slot.actor, member

    def _place(self, key: tuple) -> int | None:
        def room(s: _Slot) -> bool:
            return s.key == key and len(s.members) < self.size

        for pick in (room, lambda s: not s.members):
            gid = next((g for g, s in self.slots.items() if pick(s)), None)
            if gid is not None:
                return gid
        if len(self.slots) < self.max_groups:
            gid = next(self.ids)
            self.slots[gid] = _Slot(self._new_group())
            return gid
        return None

    def _new_group(self) -> Any:
        import ray

        group = ray.remote(Group).options(num_cpus=self.cpu, num_gpus=self.gpu)
        return group.remote(self.data, self.model, self.threads)

    async def release(self, trial_id: str) -> None:
        """The trial ended, failed or is about to be retried: out of its group."""
        self._release(trial_id)
        async with self.changed:
            self.changed.notify_all()

    def _release(self, trial_id: str) -> None:
        gid, member = self.member.pop(trial_id, (None, ""))
        slot = self.slots.get(gid) if gid is not None else None
        if slot is not None:
            slot.members.discard(trial_id)
            slot.actor.remove.remote(member)

    async def lost(self, gid: int) -> None:
        """A group failed: its members are failing with it; the next ones get a new group."""
        import ray

        slot = self.slots.pop(gid, None)
        if slot is None:
            return
        ray.kill(slot.actor)
        for trial_id in slot.members:
            self.member.pop(trial_id, None)
        async with self.changed:
            self.changed.notify_all()


def member(config: dict[str, Any], *, broker: Any) -> None:
    """A member trial's train function: the built-in one, trained in a group."""
    import ray
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    gid, group, key = ray.get(broker.assign.remote(trial_id, group_key(config)))
    args: tuple = (config, session.get_checkpoint(pickled=True))
    while True:
        try:
            out = ray.get(group.next.remote(key, *args))
        except Exception:
            broker.lost.remote(gid)
            raise
        if out is None:
            return
        metrics, checkpoint, done = out
        session.report(metrics, checkpoint)
        if done:
            return
        args = ()


@dataclass(frozen=True)
class Layout:
    """How the `fuse` trials of one `resources` share train: `groups` group actors of up to
    `size` members each, each group with `cpu` CPUs and `threads` torch threads."""

    groups: int
    size: int
    cpu: float
    threads: int


def layout(resources: ResourcesSpec) -> Layout:
    """One group per share on a GPU. On CPUs only, one single-threaded group per whole CPU:
    torch's intra-op threads do not speed up a population's small batched products, and
    processes do (measured, mnist1d MLP 128x2, 2 cores: a population of 8 trains an epoch in
    249 ms on one thread and 254 ms on two; two populations of 4 in two processes train 50
    member-epochs/s against the one population's 32)."""
    r = resources
    if r.gpu or r.cpu < 2:
        return Layout(1, r.fuse, r.cpu, max(1, int(r.cpu)))
    groups = min(int(r.cpu), r.fuse)
    return Layout(groups, -(-r.fuse // groups), r.cpu / groups, max(1, int(r.cpu / groups)))


def start(spec: SweepSpec, data: Any, shares: int) -> Any:
    """The sweep's broker for `shares` shares of `resources` (groups as `layout` says), as an
    actor the caller owns (and kills at the sweep's end), with the groups that the sweep's
    trials will fill already starting."""
    import ray

    r, lay = spec.resources, layout(spec.resources)
    max_groups = shares * lay.groups
    prestart = min(max_groups, -(-spec.budget.num_samples // lay.size))
    return (
        ray.remote(Broker)
        .options(num_cpus=0)
        .remote(
            [ray.put(data)],
            spec.train.model,
            lay.size,
            max_groups,
            lay.threads,
            lay.cpu,
            r.gpu,
            prestart,
        )
    )


def trainable(broker: Any, metrics: tuple[str, ...]) -> Any:
    """The function Ray Tune runs for each member trial."""
    return functools.partial(_member_trainable, broker=broker, metrics=metrics)


def _member_trainable(config: dict, *, broker: Any, metrics: tuple[str, ...]) -> None:
    session.run(functools.partial(member, broker=broker), config, session.RaySession(metrics))
