"""caviar.fused: a group's barrier and membership, and the broker's placement (no Ray; the
sweeps of fused trials on real Ray are in test_sweep.py and test_faults.py)."""

import asyncio
import pickle

import pytest

from caviar.fused import Broker, Group, Layout, layout
from caviar.session import Pickled
from caviar.spec import ResourcesSpec
from caviar.train import group_key
from caviar.train.data import load
from caviar.train.population import Population

A = {"max_epochs": 3, "lr": 3e-3, "hidden": 32, "seed": 1}
B = {"max_epochs": 3, "lr": 1e-2, "hidden": 48, "seed": 2}


@pytest.fixture(scope="module")
def data():
    return load("synthetic")


def alone(data, config):
    """Each epoch's val_loss of `config` trained by itself."""
    population = Population(data, "mlp")
    population.add("x", config)
    out = []
    while len(population):
        out += [m["val_loss"] for _, m, _, _ in population.train_epoch()]
    return out


async def play(group, key, config, stop_after=None):
    """A member trial: join, then ask for epochs until done (or `stop_after` epochs, as if
    the scheduler stopped it); its val_loss per epoch."""
    out, args = [], (config, None)
    while True:
        result = await group.next(key, *args)
        if result is None:
            return out
        metrics, checkpoint, done = result
        out.append(metrics["val_loss"])
        # Pickled in the group: the member's process passes it on without torch.
        assert isinstance(checkpoint, Pickled)
        assert pickle.loads(checkpoint)["epoch"] == metrics["epoch"] == len(out)
        if done:
            return out
        if stop_after == len(out):
            group.remove(key)  # what the driver's Release callback has the broker do
            return out
        args = ()


def test_members_train_together_as_alone_and_a_stopped_one_leaves(data):
    async def sweep():
        group = Group(data, "mlp", threads=1, where={"node_id": "n"})
        return await asyncio.gather(play(group, "a", A), play(group, "b", B, stop_after=1))

    a, b = asyncio.run(sweep())
    assert len(a) == 3 and len(b) == 1
    assert a == pytest.approx(alone(data, A), abs=1e-5)
    assert b == pytest.approx(alone(data, B)[:1], abs=1e-5)


def test_an_epoch_waits_for_every_member_and_a_latecomer_joins_between_epochs(data):
    async def sweep():
        group = Group(data, "mlp", threads=1, where={})
        first, _, _ = await group.next("a", A)  # a alone: its epoch runs at once
        late = asyncio.ensure_future(group.next("b", B))  # b joins after a's first epoch
        await asyncio.sleep(0)
        assert not group.busy and not late.done()  # a has not asked for its next epoch yet
        second, _, _ = await group.next("a")
        return first, second, (await late)[0]

    first, second, late = asyncio.run(sweep())
    assert (first["epoch"], second["epoch"], late["epoch"]) == (1, 2, 1)
    assert late["val_loss"] == pytest.approx(alone(data, B)[0], abs=1e-5)


def test_a_removed_member_gets_nothing_more_and_a_failure_reaches_every_member(data):
    async def sweep():
        group = Group(data, "mlp", threads=1, where={})
        group.remove("gone")
        assert await group.next("gone", A) is None  # a stopped trial's late call
        # A member whose training raises: every member waiting on the epoch gets the error.
        group.population.train_epoch = lambda: 1 / 0
        results = await asyncio.gather(
            group.next("a", A), group.next("b", B), return_exceptions=True
        )
        assert all(isinstance(r, ZeroDivisionError) for r in results)
        with pytest.raises(RuntimeError, match="fused group failed"):
            await group.next("c", A)

    asyncio.run(sweep())


class _FakeGroup:
    """A group actor's handle, as the broker uses it."""

    def __init__(self) -> None:
        self.removed: list[str] = []
        self.remove = self  # group.remove.remote(key)

    def remote(self, key: str) -> None:
        self.removed.append(key)


class _Broker(Broker):
    def _new_group(self):
        return _FakeGroup()


@pytest.mark.parametrize("prestart", [0, 2])
def test_the_broker_fills_groups_by_shape_and_waits_for_room(prestart):
    async def sweep():
        broker = _Broker([None], "mlp", 2, 2, threads=1, cpu=1, gpu=0, prestart=prestart)
        small, large = group_key({"batch_size": 32}), group_key({"batch_size": 64})
        g1, _, m1 = await broker.assign("t1", small)
        g2, _, _ = await broker.assign("t2", small)
        g3, _, _ = await broker.assign("t3", large)
        assert g1 == g2 != g3  # same shape shares a group; another shape gets its own
        waiting = asyncio.ensure_future(broker.assign("t4", small))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # two groups, both in use: t4 waits for room
        g1_actor = broker.slots[g1].actor
        await broker.release("t1")
        g4, _, member = await waiting
        assert g4 == g1 and g1_actor.removed == [m1]
        # A retried trial gets a new member key, and its earlier one leaves its group.
        g4b, _, again = await broker.assign("t4", small)
        assert again != member and member in broker.slots[g4b].actor.removed
        # An empty group takes any shape.
        await broker.release("t3")
        g5, _, _ = await broker.assign("t5", group_key({"batch_size": 128}))
        assert g5 == g3

    asyncio.run(sweep())


@pytest.mark.parametrize(
    "resources, expected",
    [
        # One group per share on a GPU, with the share's CPUs as its torch threads.
        ({"cpu": 4, "gpu": 0.5, "fuse": 8}, Layout(1, 8, 4, 4)),
        # CPUs only: a single-threaded group per whole CPU, the members spread over them.
        ({"cpu": 1, "fuse": 8}, Layout(1, 8, 1, 1)),
        ({"cpu": 1.5, "fuse": 8}, Layout(1, 8, 1.5, 1)),
        ({"cpu": 2, "fuse": 8}, Layout(2, 4, 1, 1)),
        ({"cpu": 3, "fuse": 8}, Layout(3, 3, 1, 1)),
        ({"cpu": 2.5, "fuse": 8}, Layout(2, 4, 1.25, 1)),
        # Fewer members than CPUs: one group each, the CPUs shared out as threads.
        ({"cpu": 4, "fuse": 2}, Layout(2, 1, 2, 2)),
    ],
)
def test_a_share_of_cpus_trains_its_members_as_a_group_per_cpu(resources, expected):
    lay = layout(ResourcesSpec(**resources))
    assert lay == expected
    assert lay.groups * lay.size >= resources["fuse"] > (lay.groups - 1) * lay.size
