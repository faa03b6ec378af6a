"""What a protocol is, and the registry that finds one by name.

A protocol is one class: it says what it needs (messages, heads), which loss weights it reads
from an edge, and adds its terms to the step's :class:`~agora.losses.Losses`. Defining a
subclass with a ``name`` registers it, so a new protocol is one file that is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

from agora.errors import GraphError
from agora.losses import Losses
from agora.trust import import_object

if TYPE_CHECKING:
    from agora.agent import Agent, AgentOutput
    from agora.edge import Edge
    from agora.graph import Graph

PROTOCOLS: dict[str, Protocol] = {}
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
    """

    edge: Edge
    learner: Agent
    tutor: Agent
    learner_out: AgentOutput
    tutor_out: AgentOutput
    module: nn.Module | None = None


class Protocol:
    """What one kind of edge adds to the loss.

    A subclass sets :attr:`name` (which registers it), :attr:`weights` (the loss weights it
    reads from an edge, with their defaults) and what it needs, then implements :meth:`loss`
    (one term per edge, named ``<name>[learner->tutor]``) or, for terms that span a learner's
    edges, :meth:`add_losses`.

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
            PROTOCOLS[cls.name] = cls()

    def build(self, edge: Edge, learner: Agent, tutor: Agent, message_dim: int) -> nn.Module | None:
        """A module of the edge's own (FitNet's regressor), made when the graph is built."""
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``; an import path (``"my.module:MyProtocol"``) imports
    the module first, which registers the class.

    Raises:
        GraphError: an unknown name, listing the known ones.

    Example:
        >>> get_protocol("logit")
        Logit('logit')
    """
    if name not in PROTOCOLS and ":" in name:
        cls = import_object(name, "protocol")
        if not (isinstance(cls, type) and issubclass(cls, Protocol) and cls.name):
            raise GraphError(f"{name!r} is not a Protocol subclass with a name")
        PROTOCOLS.setdefault(name, PROTOCOLS[cls.name])
    if name not in PROTOCOLS:
        raise GraphError(f"unknown protocol {name!r}; known: {known_protocols()}")
    return PROTOCOLS[name]


def expand(names: tuple[str, ...]) -> tuple[str, ...]:
    """Protocol names with aliases replaced by what they stand for, each once, in order.

    Example:
        >>> expand(("hybrid", "logit"))
        ('logit', 'feature')
    """
    expanded: list[str] = []
    for name in names:
        for part in ALIASES.get(name, (name,)):
            part = get_protocol(part).name
            if part not in expanded:
                expanded.append(part)
    return tuple(expanded)


def known_protocols() -> list[str]:
    """Every registered protocol name and alias, sorted."""
    return sorted({*(p.name for p in PROTOCOLS.values()), *ALIASES})
