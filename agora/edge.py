"""An edge ``learner -> tutor``: who learns from whom, by which protocols, with which weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from agora.errors import GraphError
from agora.losses import LOGIT_DISTANCES
from agora.protocols import PROTOCOLS, Protocol, make_protocols

# a protocol as an edge is given it: a name, an instance, or {name: {setting: value}}
ProtocolLike = str | Mapping[str, Any] | Protocol

# keywords users give an edge that belong to the graph: where each goes
HOMES = dict.fromkeys(
    ("message_dim", "codec", "codec_hidden", "codec_dropout", "distance"),
    "the graph's: Graph(agents, KEY=...)",
)


def _setting_home(key: str) -> str | None:
    """Where a protocol's setting ``key`` goes (``"Talk(rounds=...)"``), if one has it."""
    for cls in dict.fromkeys(PROTOCOLS.values()):
        if key in cls().settings():
            return f"a protocol's setting: {cls.__name__}({key}=...)"
    return None


@dataclass
class Edge:
    """How ``learner`` learns from ``tutor``.

    A protocol's own settings travel with it: ``Talk(rounds=2)`` on the edge.

    Args:
        learner (str): the agent that learns (must be trainable).
        tutor (str): the agent it learns from.
        protocols (tuple or one of them): any registered protocol (:mod:`agora.protocols`) by
            name, ``"talk"`` (TD), ``"logit"`` (LD), ``"feature"`` (FD), ``"fitnet"``,
            ``"relational"``, ``"hybrid"`` (= logit + feature), or as an instance with settings,
            ``Talk(rounds=2)`` (in a config, ``{talk: {rounds: 2}}``); several combine. The
            edge holds instances, each protocol once. (default: ``Talk()``)
        weights (dict): loss weights by name, those of the edge's protocols
            (``message_consistency``, ``state_consistency``, ``logit``, ...). Missing ones
            take the protocol's default, 1.0. (default: ``{}``)
        noise (float): std of Gaussian noise on the tutor's decoded states before it
            interprets, in training only (talk). (default: ``0.0``)
        logit_distance (str, optional): ``"mse"`` or ``"kl"``; by default KL for a learner
            whose task is classification, MSE otherwise.
        temperature (float): softening for ``kl``. (default: ``1.0``)
        active (bool): inactive edges add nothing (stages switch them). (default: ``True``)

    Example:
        >>> Edge("student", "teacher", ("hybrid",), weights={"logit": 0.5})
        Edge(learner='student', tutor='teacher', protocols=(Logit(), Feature()), weights={'logit': 0.5, 'feature': 1.0}, ...)
    """

    learner: str
    tutor: str
    protocols: tuple[ProtocolLike, ...] | ProtocolLike = ("talk",)
    weights: dict[str, float] = field(default_factory=dict)
    noise: float = 0.0
    logit_distance: str | None = None
    temperature: float = 1.0
    active: bool = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Edge:
        fields = [f for f in cls.__dataclass_fields__ if f not in ("learner", "tutor")]
        if unknown := [key for key in kwargs if key not in cls.__dataclass_fields__]:
            learner = args[0] if args else kwargs.get("learner", "?")
            tutor = args[1] if len(args) > 1 else kwargs.get("tutor", "?")
            said = [
                f"{key!r} is {HOMES[key].replace('KEY', key)}"
                if key in HOMES
                else f"{key!r} is {home}"
                if (home := _setting_home(key))
                else repr(key)
                for key in unknown
            ]
            raise GraphError(
                f"Edge {learner}->{tutor}: not an edge's option: {'; '.join(said)}; an edge "
                f"takes {fields}"
            )
        return super().__new__(cls)

    def __post_init__(self) -> None:
        given = self.protocols
        given = (given,) if isinstance(given, (str, Mapping, Protocol)) else tuple(given)
        if not given:
            raise GraphError(f"Edge {self.name}: no protocol given", "protocols")
        protocols: dict[str, Protocol] = {}
        for i, entry in enumerate(given):
            try:
                made = make_protocols(entry)
            except GraphError as error:
                key = f"protocols.{i}" + (
                    f".{next(iter(entry))}" if isinstance(entry, Mapping) else ""
                )
                key += f".{error.key}" if error.key else ""
                raise GraphError(f"Edge {self.name}: {error}", key) from None
            for protocol in made:
                if protocols.setdefault(protocol.name, protocol) != protocol:
                    raise GraphError(
                        f"Edge {self.name}: protocol {protocol.name!r} given twice with other "
                        f"settings ({protocols[protocol.name]!r}, {protocol!r})",
                        f"protocols.{i}",
                    )
        self.protocols = tuple(protocols.values())
        self._check_weights()
        if not _number(self.noise) or not self.noise >= 0:
            raise GraphError(
                f"Edge {self.name}: noise must be a finite number >= 0, got {self.noise!r}", "noise"
            )
        if self.logit_distance is not None and self.logit_distance not in LOGIT_DISTANCES:
            raise GraphError(
                f"Edge {self.name}: logit_distance must be one of {LOGIT_DISTANCES}, "
                f"got {self.logit_distance!r}",
                "logit_distance",
            )
        if not _number(self.temperature) or not self.temperature > 0:
            raise GraphError(
                f"Edge {self.name}: temperature must be a finite number > 0, got "
                f"{self.temperature!r}",
                "temperature",
            )

    def _check_weights(self) -> None:
        if not isinstance(self.weights, dict):
            raise GraphError(
                f"Edge {self.name}: weights must be a mapping of name -> number, got "
                f"{self.weights!r}",
                "weights",
            )
        defaults = {k: v for p in self.protocols for k, v in p.weights.items()}
        unknown = sorted(set(self.weights) - set(defaults))
        if unknown:
            homes = [
                f"; {k!r} is {home}" for k in unknown if (home := _setting_home(f"{k}_weight"))
            ]
            raise GraphError(
                f"Edge {self.name}: weights {unknown} do not belong to protocols "
                f"{list(self.names)}; valid weights: {sorted(defaults)}{''.join(homes)}",
                "weights",
            )
        weights = {**defaults}
        for key, value in self.weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GraphError(
                    f"Edge {self.name}: weight {key!r} must be a number, got {value!r}",
                    f"weights.{key}",
                )
            if not math.isfinite(value) or value < 0:
                raise GraphError(
                    f"Edge {self.name}: weight {key!r} must be finite and >= 0, got {value}",
                    f"weights.{key}",
                )
            weights[key] = float(value)
        self.weights = weights

    @property
    def name(self) -> str:
        """``"learner->tutor"``, as loss terms and errors name the edge."""
        return f"{self.learner}->{self.tutor}"

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the edge's protocols, in order."""
        return tuple(protocol.name for protocol in self.protocols)

    def protocol(self, name: str) -> Protocol | None:
        """The edge's protocol ``name`` (an instance, with its settings), or ``None``."""
        return next((p for p in self.protocols if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The edge as plain data (what a config's ``graph.edges`` entry holds)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            **data,
            "protocols": [p.to_data() for p in self.protocols],
            "weights": {**self.weights},
        }


def _number(value: object) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
