"""An edge ``learner -> tutor``: who learns from whom, by which protocols, with which weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from agora.errors import GraphError
from agora.losses import LOGIT_DISTANCES
from agora.protocols import ALIASES, expand, get_protocol

# weights that belong to the learner, not to an edge: where they go instead
LEARNER_SETTINGS = {"interact": "interact_weight", "rounds": "rounds"}

# keywords users give an edge that belong elsewhere: where each goes
HOMES = {
    **dict.fromkeys(
        ("rounds", "interact_weight", "aggregation"), "the learner's: Agent(LEARNER, ..., KEY=...)"
    ),
    **dict.fromkeys(
        ("message_dim", "codec", "codec_hidden", "codec_dropout", "distance"),
        "the graph's: Graph(agents, KEY=...)",
    ),
}


@dataclass
class Edge:
    """How ``learner`` learns from ``tutor``.

    The learner's own settings (its talk ``rounds``, its ``interact_weight``, how it
    aggregates several tutors) live on the learner, :class:`~agora.agent.Agent`, once.

    Args:
        learner (str): the agent that learns (must be trainable).
        tutor (str): the agent it learns from.
        protocols (tuple[str] or str): any registered protocol (:mod:`agora.protocols`): ``"talk"``
            (TD), ``"logit"`` (LD), ``"feature"`` (FD), ``"fitnet"``, ``"relational"``,
            ``"hybrid"`` (= logit + feature); several combine. (default: talk)
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
        Edge(learner='student', tutor='teacher', protocols=('logit', 'feature'), weights={'logit': 0.5, 'feature': 1.0}, ...)
    """

    learner: str
    tutor: str
    protocols: tuple[str, ...] | str = ("talk",)
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
                f"{key!r} is {HOMES[key].replace('KEY', key).replace('LEARNER', repr(learner))}"
                if key in HOMES
                else repr(key)
                for key in unknown
            ]
            raise GraphError(
                f"Edge {learner}->{tutor}: not an edge's option: {'; '.join(said)}; an edge "
                f"takes {fields}"
            )
        return super().__new__(cls)

    def __post_init__(self) -> None:
        if isinstance(self.protocols, str):
            self.protocols = (self.protocols,)
        if not self.protocols:
            raise GraphError(f"Edge {self.name}: no protocol given", "protocols")
        for i, name in enumerate(self.protocols):
            try:
                if name not in ALIASES:
                    get_protocol(name)
            except GraphError as error:
                raise GraphError(f"Edge {self.name}: {error}", f"protocols.{i}") from None
        self.protocols = expand(tuple(self.protocols))
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
        defaults = {k: v for p in self.protocols for k, v in get_protocol(p).weights.items()}
        for key in self.weights:
            if key in LEARNER_SETTINGS:
                raise GraphError(
                    f"Edge {self.name}: {key!r} is the learner's setting, not an edge's: give it "
                    f"to the agent, Agent({LEARNER_SETTINGS[key]}=...) (in a config, "
                    f"graph.agents.<i>.{LEARNER_SETTINGS[key]})",
                    f"weights.{key}",
                )
        unknown = sorted(set(self.weights) - set(defaults))
        if unknown:
            raise GraphError(
                f"Edge {self.name}: weights {unknown} do not belong to protocols "
                f"{list(self.protocols)}; valid weights: {sorted(defaults)}",
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
    def talks(self) -> bool:
        """True when the edge runs the ``talk`` protocol."""
        return "talk" in self.protocols

    def to_dict(self) -> dict[str, Any]:
        """The edge as plain data (what a config's ``graph.edges`` entry holds)."""
        return {**asdict(self), "protocols": list(self.protocols)}


def _number(value: object) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
