"""The agent graph: a ``networkx.DiGraph`` whose edge ``learner -> tutor`` says who learns from
whom, and how; and its data form, :class:`GraphSpec`, which configs and checkpoints hold."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import networkx as nx
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from agora.agent import MOVED, Agent, AgentOutput, check_codec_kind, check_name, check_task, moved
from agora.codec import CODEC_KINDS, TOKEN_KINDS, make_codec
from agora.edge import Edge, ProtocolLike
from agora.errors import GraphError
from agora.losses import DISTANCES
from agora.trust import import_object

__all__ = ["AgentSpec", "Edge", "Graph", "GraphError", "GraphSpec"]


# -- checks shared by the graph and its data form ----------------------------------------------


MAX_WIDTH = 1 << 16  # message_dim and codec_hidden: wider than any model's state


def check_settings(
    message_dim: Any, codec: Any, codec_hidden: Any, codec_dropout: Any, distance: Any
) -> None:
    """The message space's settings; a :class:`GraphError` names the field."""

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_WIDTH

    if not count(message_dim):
        raise GraphError(
            f"must be an integer in [1, {MAX_WIDTH}], got {message_dim!r}", "message_dim", "Graph"
        )
    if isinstance(codec, str) and codec not in CODEC_KINDS:
        if ":" not in codec:
            raise GraphError(
                f"unknown codec kind {codec!r}; choose one of {list(CODEC_KINDS)} or a codec "
                f"factory 'module:function'",
                "codec",
                "Graph",
            )
        if not callable(import_object(codec, "codec")):
            raise GraphError(
                f"{codec!r} is not callable; expected a codec factory", "codec", "Graph"
            )
    if not count(codec_hidden):
        raise GraphError(
            f"must be an integer in [1, {MAX_WIDTH}], got {codec_hidden!r}", "codec_hidden", "Graph"
        )
    if not isinstance(codec_dropout, (int, float)) or not 0 <= codec_dropout < 1:
        raise GraphError(f"must be in [0, 1), got {codec_dropout!r}", "codec_dropout", "Graph")
    if distance not in DISTANCES:
        raise GraphError(f"must be one of {list(DISTANCES)}, got {distance!r}", "distance", "Graph")


def check_edge_ends(edge: Edge, agents: Sequence[str], edges: Iterable[Edge]) -> None:
    """Both ends of a new edge are agents, distinct, and not joined yet."""
    for role in ("learner", "tutor"):
        if getattr(edge, role) not in agents:
            raise GraphError(
                f"Edge {edge.name}: unknown {role} {getattr(edge, role)!r}, not an agent of "
                f"{list(agents)}",
                role,
            )
    if edge.learner == edge.tutor:
        raise GraphError(f"Edge {edge.name}: an agent cannot learn from itself (self-loop)")
    if any((e.learner, e.tutor) == (edge.learner, edge.tutor) for e in edges):
        raise GraphError(
            f"Edge {edge.name} exists already; give one edge several protocols instead"
        )


def check_trains(
    agents: Sequence[AgentSpec], edges: Sequence[Edge], *, codec_learners: bool = False
) -> None:
    """Something trains, and every active edge's learner does. With ``codec_learners`` (the
    state a stage leaves a graph in, which a checkpoint holds), an agent whose codec trains
    counts, though its backbone is frozen.

    Raises:
        GraphError: keyed ``agents`` or ``edges.<i>.learner``.
    """
    frozen = {a.name: a.frozen and (a.codec_frozen or not codec_learners) for a in agents}
    if all(frozen.values()):
        raise GraphError(
            f"every agent of {list(frozen)} is frozen; unfreeze the student(s)", "agents"
        )
    for i, edge in enumerate(edges):
        try:
            check_learner(edge, frozen[edge.learner] and edge.active)
        except GraphError as error:
            raise error.under(f"edges.{i}") from None


def check_learner(edge: Edge, learner_frozen: bool) -> None:
    """A learner must train."""
    if learner_frozen:
        raise GraphError(
            f"Edge {edge.name}: learner {edge.learner!r} is frozen; a learner must be "
            f"trainable (unfreeze it, or reverse the edge; a stage may train its codec alone)",
            "learner",
        )


def protocol_edges(edges: Iterable[Edge], learner: str) -> dict[str, list[Edge]]:
    """The learner's edges by the protocols they run, in the order the protocols first appear
    and the edges were added: what a protocol's module of the learner's own spans
    (:meth:`Protocol.build_learner <agora.protocols.Protocol.build_learner>`)."""
    grouped: dict[str, list[Edge]] = {}
    for edge in edges:
        if edge.learner == learner:
            for name in edge.names:
                grouped.setdefault(name, []).append(edge)
    return grouped


def check_learners(agents: Iterable[str], edges: Sequence[Edge]) -> None:
    """Each learner's edges that run one protocol can run together
    (:meth:`Protocol.check_learner <agora.protocols.Protocol.check_learner>`).

    Raises:
        GraphError: keyed ``edges.<i>.protocols``, ``i`` the learner's first such edge.
    """
    for learner in agents:
        for name, group in protocol_edges(edges, learner).items():
            try:
                group[0].protocol(name).check_learner(learner, group)
            except GraphError as error:
                raise error.under(f"edges.{edges.index(group[0])}.protocols") from None


# -- the data form -----------------------------------------------------------------------------


@dataclass
class AgentSpec:
    """An agent as data: how to build it, ``factory(name=name, **kwargs)``, and its settings.

    A config's ``graph.agents`` entries and a checkpoint's ``graph.json`` hold these.

    Args:
        name (str): unique name in the graph.
        factory (str, optional): ``"module:function"`` returning an
            :class:`~agora.agent.Agent`; ``None`` for an agent built in Python, which
            :meth:`Graph.from_spec` must then be given. (default: ``None``)
        kwargs (dict): keyword arguments of the factory (plain data). (default: ``{}``)
        frozen (bool): freeze the backbone (a teacher). (default: ``False``)
        codec_frozen (bool): freeze the codec too. (default: ``False``)
        task (str, optional): ``"regression"`` or ``"classification"``; ``None`` keeps the
            factory's choice. (default: ``None``)
        task_weight (float): weight of the agent's task loss. (default: ``1.0``)
        pretrained (str, optional): a safetensors file of backbone weights (keys ``lower.*``,
            ``upper.*``, ``head.*``, as in a run's ``agents/<name>/backbone.safetensors``).
            (default: ``None``)
        codec (str, optional): the kind of this agent's codec (``"pooled"``, ``"spatial"``...);
            ``None``: the graph's. (default: ``None``)
    """

    name: str
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    frozen: bool = False
    codec_frozen: bool = False
    task: str | None = None
    task_weight: float = 1.0
    pretrained: str | None = None
    codec: str | None = None

    # keys it held before its talk edges did: where each went (a config's loader says it)
    moved_keys: ClassVar[dict[str, str]] = {key: moved(key) for key in MOVED}

    def __new__(cls, *args: Any, **kwargs: Any) -> AgentSpec:
        if given := [key for key in kwargs if key in cls.moved_keys]:
            name = args[0] if args else kwargs.get("name", "?")
            raise GraphError(f"Agent {name!r}: {cls.moved_keys[given[0]]}", given[0])
        return super().__new__(cls)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_task(self.name, self.task, self.task_weight)
        if self.factory is not None and not callable(import_object(self.factory, "factory")):
            raise GraphError(
                f"{self.factory!r} is not callable; expected an agent factory", "factory"
            )
        if self.codec is not None:
            check_codec_kind(self.name, self.codec)


@dataclass
class GraphSpec:
    """A graph as data: its agents, its edges and its message space (see :class:`Graph`).

    Structural faults are found here, before any model is built: unknown or duplicate
    agents, edges between unknown agents, self-loops, frozen learners; each
    :class:`~agora.errors.GraphError` names the key (``edges.0.tutor``).

    Example:
        >>> spec = GraphSpec([AgentSpec("teacher", frozen=True), AgentSpec("student")],
        ...                  [Edge("student", "teacher")], message_dim=16)
        >>> [e.name for e in spec.edges], spec.to_nx().nodes["teacher"]["frozen"]
        (['student->teacher'], True)
    """

    agents: list[AgentSpec]
    edges: list[Edge] = field(default_factory=list)
    message_dim: int = 128
    codec: str = "mlp"
    codec_hidden: int = 256
    codec_dropout: float = 0.1
    distance: str = "l2"

    def __post_init__(self) -> None:
        check_settings(
            self.message_dim, self.codec, self.codec_hidden, self.codec_dropout, self.distance
        )
        if not self.agents:
            raise GraphError("must list at least one agent", "agents")
        names: list[str] = []
        for i, agent in enumerate(self.agents):
            if agent.name in names:
                raise GraphError(f"duplicate agent {agent.name!r}", f"agents.{i}.name")
            names.append(agent.name)
        for i, edge in enumerate(self.edges):
            try:
                check_edge_ends(edge, names, self.edges[:i])
            except GraphError as error:
                raise error.under(f"edges.{i}") from None
        # a stage may leave a learner's backbone frozen while its codec trains: a checkpoint
        # holds that state (a config is held to the stricter rule, RunConfig)
        check_trains(self.agents, self.edges, codec_learners=True)
        check_learners(names, self.edges)

    def to_nx(self) -> nx.DiGraph:
        """The agents and edges as a ``networkx.DiGraph``, without building any model: nodes
        carry ``frozen``, ``task`` and ``factory``, edges their :class:`Edge` under ``"edge"``."""
        graph = nx.DiGraph()
        for agent in self.agents:
            graph.add_node(agent.name, frozen=agent.frozen, task=agent.task, factory=agent.factory)
        for edge in self.edges:
            graph.add_edge(edge.learner, edge.tutor, edge=edge)
        return graph

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a config's ``graph:`` section and ``graph.json`` hold)."""
        return {**asdict(self), "edges": [edge.to_dict() for edge in self.edges]}


# -- the graph ---------------------------------------------------------------------------------


class Graph(nn.Module):
    r"""Agents on a directed graph; an edge ``learner -> tutor`` reads "learner learns from tutor".

    The structure lives in a ``networkx.DiGraph`` (:attr:`nx`): node ``name`` carries the
    :class:`~agora.agent.Agent` under ``"agent"``, edge ``(learner, tutor)`` its
    :class:`~agora.edge.Edge` under ``"edge"``. The modules (agents with their codecs, and the
    modules protocols build for edges and for learners, such as talk's aggregators) are
    registered on this ``nn.Module``, so ``graph.parameters()`` and ``graph.state_dict()`` hold
    everything that trains, once :meth:`build` has made them.

    Args:
        agents (iterable of Agent): added in order. (default: none)
        message_dim (int): size of the message space shared by every agent. (default: ``128``)
        codec (str or callable): kind of codec built for agents without one: ``"mlp"`` (the
            paper's), ``"linear"``, ``"token"``, ``"token-linear"``, or a callable
            ``(s_shape, e_shape, message_dim) -> Codec``. (default: ``"mlp"``)
        codec_hidden (int): hidden width of MLP codecs. (default: ``256``)
        codec_dropout (float): dropout of MLP codecs. (default: ``0.1``)
        distance (str): how states and messages are compared, ``"l2"`` (the paper's mean
            squared error) or ``"cosine"``. (default: ``"l2"``)

    Example:
        >>> from torch import nn
        >>> from agora import Talk
        >>> def mlp(name, d, **kw):
        ...     return Agent(name, nn.Linear(4, d), nn.Sequential(nn.Linear(d, d), nn.ReLU()),
        ...                  nn.Linear(d, 1), task="regression", **kw)
        >>> graph = Graph([mlp("teacher", 32, frozen=True), mlp("student", 8)], message_dim=16)
        >>> graph.add_edge("student", "teacher", Talk(rounds=2), weights={"state_consistency": 0.5})
        Edge(learner='student', tutor='teacher', protocols=(Talk(rounds=2),), ...)
        >>> graph.build(torch.randn(5, 4))
        Graph(student -> teacher [talk, k=2])
    """

    def __init__(
        self,
        agents: Iterable[Agent] = (),
        *,
        message_dim: int = 128,
        codec: str | Any = "mlp",
        codec_hidden: int = 256,
        codec_dropout: float = 0.1,
        distance: str = "l2",
    ) -> None:
        super().__init__()
        check_settings(message_dim, codec, codec_hidden, codec_dropout, distance)
        if isinstance(codec, str) and codec not in CODEC_KINDS:
            codec = import_object(codec, "codec")
        self.message_dim = message_dim
        self.codec_kind = codec
        self.codec_hidden, self.codec_dropout = codec_hidden, codec_dropout
        self.distance = distance
        self.agents = nn.ModuleDict()
        self.edge_modules = nn.ModuleDict()  # "learner->tutor" -> {protocol: module}
        self.learner_modules = nn.ModuleDict()  # protocol -> {learner: module}
        self.nx = nx.DiGraph()
        self._built = False
        for agent in agents:
            self.add_agent(agent)

    # -- building ----------------------------------------------------------------------------

    def add_agent(self, agent: Agent) -> Agent:
        """Add an agent; how it learns is its edges' (:meth:`add_edge`)."""
        if not isinstance(agent, Agent):
            raise GraphError(f"Expected an Agent, got {type(agent).__name__}")
        if agent.name in self.agents:
            raise GraphError(f"Duplicate agent name {agent.name!r}: agent names must be unique")
        self.agents[agent.name] = agent
        self.nx.add_node(agent.name, agent=agent)
        self._built = False
        return agent

    def add_edge(
        self,
        learner: str,
        tutor: str,
        protocols: ProtocolLike | Sequence[ProtocolLike] = "talk",
        **options: Any,
    ) -> Edge:
        """Add the edge ``learner -> tutor``: ``protocols`` by name or as instances with settings
        (``Talk(rounds=2)``), ``options`` the other fields of :class:`Edge`."""
        edge = Edge(learner, tutor, protocols, **options)
        check_edge_ends(edge, list(self.agents), self.edges)
        return self._insert(edge)

    def _insert(self, edge: Edge) -> Edge:
        self.nx.add_edge(edge.learner, edge.tutor, edge=edge)
        self._built = False
        return edge

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        """``nn.Module.named_parameters``; before :meth:`build` has made every codec, an error:
        an optimizer made from them would miss the codecs and never train them."""
        if not self._built and any(a.codec is None for a in self.agents.values()):
            missing = [name for name, a in self.agents.items() if a.codec is None]
            raise GraphError(
                f"The graph's parameters are not all there yet: the codecs of {missing} are made "
                "by graph.build(sample_batch). Call it first, then make the optimizer from "
                "graph.parameters() (fit() does both)"
            )
        return super().named_parameters(*args, **kwargs)

    @property
    def built(self) -> bool:
        """True once :meth:`build` has made every codec, learner module and edge module."""
        return self._built

    def build(self, sample: Any) -> Graph:
        """Infer state shapes from a sample batch, build missing codecs, the protocols' modules
        of each learner (talk's aggregator) and of each edge, then :meth:`validate`. Call again
        after changing the graph."""
        states = self._sample_states(sample)  # each agent's round 0, once
        for agent in self.agents.values():
            if agent.codec is None:
                agent.codec = self._make_codec(agent, states[agent.name])
                agent.freeze(agent.frozen)  # applies codec_frozen to the new codec
            agent.codec.owner = agent.name
        self._build_learner_modules()
        self._build_edge_modules()
        self.validate()
        self._check_shapes(states)
        self._built = True
        return self

    def _sample_states(self, sample: Any) -> dict[str, AgentOutput]:
        """Every agent's round 0 on ``sample`` (:meth:`Agent.sample_states`)."""
        return {name: agent.sample_states(sample) for name, agent in self.agents.items()}

    def _make_codec(self, agent: Agent, out: AgentOutput) -> nn.Module:
        kind = agent.codec_kind or self.codec_kind
        lead = 2 if isinstance(kind, str) and kind in TOKEN_KINDS else 1
        if out.s.dim() <= lead - 1 or out.e.dim() <= lead - 1:
            raise GraphError(
                f"Agent {agent.name!r}: states s {list(out.s.shape)} / e {list(out.e.shape)} "
                f"lack the {'[B, T]' if lead == 2 else '[B]'} leading dimensions the "
                f"{kind!r} codec needs"
            )
        try:
            return make_codec(
                kind,
                tuple(out.s.shape[lead:]),
                tuple(out.e.shape[lead:]),
                self.message_dim,
                hidden=self.codec_hidden,
                dropout=self.codec_dropout,
            )
        except ValueError as error:
            raise GraphError(f"Agent {agent.name!r}: {error}", "codec") from None
        except RuntimeError as error:  # an allocation too large for this machine
            if "alloc" not in str(error):
                raise
            raise GraphError(
                f"Agent {agent.name!r}: its codec ({kind!r}, states {list(out.s.shape[lead:])} / "
                f"{list(out.e.shape[lead:])}, message_dim {self.message_dim}, codec_hidden "
                f"{self.codec_hidden}) does not fit in memory: {str(error).splitlines()[0]}",
                "codec",
            ) from None

    def _build_learner_modules(self) -> None:
        modules = nn.ModuleDict()
        for learner, agent in self.agents.items():
            for name, edges in protocol_edges(self.edges, learner).items():
                built = self.learner_module(name, learner)
                module = (
                    edges[0].protocol(name).build_learner(agent, edges, self.message_dim, built)
                )
                if module is not None:
                    if name not in modules:
                        modules[name] = nn.ModuleDict()
                    modules[name][learner] = module
        self.learner_modules = modules

    def _build_edge_modules(self) -> None:
        for edge in self.edges:
            for protocol in edge.protocols:
                if self.edge_module(edge, protocol.name) is not None:
                    continue
                module = protocol.build(
                    edge, self.agents[edge.learner], self.agents[edge.tutor], self.message_dim
                )
                if module is not None:
                    if edge.name not in self.edge_modules:
                        self.edge_modules[edge.name] = nn.ModuleDict()
                    self.edge_modules[edge.name][protocol.name] = module

    def edge_module(self, edge: Edge, protocol: str) -> nn.Module | None:
        """The module an edge's protocol built (FitNet's regressor), or ``None``."""
        if edge.name in self.edge_modules and protocol in self.edge_modules[edge.name]:
            return self.edge_modules[edge.name][protocol]
        return None

    def learner_module(self, protocol: str, learner: str) -> nn.Module | None:
        """The module a protocol built for a learner (talk's rounds and aggregator), or
        ``None``."""
        if protocol in self.learner_modules and learner in self.learner_modules[protocol]:
            return self.learner_modules[protocol][learner]
        return None

    # -- views -------------------------------------------------------------------------------

    @property
    def edges(self) -> list[Edge]:
        """All edges, in insertion order."""
        return [data["edge"] for _, _, data in self.nx.edges(data=True)]

    @property
    def active_edges(self) -> list[Edge]:
        """The edges that add to the loss now (stages switch the others off)."""
        return [edge for edge in self.edges if edge.active]

    def edge(self, learner: str, tutor: str) -> Edge:
        """The :class:`Edge` ``learner -> tutor``; a clear error when there is none."""
        if not self.nx.has_edge(learner, tutor):
            raise GraphError(
                f"No edge {learner}->{tutor}; edges are {[e.name for e in self.edges]}"
            )
        return self.nx.edges[learner, tutor]["edge"]

    def backbone_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each trainable agent's trainable backbone parameters (``lower``, ``upper``,
        ``head``; not its codec), by name: what a loss term's pull on an agent is measured on."""
        return {
            name: [p for p in agent.backbone_parameters() if p.requires_grad]
            for name, agent in self.agents.items()
            if agent.trainable
        }

    def learners(self) -> list[str]:
        """Names of the agents that learn along an active edge, in edge order."""
        return list(dict.fromkeys(e.learner for e in self.active_edges))

    # -- validation --------------------------------------------------------------------------

    def validate(self, sample: Any | None = None, *, codec_learners: bool = False) -> None:
        """Raise :class:`GraphError` naming the agent or edge for anything that cannot train.

        With ``codec_learners`` (a stage that trains codecs alone), a learner may be frozen as
        long as its codec trains."""
        if not self.agents:
            raise GraphError("The graph has no agents")
        trains = [
            a
            for a in self.agents.values()
            if a.trainable or (codec_learners and not a.codec_frozen)
        ]
        if not trains:
            raise GraphError(
                f"No trainable agent: every agent of {list(self.agents)} is frozen; unfreeze the "
                f"student(s)"
            )
        for agent in self.agents.values():
            if agent.task is not None and agent.head is None:
                raise GraphError(f"Agent {agent.name!r} has task={agent.task!r} but no head")
            if agent.codec is not None and agent.codec.message_dim != self.message_dim:
                raise GraphError(
                    f"Agent {agent.name!r}: codec message dimension {agent.codec.message_dim} "
                    f"does not match the graph's message_dim {self.message_dim}"
                )
        for edge in self.active_edges:
            learner, tutor = self.agents[edge.learner], self.agents[edge.tutor]
            check_learner(
                edge, learner.frozen and not (codec_learners and not learner.codec_frozen)
            )
            for protocol in edge.protocols:
                protocol.check(edge, learner, tutor)
            for agent in (learner, tutor):
                if agent.codec is None:
                    raise GraphError(
                        f"Edge {edge.name}: agent {agent.name!r} has no codec; call graph.build(sample)"
                    )
        check_learners(self.agents, self.edges)
        for learner in self.learners():
            self._check_message_space(learner)
        if sample is not None:
            self._check_shapes(self._sample_states(sample))

    def _check_message_space(self, learner: str) -> None:
        """A learner and its tutors must speak one message space: their replies are stacked."""
        names = [learner, *(e.tutor for e in self.active_edges if e.learner == learner)]
        spaces = {}
        for name in names:
            codec = self.agents[name].codec
            spaces[name] = f"[B, {'T, ' if codec.tokens else ''}{codec.message_dim}]"
        if len(set(spaces.values())) > 1:
            described = ", ".join(f"{name} {space}" for name, space in spaces.items())
            raise GraphError(
                f"Agent {learner!r} and its tutors speak different message spaces ({described}); "
                f"per-token and per-example codecs cannot talk, and every codec must encode to "
                f"the graph's message_dim {self.message_dim}"
            )

    def _check_shapes(self, states: Mapping[str, AgentOutput]) -> None:
        """Each agent's codec reads its states (``states``: its round 0 on a sample), and its
        upper layers read what the codec decodes."""
        for agent in self.agents.values():
            out = states[agent.name]
            codec = agent.codec
            lead, (s_shape, e_shape) = codec.state_lead, codec.state_shapes
            if tuple(out.s.shape[lead:]) != s_shape or tuple(out.e.shape[lead:]) != e_shape:
                raise GraphError(
                    f"Agent {agent.name!r}: codec expects s {list(s_shape)} and e "
                    f"{list(e_shape)} per {'token' if lead == 2 else 'example'}, but the "
                    f"agent produces s {list(out.s.shape)} and e {list(out.e.shape)}"
                )
            with torch.no_grad():
                s_decoded, _ = codec.decode(codec.encode(out.s, out.e))
                try:
                    agent.interpret(s_decoded, out.mask)
                except Exception as error:
                    raise GraphError(
                        f"Agent {agent.name!r}: decoder returns s' of shape "
                        f"{list(s_decoded.shape)} but upper rejects it: {error}"
                    ) from error

    # -- the data form -----------------------------------------------------------------------

    def spec(self) -> GraphSpec:
        """The graph as data: every agent's settings and factory, the edges, the space."""
        agents = [
            AgentSpec(
                name=a.name,
                factory=(a.spec or {}).get("factory"),
                kwargs=dict((a.spec or {}).get("kwargs", {})),
                frozen=a.frozen,
                codec_frozen=a.codec_frozen,
                task=a.task,
                task_weight=a.task_weight,
                codec=a.codec_kind,
            )
            for a in self.agents.values()
        ]
        codec = (
            self.codec_kind if isinstance(self.codec_kind, str) else _import_path(self.codec_kind)
        )
        return GraphSpec(
            agents, [Edge(**e.to_dict()) for e in self.edges], self.message_dim, codec,
            self.codec_hidden, self.codec_dropout, self.distance,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The graph as plain data: :meth:`spec`'s (what :meth:`from_dict` reads back)."""
        return self.spec().to_dict()

    @classmethod
    def from_spec(cls, spec: GraphSpec, agents: Mapping[str, Agent] | None = None) -> Graph:
        """Build the graph a :class:`GraphSpec` describes, unbuilt (no codecs yet): the one
        path from data to a graph (a config's :func:`~agora.config.build_graph` takes it too).

        Agents are taken from ``agents`` by name, or made by their ``factory``; either way
        their ``pretrained`` backbone is loaded and the spec's settings (frozen, task, ...) are
        applied, once. The spec's edges were checked when it was made: each is added
        as a copy, not checked again.

        Raises:
            GraphError: keyed by the spec's field (``agents.1.kwargs``, ``agents.0.pretrained``)
                for a factory that fails, a pretrained file that does not fit, or an agent given
                that the spec does not hold.
        """
        agents = dict(agents or {})
        graph = cls(
            message_dim=spec.message_dim, codec=spec.codec, codec_hidden=spec.codec_hidden,
            codec_dropout=spec.codec_dropout, distance=spec.distance,
        )  # fmt: skip
        for i, entry in enumerate(spec.agents):
            try:
                agent = agents.pop(entry.name, None)
                if agent is None:
                    agent = agent_from_spec(entry)
                if entry.pretrained is not None:
                    load_backbone(agent, entry.pretrained)
                apply_spec(agent, entry)
            except GraphError as error:
                raise error.under(f"agents.{i}") from None
            graph.add_agent(agent)
        if agents:
            raise GraphError(f"Agents {sorted(agents)} are not in the graph's data", "agents")
        for edge in spec.edges:
            graph._insert(copy.deepcopy(edge))
        return graph

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], agents: Mapping[str, Agent] | None = None) -> Graph:
        """Rebuild a graph from :meth:`to_dict`'s data (see :meth:`from_spec`). An agent given
        in ``agents`` is not made, so its stored factory is not imported."""
        data, given = dict(data), set(agents or {})
        spec = GraphSpec(
            agents=[
                AgentSpec(**{**entry, "factory": None} if entry.get("name") in given else entry)
                for entry in data.pop("agents")
            ],
            edges=[Edge(**{**e, "protocols": tuple(e["protocols"])}) for e in data.pop("edges")],
            **data,
        )
        return cls.from_spec(spec, agents)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        edges = ", ".join(
            f"{e.learner} -> {e.tutor} [{'+'.join(e.names)}"
            + "".join(f", {note}" for p in e.protocols if (note := p.describe()))
            + ("" if e.active else ", inactive")
            + "]"
            for e in self.edges
        )
        return f"Graph({edges or ', '.join(self.agents)})"


def _import_path(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def agent_from_spec(spec: AgentSpec) -> Agent:
    """Make an agent with ``spec.factory(name=spec.name, **spec.kwargs)``; the agent keeps
    ``agent.spec = {"factory": ..., "kwargs": ...}`` so that a checkpoint can rebuild it."""
    if spec.factory is None:
        raise GraphError(
            f"Agent {spec.name!r}: no agent given and no factory to make it; pass "
            f"agents={{{spec.name!r}: ...}}",
            "factory",
        )
    factory = import_object(spec.factory, "factory")
    try:
        agent = factory(name=spec.name, **spec.kwargs)
    except GraphError:
        raise
    except (TypeError, ValueError, OSError) as error:  # a keyword, value or file it rejects
        raise GraphError(f"{spec.factory}: {error}", "kwargs") from None
    if not isinstance(agent, Agent):
        raise GraphError(
            f"Agent {spec.name!r}: factory {spec.factory!r} returned {type(agent).__name__}",
            "factory",
        )
    agent.name = spec.name
    agent.spec = {"factory": spec.factory, "kwargs": dict(spec.kwargs)}
    return agent


def load_backbone(agent: Agent, path: str | Path, *, key: str = "pretrained") -> None:
    """Load backbone weights (``lower.*``, ``upper.*``, ``head.*``) from a safetensors file
    (a run's ``agents/<name>/backbone.safetensors``).

    Raises:
        GraphError: naming ``key``, the agent and the file, for a missing file or tensors that
            do not fit.
    """
    parts = nn.ModuleDict(
        {role: m for role in ("lower", "upper", "head") if (m := getattr(agent, role)) is not None}
    )
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise GraphError(
            f"Agent {agent.name!r}: cannot read safetensors file {str(path)!r}: {error}", key
        ) from None
    own = parts.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    shapes = [k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape]
    if missing or unexpected or shapes:
        raise GraphError(
            f"{str(path)!r} does not fit agent {agent.name!r}: missing tensors {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {sorted(shapes)[:5]}",
            key,
        )
    parts.load_state_dict(tensors)


def apply_spec(agent: Agent, spec: AgentSpec) -> None:
    """Give ``agent`` the settings of ``spec`` (flags, task)."""
    if spec.task is not None:
        agent.task = spec.task
    agent.task_weight = float(spec.task_weight)
    agent.freeze(spec.frozen, codec=spec.codec_frozen)
    if spec.codec is not None:
        check_codec_kind(spec.name, spec.codec)
        agent.codec_kind = spec.codec
