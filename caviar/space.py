"""Parameter domains and the search space.

Every numeric domain has a *scale*: the transform in which it is sampled uniformly.

- ``linear``: the value itself (width, dropout).
- ``log``: ln(value); learning rate and weight decay span decades, so each decade gets equal
  effort.
- ``one_minus_log``: ln(1 - value); momentum-like parameters. beta in [0.9, 0.999] spends as
  much effort on 0.99-0.999 as on 0.9-0.99.

The scale is handled once, in `Numeric` (the base of `Float` and `Int`): `to_unit` /
`from_unit` map a domain onto [0, 1]. Searchers work in that unit cube, and the analysis places
values on it, so sampling, narrowing, conversion and plotting never repeat the scale logic.

Integer domains include both bounds (like W&B's ``int_uniform``, unlike Ray's ``randint``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

_FORWARD = {
    "linear": lambda x: x,
    "log": math.log,
    "one_minus_log": lambda x: math.log(1.0 - x),
}
_INVERSE = {
    "linear": lambda t: t,
    "log": math.exp,
    "one_minus_log": lambda t: 1.0 - math.exp(t),
}


class Domain(ABC):
    """A set of values one hyperparameter can take."""

    @abstractmethod
    def from_unit(self, u: float) -> Any:
        """Map u in [0, 1] to a value; uniform u gives this domain's distribution."""

    @abstractmethod
    def to_unit(self, value: Any) -> float:
        """Inverse of `from_unit` (for numeric domains, up to rounding); not clipped, so a
        value outside the domain maps outside [0, 1]."""

    def sample(self, rng: np.random.Generator) -> Any:
        return self.from_unit(float(rng.random()))

    @abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether `value` is one this domain can give."""

    @abstractmethod
    def to_raw(self) -> Any:
        """The domain as it is written in a spec; `parse_domain(d.to_raw()) == d`."""


@dataclass(frozen=True)
class Numeric(Domain):
    """A number in [low, high] on a scale (``linear``, ``log``, ``one_minus_log``).

    Unit coordinates are linear in the scale's transform between the bounds, each widened by
    `_PAD`: `to_unit` and `value_at` are exact inverses on the whole line; subclasses round
    and clip in `from_unit` and `narrow`."""

    low: float
    high: float
    scale: str = "linear"

    _PAD: ClassVar[float] = 0.0

    def _bounds(self) -> tuple[float, float]:
        f = _FORWARD[self.scale]
        return f(self.low - self._PAD), f(self.high + self._PAD)

    def value_at(self, u: float) -> float:
        """The number at unit coordinate u, neither rounded nor kept within the bounds."""
        a, b = self._bounds()
        return _INVERSE[self.scale](a + u * (b - a))

    def to_unit(self, value: Any) -> float:
        a, b = self._bounds()
        return (_FORWARD[self.scale](float(value)) - a) / (b - a)

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def _narrowed_bounds(self, lo: float, hi: float) -> tuple[float, float]:
        """The values at unit coordinates lo < hi, kept within the domain's bounds unless lo < 0
        or hi > 1 asked to go past them (floating point and the integer half-steps would
        otherwise spill over)."""
        low, high = self.value_at(lo), self.value_at(hi)
        return (max(low, self.low) if lo >= 0 else low), (min(high, self.high) if hi <= 1 else high)


@dataclass(frozen=True)
class Float(Numeric):
    q: float | None = None

    def from_unit(self, u: float) -> float:
        x = self.value_at(u)
        if self.q is not None:
            x = round(x / self.q) * self.q
        return float(min(max(x, self.low), self.high))

    def narrow(self, lo: float, hi: float) -> Float:
        """The part of this domain between unit coordinates lo < hi, on the same scale; lo < 0
        or hi > 1 extends it past its bounds."""
        low, high = self._narrowed_bounds(lo, hi)
        return replace(self, low=low, high=high)

    def to_raw(self) -> Any:
        name = {"linear": "uniform", "log": "loguniform", "one_minus_log": "one_minus_loguniform"}
        if self.q is None:
            return {name[self.scale]: [self.low, self.high]}
        return {"q" + name[self.scale]: [self.low, self.high, self.q]}


@dataclass(frozen=True)
class Int(Numeric):
    """Integers in [low, high], both included."""

    low: int
    high: int

    # Widen by half a step each side so both end points get their full share (a log Int has
    # low >= 1, so low - 0.5 > 0).
    _PAD: ClassVar[float] = 0.5

    def from_unit(self, u: float) -> int:
        return int(min(max(round(self.value_at(u)), self.low), self.high))

    def narrow(self, lo: float, hi: float) -> Int | Fixed:
        """The integers between unit coordinates lo < hi (see `Float.narrow`)."""
        low, high = self._narrowed_bounds(lo, hi)
        low, high = max(round(low), 1) if self.scale == "log" else round(low), round(high)
        return replace(self, low=low, high=high) if low < high else Fixed(low)

    def to_raw(self) -> Any:
        return {"lograndint" if self.scale == "log" else "randint": [self.low, self.high]}


@dataclass(frozen=True)
class Choice(Domain):
    values: tuple[Any, ...]

    def from_unit(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def to_unit(self, value: Any) -> float:
        return (self.values.index(value) + 0.5) / len(self.values)

    def contains(self, value: Any) -> bool:
        return value in self.values

    def to_raw(self) -> Any:
        return {"choice": list(self.values)}


@dataclass(frozen=True)
class Fixed(Domain):
    value: Any

    def from_unit(self, u: float) -> Any:
        return self.value

    def to_unit(self, value: Any) -> float:
        return 0.5

    def contains(self, value: Any) -> bool:
        return value == self.value

    def to_raw(self) -> Any:
        return {"value": self.value}


_FLOAT_FORMS = {
    "uniform": ("linear", False),
    "quniform": ("linear", True),
    "loguniform": ("log", False),
    "qloguniform": ("log", True),
    "one_minus_loguniform": ("one_minus_log", False),
}
_INT_FORMS = {"randint": "linear", "lograndint": "log"}
DOMAIN_KEYWORDS = (*_FLOAT_FORMS, *_INT_FORMS, "choice", "value")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_domain(raw: Any) -> Domain:
    """Build a domain from its spec form; raises ValueError with the fix in the message.

    Forms: ``{uniform: [low, high]}``, ``{loguniform: [low, high]}``, ``{quniform: [low, high,
    q]}``, ``{qloguniform: [low, high, q]}``, ``{one_minus_loguniform: [low, high]}``,
    ``{randint: [low, high]}``, ``{lograndint: [low, high]}``, ``{choice: [a, b, ...]}``,
    ``{value: x}`` or a plain scalar for a fixed value.
    """
    if not isinstance(raw, Mapping):
        if isinstance(raw, (list, tuple)):
            raise ValueError(
                f"expected a domain such as {{choice: {list(raw)}}}, found a bare list {list(raw)}"
            )
        if isinstance(raw, str) and "(" in raw:
            from caviar.importers import ray_code_problem

            if problem := ray_code_problem(raw):
                raise ValueError(problem)
        return Fixed(raw)
    if len(raw) != 1:
        raise ValueError(
            f"expected exactly one of {', '.join(DOMAIN_KEYWORDS)}, found keys {sorted(raw)}"
        )
    ((kind, args),) = raw.items()
    if kind == "value":
        return Fixed(args)
    if kind == "choice":
        if not isinstance(args, (list, tuple)) or not args:
            raise ValueError(f"choice needs a non-empty list of values, found {args!r}")
        if any(isinstance(a, Mapping) for a in args):
            raise ValueError(
                "a choice among mappings is a conditional space: write it directly under "
                "space, every option a mapping with a name (not nested in another option)"
            )
        return Choice(tuple(args))
    if kind not in _FLOAT_FORMS and kind not in _INT_FORMS:
        from caviar.errors import did_you_mean

        raise ValueError(
            f"unknown distribution '{kind}'{did_you_mean(kind, DOMAIN_KEYWORDS)} "
            f"(expected one of {', '.join(DOMAIN_KEYWORDS)})"
        )
    quantized = _FLOAT_FORMS.get(kind, (None, False))[1]
    n = 3 if quantized else 2
    shape = "[low, high, q]" if quantized else "[low, high]"
    if not isinstance(args, (list, tuple)) or len(args) != n or not all(map(_is_number, args)):
        raise ValueError(f"{kind} needs {shape} as numbers, found {args!r}")
    low, high = args[0], args[1]
    if not low < high:
        fix = "swap them" if low > high else f"for a fixed value write the value itself ({low})"
        raise ValueError(f"{kind} needs low < high, found low={low} and high={high}; {fix}")
    if kind in _INT_FORMS:
        if not all(float(a).is_integer() for a in args):
            raise ValueError(f"{kind} needs integer bounds, found {args!r}; use uniform for floats")
        scale = _INT_FORMS[kind]
        if scale == "log" and low <= 0:
            raise ValueError(f"{kind} is on a log scale and needs low > 0, found low={low}")
        return Int(int(low), int(high), scale)
    scale, _ = _FLOAT_FORMS[kind]
    if scale == "log" and low <= 0:
        raise ValueError(f"{kind} is on a log scale and needs low > 0, found low={low}")
    if scale == "one_minus_log" and not (low >= 0 and high < 1):
        raise ValueError(
            f"{kind} samples 1 - value on a log scale and needs 0 <= low < high < 1, "
            f"found [{low}, {high}]"
        )
    q = float(args[2]) if quantized else None
    if q is not None and q <= 0:
        raise ValueError(f"{kind} needs a step q > 0, found q={q}")
    return Float(float(low), float(high), scale, q)


@dataclass(frozen=True)
class Space:
    """Named domains, in spec order. Fixed values are part of the space too.

    A conditional space (a ``choice`` among mappings) is flat here: the choice's labels are a
    `Choice` under the parameter's name, each option's parameters are domains of their own, and
    `conditions` says under which labels each of them is active. Searchers sample every domain;
    `active` drops what the chosen labels leave inactive, so a trial's config holds only its
    branch's parameters (the others are null in Parquet)."""

    domains: tuple[tuple[str, Domain], ...]
    conditions: tuple[tuple[str, str, tuple[Any, ...]], ...] = ()
    """(parameter, parent parameter, the parent's labels under which it is active)."""

    @classmethod
    def from_dict(cls, domains: Mapping[str, Domain]) -> Space:
        return cls(tuple(domains.items()))

    def __iter__(self) -> Iterator[tuple[str, Domain]]:
        return iter(self.domains)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.domains]

    @property
    def searched(self) -> list[str]:
        return [n for n, d in self.domains if not isinstance(d, Fixed)]

    def domain(self, name: str) -> Domain:
        return dict(self.domains)[name]

    def replace(self, **domains: Domain) -> Space:
        """This space with some domains swapped, order and conditions kept."""
        return Space(tuple((n, domains.get(n, d)) for n, d in self.domains), self.conditions)

    def active(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` without the parameters its choices leave inactive."""
        out = dict(config)
        for name, parent, labels in self.conditions:  # parents come before their children
            if parent not in out or out[parent] not in labels:
                out.pop(name, None)
        return out

    def decode(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """A config from a searcher's encoding of it: each numeric parameter's position in
        the unit cube (`Numeric.to_unit`), each choice's index; fixed values as they are, and
        what the choices leave inactive dropped."""
        out = {}
        for name, d in self.domains:
            if isinstance(d, Fixed):
                out[name] = d.value
            elif isinstance(d, Choice):
                out[name] = d.values[int(encoded[name])]
            else:
                out[name] = d.from_unit(float(encoded[name]))
        return self.active(out)

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        return name in self.active({**config, name: None})

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return self.active({name: d.sample(rng) for name, d in self.domains})

    def to_raw(self) -> dict[str, Any]:
        """The space as a spec writes it, conditional choices folded back."""
        children: dict[str, dict[Any, dict[str, Any]]] = {}
        for name, parent, labels in self.conditions:
            for label in labels:
                children.setdefault(parent, {}).setdefault(label, {})[name] = self.domain(
                    name
                ).to_raw()
        nested = {n for n, _, _ in self.conditions}
        out: dict[str, Any] = {}
        for name, d in self.domains:
            if name in children:
                assert isinstance(d, Choice)
                out[name] = {"choice": [{"name": v, **children[name].get(v, {})} for v in d.values]}
            elif name not in nested:
                out[name] = d.to_raw()
        return out


def parse_space(raw: Mapping[str, Any]) -> tuple[Space, list[str]]:
    """A spec's ``space`` section: the space and one problem per bad parameter. A ``choice``
    among mappings, each with a ``name``, is conditional: ``optimizer: {choice: [{name: sgd,
    momentum: ...}, {name: adamw, beta2: ...}]}`` searches optimizer, and momentum only when
    it is sgd."""
    domains: dict[str, Domain] = {}
    conditions: dict[str, tuple[str, list[Any]]] = {}
    problems: list[str] = []
    top = {str(n) for n in raw}
    for name, r in raw.items():
        name = str(name)
        options = r.get("choice") if isinstance(r, Mapping) and len(r) == 1 else None
        if not (
            isinstance(options, list) and options and all(isinstance(o, Mapping) for o in options)
        ):
            try:
                domains[name] = parse_domain(r)
            except ValueError as e:
                problems.append(f"space.{name}: {e}")
            continue
        labels = []
        for i, option in enumerate(options):
            if "name" not in option:
                problems.append(
                    f"space.{name}.choice[{i}]: a conditional option needs a 'name' (the value "
                    f"{name} takes), found keys {sorted(option)}"
                )
                continue
            label = option["name"]
            labels.append(label)
            for sub, sub_raw in option.items():
                if sub == "name":
                    continue
                sub = str(sub)
                where = f"space.{name}.{label}.{sub}"
                try:
                    d = parse_domain(sub_raw)
                except ValueError as e:
                    problems.append(f"{where}: {e}")
                    continue
                if sub in top or (sub in domains and domains[sub] != d):
                    problems.append(
                        f"{where}: '{sub}' is already a parameter"
                        + ("" if sub in top else " of another option, with another domain")
                        + "; give it another name in this option"
                    )
                    continue
                domains.setdefault(sub, d)
                conditions.setdefault(sub, (name, []))[1].append(label)
        if len(set(map(repr, labels))) != len(labels):
            problems.append(f"space.{name}: the options' names must differ, found {labels}")
        domains[name] = Choice(tuple(labels)) if labels else Fixed(None)
    for name in domains:
        if "." in name and (clash := name.rpartition(".")[0]) in domains:
            problems.append(
                f"space.{name}: a dotted name is a key inside '{clash}' (nested in the train "
                f"function's config), but '{clash}' is a parameter too; rename one of them"
            )
    # Parents before children, so `active` can resolve nested choices in one pass.
    order = [n for n in domains if n not in conditions] + [n for n in domains if n in conditions]
    space = Space(
        tuple((n, domains[n]) for n in order),
        tuple((n, p, tuple(ls)) for n, (p, ls) in conditions.items()),
    )
    return space, problems


def nested(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config as a train function of the user's gets it: a dotted name is a key in
    a nested dict (``{"opt.lr": 0.1}`` -> ``{"opt": {"lr": 0.1}}``), as W&B and Ray Tune nest
    parameters. Parquet and the searchers keep the flat names."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        *parents, leaf = str(name).split(".")
        inner = out
        for p in parents:
            inner = inner.setdefault(p, {})
        inner[leaf] = value
    return out
