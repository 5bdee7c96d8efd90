"""A population: k trials of one architecture trained as one batched computation.

Each member is a trial of its own: its hyperparameters, seed (initial weights), data order,
dropout and mixup noise, learning-rate schedule, optimizer state, epochs and early stopping.
Members share only the shape of the computation: the model's structure and the batch size
(`group_key`). Widths (`hidden`, `channels`) may differ: every member is zero-padded to the
widest, and its padded units stay exactly zero (nothing flows into or out of them, so their
gradients, optimizer moments and decayed weights stay zero): a padded member computes what it
would alone.

Parameters are stacked along a leading member dimension and the network runs once for all
members, `torch.func.vmap` over `torch.func.functional_call` (once a batch shape has run
`TRACE_AFTER` steps, as a traced graph of the aten ops that computing every member's gradient
runs: `_backward`); `StackedOptimizer` updates every member with per-member hyperparameters.
Dropout masks and mixup permutations come from a counter-based hash of (seed, batch, layer,
element), drawn for all members at once and independent of who else is in the population. The
built-in train function is a population of one, so a member's results equal the same
configuration trained alone with the same seed, up to float rounding (tests/test_population.py).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils import _pytree as pytree

from caviar.train import DEFAULTS, SHARED, group_key, models
from caviar.train.data import Data
from caviar.train.optim import Schedule, StackedOptimizer

BATCHED_OPTIMIZER_FROM = 9
"""On a GPU, populations of this many members or more update in one batched set of kernels
(`StackedOptimizer`); smaller ones call torch's fused kernel per member."""


TRACE_AFTER = 200
"""Steps a batch shape runs eagerly in a population (as it stands: a member joining or leaving
starts the count again) before its gradient computation is traced. Tracing costs about what
this many steps then save (mnist1d MLP on one CPU thread: 0.06-0.09 s against 0.12-0.55 ms a
step for 1-8 members), so a population that changes every few epochs never pays for a trace
it does not use for as long again."""


def batches_per_epoch(n: int, hp: dict[str, Any]) -> int:
    """Batches in an epoch of `n` examples. With batch norm a last batch of one example is
    left out (a different one each epoch): a batch of one has no variance to normalize by."""
    bs = int(hp["batch_size"])
    batches = math.ceil(n / bs)
    return batches - 1 if hp["batch_norm"] and n % bs == 1 and batches > 1 else batches


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- counter-based noise -------------------------------------------------------------------


def _int32(x: Any) -> Tensor:
    """32-bit values (Python ints or an int64 tensor, any sign) as int32, modulo 2**32."""
    x = torch.as_tensor(x, dtype=torch.int64) & 0xFFFFFFFF
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def _hash32(x: Tensor) -> Tensor:
    """lowbias32 (Chris Wellons' integer hash) on int32 tensors: multiplication wraps modulo
    2**32 as on unsigned ints, and each right shift is made logical by a mask. Half the bytes
    of the same hash on int64 values, and no mask after each multiply: 1.5x faster on the CPU
    (the dropout masks of every training step are drawn with it)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * (0x846CA68B - (1 << 32))  # the constant as a signed 32-bit value
    return x ^ ((x >> 16) & 0xFFFF)


@functools.lru_cache(maxsize=64)
def _cells(rows: int, cols: int, device: torch.device) -> Tensor:
    """[1, rows, cols]: the hash of each element's (row << 16) + col, the same at every step
    (so hashed once: half of `_uniform`'s work)."""
    r = torch.arange(rows, device=device, dtype=torch.int32).view(1, -1, 1) << 16
    c = torch.arange(cols, device=device, dtype=torch.int32).view(1, 1, -1)
    return _hash32(r + c)


def _bits(keys: Tensor, rows: int, cols: int) -> Tensor:
    """[k, rows, cols] int32 uniform in [0, 2**24) from per-member int32 `keys` [k]: element
    (r, c) of member j depends only on keys[j], r and c."""
    x = _hash32(_cells(rows, cols, keys.device) ^ keys.view(-1, 1, 1))
    return (x >> 8) & 0xFFFFFF


def _uniform(keys: Tensor, rows: int, cols: int) -> Tensor:
    """`_bits` as uniforms in [0, 1)."""
    return _bits(keys, rows, cols).to(torch.float32) * (1.0 / (1 << 24))


# --- members -------------------------------------------------------------------------------


@dataclass
class _Member:
    key: Hashable
    hp: dict[str, Any]
    names: list[str]
    """The member's own state_dict names: its parameters, then its buffers."""
    shapes: list[torch.Size]
    schedule: Schedule
    shuffle: torch.Generator
    mix: np.random.Generator
    seed_key: int
    params: int
    """Its trainable parameters, as its own network (not the population's padded one) has."""
    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    test_acc: float = math.nan
    bad_epochs: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    """Its unpadded model and optimizer state, while it is not stacked."""

    @property
    def finished(self) -> bool:
        """Trained max_epochs, or out of patience."""
        patience = int(self.hp["patience"])
        return self.epoch >= int(self.hp["max_epochs"]) or bool(
            patience and self.bad_epochs >= patience
        )


def _seed_key(seed: int) -> int:
    return int(np.random.SeedSequence([seed, 0x6361]).generate_state(1)[0])


def _dropout_widths(module: nn.Module, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The feature shape entering each Dropout layer, in forward order: one sample of zeros
    through the (meta) template in eval mode, with zeros for its weights. Not on the meta
    device itself: torch's meta kernels import torch._dynamo, 3-4 s of CPU at the start of
    every trial process."""
    widths: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_pre_hook(lambda _, args: widths.append(tuple(args[0].shape[1:])))
        for m in module.modules()
        if isinstance(m, models.Dropout)
    ]
    named = [*module.named_parameters(), *module.named_buffers()]
    zeros = {n: torch.zeros(t.shape, dtype=t.dtype) for n, t in named}
    training = module.training
    with torch.no_grad():
        torch.func.functional_call(module.eval(), zeros, (torch.zeros(1, math.prod(shape)),))
    module.train(training)
    for h in hooks:
        h.remove()
    return widths


def _pad(t: Tensor, shape: torch.Size) -> Tensor:
    if t.shape == shape:
        return t
    out = t.new_zeros(shape)
    out[tuple(slice(0, s) for s in t.shape)] = t
    return out


def _cut(t: Tensor, shape: torch.Size) -> Tensor:
    return t[tuple(slice(0, s) for s in shape)]


class Population:
    """Trains its members one epoch at a time; members join (`add`) and leave (`remove`)
    between epochs. All members must have the same `group_key`."""

    def __init__(self, data: Data, model: str, *, device: Any = None, threads: int = 1):
        torch.set_num_threads(threads)
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.data, self.model = data, model

        def tensor(a: Any) -> Tensor:
            return torch.as_tensor(a).to(self.device)

        self.x_train, self.y_train = tensor(data.x_train), tensor(data.y_train)
        self.x_val, self.y_val = tensor(data.x_val), tensor(data.y_val)
        self.x_test, self.y_test = tensor(data.x_test), tensor(data.y_test)
        self.members: list[_Member] = []
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self.opt: StackedOptimizer | None = None

    def __len__(self) -> int:
        return len(self.members)

    @property
    def keys(self) -> list[Hashable]:
        return [m.key for m in self.members]

    # --- membership ----------------------------------------------------------------------

    def add(self, key: Hashable, config: dict[str, Any], checkpoint: dict | None = None) -> bool:
        """A new member, or one resumed from the checkpoint it reported. A checkpoint of a
        finished member (its last epoch) leaves nothing to train: it does not join (False)."""
        hp = {**DEFAULTS, **config}
        if self.members and group_key(hp) != group_key(self.members[0].hp):
            theirs = dict(zip(SHARED, group_key(self.members[0].hp), strict=True))
            mine = dict(zip(SHARED, group_key(hp), strict=True))
            diff = {k: (mine[k], theirs[k]) for k in SHARED if mine[k] != theirs[k]}
            raise ValueError(f"member {key!r} differs in shape from the population: {diff}")
        if any(m.key == key for m in self.members):
            raise ValueError(f"member {key!r} is already in the population")
        seed = int(hp["seed"])
        # Initial weights from the member's seed, without touching the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = models.build(self.model, self.data.shape, self.data.num_classes, hp)
        names = [n for n, _ in net.named_parameters()] + [n for n, _ in net.named_buffers()]
        own = net.state_dict()
        steps_per_epoch = math.ceil(
            batches_per_epoch(len(self.x_train), hp) / int(hp["accumulate"])
        )
        m = _Member(
            key,
            hp,
            names,
            [own[n].shape for n in names],
            Schedule(hp, steps_per_epoch),
            torch.Generator().manual_seed(seed),
            np.random.default_rng([seed, 0x6D6978]),
            _seed_key(seed),
            sum(p.numel() for p in net.parameters() if p.requires_grad),
        )
        m.state = {"model": own, "optimizer": None, "steps": 0.0}
        if checkpoint is not None:
            self._restore(m, checkpoint)
            if m.finished:
                return False
        self._restack([*self._unstack(), m])
        return True

    def remove(self, key: Hashable) -> None:
        self._restack([m for m in self._unstack() if m.key != key])

    def _restore(self, m: _Member, ckpt: dict[str, Any]) -> None:
        m.state = {
            "model": ckpt["model"],
            "optimizer": ckpt["optimizer"]["state"],
            "steps": float(ckpt["optimizer"]["steps"]),
        }
        m.schedule.load_state_dict(ckpt["schedule"])
        m.shuffle.set_state(ckpt["shuffle_rng"])
        m.mix.bit_generator.state = ckpt["mix_rng"]
        m.epoch, m.best_acc, m.test_acc, m.bad_epochs = (
            int(ckpt["epoch"]),
            float(ckpt["best_val_acc"]),
            float(ckpt["test_acc"]),
            int(ckpt["bad_epochs"]),
        )
        m.step = m.epoch * m.schedule.steps_per_epoch

    def _unstack(self) -> list[_Member]:
        """Every member with its own unpadded state (on the CPU) in `state`, for checkpoints
        and restacking; the stacked tensors stay as they are."""
        if not self.members:
            return []
        assert self.opt is not None
        # One copy per stacked tensor, then views: not one small copy per member and tensor.
        params = [p.detach().cpu() for p in self.params.values()]
        buffers = [b.cpu() for b in self.buffers.values()]
        opt_state = [{k: v.cpu() for k, v in s.items()} for s in self.opt.state]
        steps = self.opt.steps.tolist()
        for j, m in enumerate(self.members):
            model = {
                name: _cut(t[j], shape)
                for name, t, shape in zip(m.names, params + buffers, m.shapes, strict=True)
            }
            optimizer = [
                {k: _cut(v[j], shape) for k, v in s.items()}
                for s, shape in zip(opt_state, m.shapes, strict=False)
            ]
            m.state = {"model": model, "optimizer": optimizer, "steps": steps[j]}
        return self.members

    def _restack(self, members: list[_Member]) -> None:
        self.members = members
        self._traced: dict[int, Callable] = {}
        self._eager_steps: collections.Counter[int] = collections.Counter()
        if not members:
            self.params, self.buffers, self.opt = {}, {}, None
            return
        hp0 = members[0].hp
        widest = {
            "hidden": max(int(m.hp["hidden"]) for m in members),
            "channels": max(int(m.hp["channels"]) for m in members),
            # A Dropout layer wherever any member has one; the others keep everything.
            "dropout": max(float(m.hp["dropout"]) for m in members),
        }
        with torch.device("meta"):
            template = models.build(
                self.model, self.data.shape, self.data.num_classes, {**hp0, **widest}
            )
        self.template = template
        self.dropout_widths = _dropout_widths(template, self.data.shape)
        n_params = len(list(template.parameters()))
        named = list(template.named_parameters()) + list(template.named_buffers())
        stacked = []
        for i, (_, t) in enumerate(named):
            own = [m.state["model"][m.names[i]].to(self.device) for m in members]
            stacked.append(torch.stack([_pad(o, t.shape) for o in own]))
        self.params = {
            n: s.requires_grad_() for (n, _), s in zip(named[:n_params], stacked, strict=False)
        }
        for p in self.params.values():
            p.grad = torch.zeros_like(p)  # kept, and zeroed after each step: see StackedOptimizer
        self._detached = {n: p.detach() for n, p in self.params.items()}
        self._eager_loss = self._vmap(self._loss, (0,) * 8)
        self.buffers = {
            n: s for (n, _), s in zip(named[n_params:], stacked[n_params:], strict=True)
        }
        hps = [m.hp for m in members]
        self.opt = StackedOptimizer(
            hp0["optimizer"],
            bool(hp0["nesterov"]),
            hps,
            self.device,
            # Below 9 members one fused kernel per member launches fewer kernels than the
            # batched update's ~20 per parameter tensor; kernel launches bound small models.
            batched=self.device.type == "cuda" and len(members) > BATCHED_OPTIMIZER_FROM - 1,
        )
        self.opt.init_state(list(self.params.values()))
        for j, m in enumerate(members):
            if m.state["optimizer"] is not None:
                for s, own in zip(self.opt.state, m.state["optimizer"], strict=True):
                    for k, v in own.items():
                        s[k][j][tuple(slice(0, d) for d in v.shape)] = v.to(self.device)
            self.opt.steps[j] = m.state["steps"]
            m.state = {}
        # Per-member hyperparameters the forward pass uses, as tensors.
        self.dropout = self._per_member("dropout")
        # Dropout keeps an element whose 24 random bits are at least keep_from, and scales it.
        self.keep_from = torch.ceil(self.dropout * (1 << 24)).to(torch.int32).view(-1, 1, 1)
        self.scale = torch.where(self.dropout > 0, 1 / (1 - self.dropout), 1.0).view(-1, 1, 1)
        self.smoothing = self._per_member("label_smoothing")
        self.clip_norm = self._per_member("clip_norm")
        self.clip_value = self._per_member("clip_value")
        self.seed_keys = _int32([m.seed_key for m in members]).to(self.device)
        self.mixing = torch.tensor([float(m.hp["mixup_alpha"]) > 0 for m in members])
        self.any_mixing = bool(self.mixing.any())
        self.mixing = self.mixing.to(self.device)
        self.any_smoothing = bool((self.smoothing > 0).any())
        self.any_clip_norm = bool((self.clip_norm > 0).any())
        self.any_clip_value = bool((self.clip_value > 0).any())
        self.any_noise = self.any_mixing or bool(self.dropout_widths)

    def _per_member(self, name: str) -> Tensor:
        return torch.tensor([float(m.hp[name]) for m in self.members], device=self.device)

    # --- training ------------------------------------------------------------------------

    def _amp(self) -> Any:
        if self.members[0].hp["precision"] == "bf16":
            return torch.autocast(self.device.type, torch.bfloat16)
        return contextlib.nullcontext()  # cheaper per step than a disabled autocast

    def _loss(
        self,
        params: dict[str, Tensor],
        buffers: dict[str, Tensor],
        x: Tensor,
        y: Tensor,
        masks: list[Tensor],
        lam: Tensor,
        perm: Tensor,
        smoothing: Tensor,
    ) -> Tensor:
        """One member's training loss on one batch (vmapped over members)."""
        if self.any_mixing:
            x = lam * x + (1 - lam) * x[perm]
        with self._amp(), models.dropout_masks(iter(masks)):
            logits = functional_call(
                self.template, (params, buffers), (x,), tie_weights=False
            ).float()
        if not self.any_smoothing:
            ce = functools.partial(F.cross_entropy, logits)
        else:
            logp = logits.log_softmax(-1)
            uniform = -logp.mean(-1)

            def ce(target: Tensor) -> Tensor:
                nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                return ((1 - smoothing) * nll + smoothing * uniform).mean()

        if not self.any_mixing:
            return ce(y)
        return lam * ce(y) + (1 - lam) * ce(y[perm])

    def _scores(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor):
        with self._amp():
            logits = functional_call(
                self.template, (params, buffers), (x,), tie_weights=False
            ).float()
        nll = F.cross_entropy(logits, y)
        return nll, (logits.argmax(-1) == y).float().mean()

    @torch.no_grad()
    def _evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-member (loss, accuracy) on a shared split."""
        self.template.eval()
        try:
            return self._vmap(self._scores, (0, 0, None, None))(
                {n: p.detach() for n, p in self.params.items()}, self.buffers, x, y
            )
        finally:
            self.template.train()

    def _vmap(self, fn: Any, in_dims: tuple) -> Any:
        """`vmap(fn)` over members; a population of one calls `fn` on its only member (the
        same arithmetic without vmap's overhead: what the built-in train function runs)."""
        if len(self) > 1:
            return vmap(fn, in_dims=in_dims)

        def one(*args: Any) -> Any:
            out = fn(
                *(
                    a if d is None else pytree.tree_map(lambda t: t.squeeze(0), a)
                    for a, d in zip(args, in_dims, strict=True)
                )
            )
            return pytree.tree_map(lambda t: t.unsqueeze(0), out)

        return one

    def _backward(self, args: tuple, accumulate: int) -> Tensor:
        """Adds each member's gradient of its loss on one batch (`args`: `_loss`'s after the
        parameters), divided by `accumulate`, to its parameters' `.grad`; returns the losses,
        [k]. Eagerly (autograd) for a shape's first `TRACE_AFTER` steps; then through a graph
        of the aten ops that `vmap(grad_and_value(_loss))` runs, traced once (`make_fx`), which
        replays them without vmap's or autograd's bookkeeping: forward and backward at k = 4
        take 0.98 ms instead of 1.36 on one CPU thread, at k = 1 0.32 instead of 0.44."""
        rows = args[1].shape[1]
        traced = self._traced.get(rows)
        if traced is None and self._eager_steps[rows] < TRACE_AFTER:
            self._eager_steps[rows] += 1
            loss = self._eager_loss(self.params, *args)
            (loss.sum() / accumulate if accumulate > 1 else loss.sum()).backward()
            return loss.detach()
        if traced is None:
            grads = self._vmap(grad_and_value(self._loss), (0,) * 8)
            # Traced on copies of the buffers: tracing runs the step, and batch norm's running
            # statistics are to move once, when the graph replays it.
            buffers = {n: b.clone() for n, b in args[0].items()}
            traced = make_fx(lambda *a: grads(*a))(self._detached, buffers, *args[1:])
            self._traced[rows] = traced
        with torch.no_grad():
            grads, loss = traced(self._detached, *args)
            torch._foreach_add_(
                [p.grad for p in self.params.values()],
                list(grads.values()),
                alpha=1 / accumulate,
            )
        return loss

    def _noise_keys(self, first_batch: Tensor, n_batches: int) -> Tensor:
        """[1 + dropout layers, k, n_batches]: each member's keys for the batches of an
        epoch (`first_batch`: each member's counter of its first batch, [k]), hashed once per
        epoch: the mixup key, then one per Dropout layer."""
        batch = first_batch.view(-1, 1) + torch.arange(
            n_batches, device=self.device, dtype=torch.int32
        )
        keys = _hash32(self.seed_keys.view(-1, 1) ^ _hash32(batch))
        layer = torch.arange(len(self.dropout_widths) + 1, device=self.device, dtype=torch.int32)
        return torch.where(layer.view(-1, 1, 1) > 0, _hash32(keys + layer.view(-1, 1, 1)), keys)

    def _noise(self, keys: Tensor, rows: int) -> tuple[list[Tensor], Tensor]:
        """Dropout masks (one per Dropout layer: 0 where dropped, 1 / (1 - p) where kept) and
        mixup permutations for one batch of `rows` examples, from its `_noise_keys`
        ([1 + layers, k])."""
        k = len(self)
        identity = torch.arange(rows, device=self.device).expand(k, rows)
        if not self.any_noise:
            return [], identity
        masks = [
            # u >= p as integers: u = bits / 2**24 exactly, so bits >= ceil(p * 2**24).
            torch.where(
                _bits(keys[layer + 1], rows, math.prod(width)) >= self.keep_from, self.scale, 0.0
            ).view(k, rows, *width)
            for layer, width in enumerate(self.dropout_widths)
        ]
        if not self.any_mixing:
            return masks, identity
        perm = _uniform(keys[0], 1, rows).squeeze(1).argsort(-1)
        return masks, torch.where(self.mixing.view(-1, 1), perm, identity)

    def train_epoch(self) -> list[tuple[Hashable, dict[str, Any], dict | None, bool]]:
        """One epoch of every member: (key, metrics, checkpoint or None, done) per member.
        Members that are done (max_epochs reached, diverged, or out of patience) leave."""
        assert self.opt is not None
        k, n = len(self), len(self.x_train)
        hp0 = self.members[0].hp
        bs, accumulate = int(hp0["batch_size"]), int(hp0["accumulate"])
        n_batches = batches_per_epoch(n, hp0)
        used = min(n, n_batches * bs)
        t0 = time.perf_counter()
        self.template.train()
        orders = torch.stack([torch.randperm(n, generator=m.shuffle) for m in self.members]).to(
            self.device
        )
        lams = torch.ones(k, n_batches)
        for j, m in enumerate(self.members):
            alpha = float(m.hp["mixup_alpha"])
            if alpha > 0:
                lams[j] = torch.from_numpy(m.mix.beta(alpha, alpha, n_batches))
        lams = lams.to(self.device)
        first_batch = _int32([m.epoch * n_batches for m in self.members]).to(self.device)
        noise = self._noise_keys(first_batch, n_batches) if self.any_noise else None
        # The learning rates of the epoch's steps (a pure function of the step until the
        # epoch's end), copied to the device once.
        n_steps = math.ceil(n_batches / accumulate)
        lr_table = [[m.schedule.lr(m.step + s) for m in self.members] for s in range(n_steps)]
        lr_device = torch.tensor(lr_table, dtype=torch.float32).to(self.device, non_blocking=True)
        steps_done = 0
        params = list(self.params.values())
        losses = []
        for i in range(n_batches):
            idx = orders[:, i * bs : (i + 1) * bs]
            rows = idx.shape[1]
            masks, perm = self._noise(noise[..., i] if noise is not None else None, rows)
            x, y = self.x_train[idx], self.y_train[idx]
            args = (self.buffers, x, y, masks, lams[:, i], perm, self.smoothing)
            losses.append(self._backward(args, accumulate))
            if (i + 1) % accumulate and i + 1 < n_batches:
                continue
            self._clip(params)
            last_lr = lr_table[steps_done]
            self.opt.step(params, last_lr, lr_device[steps_done])
            steps_done += 1
            torch._foreach_zero_([p.grad for p in params])
            for m in self.members:
                m.step += 1
        sizes = torch.tensor(
            [min(bs, n - i * bs) for i in range(n_batches)], device=self.device, dtype=torch.float32
        )
        train_loss = ((torch.stack(losses, 1).float() @ sizes) / used).tolist()  # waits for the GPU
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = (t.tolist() for t in self._evaluate(self.x_val, self.y_val))
        diverged = [
            not (math.isfinite(train_loss[j]) and math.isfinite(val_loss[j])) for j in range(k)
        ]
        improved = [not diverged[j] and val_acc[j] > m.best_acc for j, m in enumerate(self.members)]
        # The test split scores a member's best epoch only, so it is scored when one improved.
        test_acc = self._evaluate(self.x_test, self.y_test)[1].tolist() if any(improved) else []
        epoch_seconds = time.perf_counter() - t0
        snapshot = self._unstack()  # each member's own state, for its checkpoint
        out, leaving = [], []
        for j, m in enumerate(snapshot):
            m.epoch += 1
            if improved[j]:
                # The test split scores the best checkpoint only; it never picks a trial.
                m.best_acc, m.bad_epochs, m.test_acc = val_acc[j], 0, test_acc[j]
            else:
                m.bad_epochs += 1
            metrics = {
                "epoch": m.epoch,
                "train_loss": train_loss[j],
                "val_loss": val_loss[j],
                "val_acc": val_acc[j],
                "lr": last_lr[j],
                "epoch_seconds": epoch_seconds,
                "samples_per_s": used / train_seconds,
                "best_val_acc": m.best_acc,
                "test_acc": m.test_acc,
                "params": m.params,
                "diverged": diverged[j],
            }
            m.schedule.end_epoch(val_loss[j])
            done = diverged[j] or m.finished
            out.append((m.key, metrics, None if diverged[j] else self._checkpoint(m), done))
            if done:
                leaving.append(m.key)
        if leaving:
            self._restack([m for m in snapshot if m.key not in leaving])
        for m in self.members:
            m.state = {}
        return out

    def _clip(self, params: list[Tensor]) -> None:
        """Each member's gradient clipped by its own norm and value, as
        torch.nn.utils.clip_grad_norm_ / clip_grad_value_ do alone."""
        k = len(self)
        if self.any_clip_norm:
            norms = torch.stack([p.grad.reshape(k, -1).norm(dim=1) for p in params]).norm(dim=0)
            coef = (self.clip_norm / (norms + 1e-6)).clamp(max=1.0)
            coef = torch.where(self.clip_norm > 0, coef, torch.ones_like(coef))
            for p in params:
                p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
        if self.any_clip_value:
            v = torch.where(
                self.clip_value > 0, self.clip_value, torch.full_like(self.clip_value, math.inf)
            )
            for p in params:
                bound = v.view(-1, *[1] * (p.dim() - 1))
                p.grad.clamp_(min=-bound, max=bound)

    def _checkpoint(self, m: _Member) -> dict[str, Any]:
        """One member's checkpoint: its own slice of the population, unpadded."""
        return {
            "epoch": m.epoch,
            "model": {n: t.clone() for n, t in m.state["model"].items()},
            "optimizer": {
                "kind": m.hp["optimizer"],
                "steps": m.state["steps"],
                "state": [{k: v.clone() for k, v in s.items()} for s in m.state["optimizer"]],
            },
            "schedule": m.schedule.state_dict(),
            "shuffle_rng": m.shuffle.get_state(),
            "mix_rng": m.mix.bit_generator.state,
            "best_val_acc": m.best_acc,
            "test_acc": m.test_acc,
            "bad_epochs": m.bad_epochs,
            # What `caviar.train.models.build` needs to rebuild the network for inference.
            "arch": {
                "model": self.model,
                "shape": self.data.shape,
                "num_classes": self.data.num_classes,
                "hp": m.hp,
                # The model sees standardized inputs; an exported model applies these itself.
                "input_mean": torch.from_numpy(self.data.mean),
                "input_std": torch.from_numpy(self.data.std),
            },
        }
