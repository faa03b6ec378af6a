"""What a protocol is, and the registry that finds one by name.

A protocol is one class: it says what it needs (messages, heads), which loss weights it reads
from an edge, and adds its terms to the step's :class:`~agora.losses.Losses`. Defining a
subclass with a ``name`` registers it, so a new protocol is one file that is imported. An
instance may carry settings of its own (``Talk(rounds=2)``), as a PyG layer carries its
``aggr``; an edge holds instances, and a bare name means the protocol with its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from agora.errors import GraphError
from agora.losses import Losses
from agora.trust import import_object

if TYPE_CHECKING:
    from agora.agent import Agent, AgentOutput
    from agora.edge import Edge
    from agora.graph import Graph

PROTOCOLS: dict[str, type[Protocol]] = {}
ALIASES: dict[str, tuple[str, ...]] = {}


@dataclass
class Link:
    """One active edge ``learner -> tutor`` during a step.

    Args:
        edge (Edge): the edge's settings (weights, noise, ...).
        learner (Agent): the agent that learns.
        tutor (Agent): the agent it learns from.
        learner_out (AgentOutput): what the learner said in round 0 about the batch.
        tutor_out (AgentOutput): what the tutor said about the same batch.
        module (nn.Module, optional): the module this protocol built for the edge
            (:meth:`Protocol.build`), e.g. FitNet's regressor.
        learner_module (nn.Module, optional): the module this protocol built for the learner
            (:meth:`Protocol.build_learner`), e.g. talk's rounds and aggregator.
    """

    edge: Edge
    learner: Agent
    tutor: Agent
    learner_out: AgentOutput
    tutor_out: AgentOutput
    module: nn.Module | None = None
    learner_module: nn.Module | None = None


class Protocol:
    """What one kind of edge adds to the loss.

    A subclass sets :attr:`name` (which registers it), :attr:`weights` (the loss weights it
    reads from an edge, with their defaults) and what it needs, then implements :meth:`loss`
    (one term per edge, named ``<name>[learner->tutor]``) or, for terms that span a learner's
    edges, :meth:`add_losses`. A protocol with settings takes them in ``__init__`` (each with
    a default) and returns them from :meth:`settings`.

    Attributes:
        name (str): the protocol's name on an edge (``graph.add_edge(..., "logit")``).
        weights (dict[str, float]): the weights it reads from ``edge.weights``, by name, with
            defaults; the first is the weight of :meth:`loss`'s term.
        speaks (bool): both ends encode a round-0 message ``m = E(s, e)``.
        needs_head (bool): both ends need a head (the protocol compares predictions).
    """

    name: ClassVar[str] = ""
    weights: ClassVar[dict[str, float]] = {}
    speaks: ClassVar[bool] = False
    needs_head: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            PROTOCOLS[cls.name] = cls

    def settings(self) -> dict[str, Any]:
        """The instance's own settings by name (none by default): what tells two instances
        apart, and what a config gives as ``{name: {setting: value}}``."""
        return {}

    def to_data(self) -> str | dict[str, dict[str, Any]]:
        """The protocol as plain data: its name, or ``{name: {setting: value}}`` for the
        settings that differ from the defaults (a module as its import path)."""
        defaults = type(self)().settings()
        changed = {
            key: f"{type(v).__module__}:{type(v).__qualname__}" if isinstance(v, nn.Module) else v
            for key, v in self.settings().items()
            if v != defaults.get(key)
        }
        return {self.name: changed} if changed else self.name

    def describe(self) -> str:
        """A short note on the instance for a graph's repr (``k=2``); empty by default."""
        return ""

    def build(self, edge: Edge, learner: Agent, tutor: Agent, message_dim: int) -> nn.Module | None:
        """A module of the edge's own (FitNet's regressor), made when the graph is built."""
        return None

    def check_learner(self, learner: str, edges: list[Edge]) -> None:
        """Raise :class:`~agora.errors.GraphError` if the learner's edges that run this
        protocol (active or not) cannot run together; nothing to check by default."""

    def build_learner(
        self, learner: Agent, edges: list[Edge], message_dim: int, built: nn.Module | None
    ) -> nn.Module | None:
        """A module of the learner's own for this protocol, over its edges that run it
        (active or not, in edge order), made when the graph is built: talk's rounds and
        aggregator. ``built`` is the one made by the last build, to return when it still fits
        (keeping its trained weights). None by default."""
        return None

    def check(self, edge: Edge, learner: Agent, tutor: Agent) -> None:
        """Raise :class:`~agora.errors.GraphError` naming the edge if it cannot run."""
        if self.needs_head:
            for agent in (learner, tutor):
                if agent.head is None:
                    raise GraphError(
                        f"Edge {edge.name}: protocol {self.name!r} needs a head on {agent.name!r}"
                    )

    def add_losses(self, losses: Losses, links: list[Link], graph: Graph) -> None:
        """Add this protocol's terms for one learner's active edges that run it.

        By default, one term per edge: ``weight * loss(link)``, named ``<name>[edge]``."""
        weight_name = next(iter(self.weights))
        for link in links:
            value = self.loss(link, graph.distance)
            losses.add(
                f"{self.name}[{link.edge.name}]", link.edge.weights[weight_name], value,
                learner=link.learner.name, edge=link.edge.name,
            )  # fmt: skip

    def loss(self, link: Link, distance: str) -> Tensor:
        """The edge's term, unweighted; ``distance`` is the graph's (``"l2"``, ``"cosine"``)."""
        raise NotImplementedError(f"protocol {self.name!r} implements neither loss nor add_losses")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.settings() == other.settings()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        data = self.to_data()
        changed = next(iter(data.values())) if isinstance(data, dict) else {}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def protocol_class(name: str) -> type[Protocol]:
    """The registered protocol class ``name``; an import path (``"my.module:MyProtocol"``)
    imports the module first, which registers the class.

    Raises:
        GraphError: an unknown name, listing the known ones.
    """
    if name not in PROTOCOLS and ":" in name:
        cls = import_object(name, "protocol")
        if not (isinstance(cls, type) and issubclass(cls, Protocol) and cls.name):
            raise GraphError(f"{name!r} is not a Protocol subclass with a name")
        PROTOCOLS.setdefault(name, PROTOCOLS[cls.name])
    if name not in PROTOCOLS:
        raise GraphError(f"unknown protocol {name!r}; known: {known_protocols()}")
    return PROTOCOLS[name]


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` with its default settings (see :func:`protocol_class`).

    Raises:
        GraphError: an unknown name, listing the known ones.

    Example:
        >>> get_protocol("logit"), get_protocol("talk").rounds
        (Logit(), 1)
    """
    return protocol_class(name)()


def make_protocols(entry: Any) -> tuple[Protocol, ...]:
    """The protocols an edge's entry stands for: an instance, a name (an alias stands for
    several), an import path, or ``{name: {setting: value}}`` as a config writes it.

    Raises:
        GraphError: an unknown name, or settings the protocol does not take.

    Example:
        >>> make_protocols("hybrid"), make_protocols({"talk": {"rounds": 2}})
        ((Logit(), Feature()), (Talk(rounds=2),))
    """
    if isinstance(entry, Protocol):
        return (entry,)
    if isinstance(entry, str):
        return tuple(get_protocol(name) for name in ALIASES.get(entry, (entry,)))
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((name, settings),) = entry.items()
        cls = protocol_class(str(name))
        if settings is None:
            return (cls(),)
        if not isinstance(settings, Mapping):
            raise GraphError(
                f"the settings of protocol {name!r} must be a mapping, got {settings!r}"
            )
        try:
            return (cls(**settings),)
        except TypeError:
            known = list(cls().settings())
            raise GraphError(
                f"protocol {name!r} takes settings {known}, got {sorted(settings)}"
            ) from None
    raise GraphError(
        f"a protocol is a name, an instance or {{name: {{setting: value}}}}, got {entry!r}"
    )


def expand(names: tuple[str, ...]) -> tuple[str, ...]:
    """Protocol names with aliases replaced by what they stand for, each once, in order.

    Example:
        >>> expand(("hybrid", "logit"))
        ('logit', 'feature')
    """
    expanded: list[str] = []
    for name in names:
        for part in ALIASES.get(name, (name,)):
            part = protocol_class(part).name
            if part not in expanded:
                expanded.append(part)
    return tuple(expanded)


def known_protocols() -> list[str]:
    """Every registered protocol name and alias, sorted."""
    return sorted({*(p.name for p in PROTOCOLS.values()), *ALIASES})
