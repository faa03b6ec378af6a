"""The agent graph: a ``networkx.DiGraph`` whose edge ``learner -> tutor`` says who learns from
whom, and how."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
from torch import nn

from agora.agent import Agent
from agora.aggregation import AGGREGATIONS, make_aggregation
from agora.codec import CODEC_KINDS, make_codec
from agora.protocols import ALIASES, DISTANCES, LOGIT_DISTANCES, PROTOCOLS


class GraphError(ValueError):
    """A graph that cannot train: the message names the agent or edge at fault."""


@dataclass
class Edge:
    """How ``learner`` learns from ``tutor``.

    Args:
        learner (str): the agent that learns (must be trainable).
        tutor (str): the agent it learns from.
        protocols (tuple[str]): any of ``"talk"`` (TD), ``"logit"`` (LD), ``"feature"`` (FD),
            ``"fitnet"``, ``"hybrid"`` (= logit + feature); several combine. (default: talk)
        weights (dict): loss weights by name: ``interact``, ``message_consistency``,
            ``state_consistency`` (talk), ``logit``, ``feature``, ``fitnet``. Missing ones are
            1.0. (default: ``{}``)
        rounds (int): ``k``, the talk rounds; 0 keeps only the consistency losses (the paper's
            "no interaction"). (default: ``1``)
        noise (float): std of Gaussian noise on the tutor's decoded states before it
            interprets, in training only. (default: ``0.0``)
        distance (str): ``"l2"`` or ``"cosine"`` for states and messages. (default: ``"l2"``)
        logit_distance (str, optional): ``"mse"`` or ``"kl"``; by default KL for a learner
            whose task is classification, MSE otherwise.
        temperature (float): softening for ``kl``. (default: ``1.0``)
        active (bool): inactive edges add nothing (stages switch them). (default: ``True``)
    """

    learner: str
    tutor: str
    protocols: tuple[str, ...] = ("talk",)
    weights: dict[str, float] = field(default_factory=dict)
    rounds: int = 1
    noise: float = 0.0
    distance: str = "l2"
    logit_distance: str | None = None
    temperature: float = 1.0
    active: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.protocols, str):
            self.protocols = (self.protocols,)
        expanded: list[str] = []
        for protocol in self.protocols:
            for name in ALIASES.get(protocol, (protocol,)):
                if name not in PROTOCOLS:
                    known = sorted([*PROTOCOLS, *ALIASES])
                    raise GraphError(
                        f"Edge {self.name}: unknown protocol {protocol!r}; known: {known}"
                    )
                if name not in expanded:
                    expanded.append(name)
        if not expanded:
            raise GraphError(f"Edge {self.name}: no protocol given")
        self.protocols = tuple(expanded)
        defaults = {k: v for p in self.protocols for k, v in PROTOCOLS[p].weights.items()}
        unknown = set(self.weights) - set(defaults)
        if unknown:
            raise GraphError(
                f"Edge {self.name}: weights {sorted(unknown)} do not belong to protocols "
                f"{list(self.protocols)}; valid weights: {sorted(defaults)}"
            )
        self.weights = {**defaults, **{k: float(v) for k, v in self.weights.items()}}
        for key, value in self.weights.items():
            if not math.isfinite(value) or value < 0:
                raise GraphError(
                    f"Edge {self.name}: weight {key!r} must be finite and >= 0, got {value}"
                )
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise GraphError(
                f"Edge {self.name}: rounds must be an integer >= 0, got {self.rounds!r}"
            )
        if self.noise < 0:
            raise GraphError(f"Edge {self.name}: noise must be >= 0, got {self.noise}")
        if self.distance not in DISTANCES:
            raise GraphError(
                f"Edge {self.name}: distance must be one of {DISTANCES}, got {self.distance!r}"
            )
        if self.logit_distance is not None and self.logit_distance not in LOGIT_DISTANCES:
            raise GraphError(
                f"Edge {self.name}: logit_distance must be one of {LOGIT_DISTANCES}, "
                f"got {self.logit_distance!r}"
            )
        if self.temperature <= 0:
            raise GraphError(f"Edge {self.name}: temperature must be > 0, got {self.temperature}")

    @property
    def name(self) -> str:
        """``"learner->tutor"``, as loss terms and errors name the edge."""
        return f"{self.learner}->{self.tutor}"

    @property
    def talks(self) -> bool:
        """True when the edge runs the ``talk`` protocol."""
        return "talk" in self.protocols

    def to_dict(self) -> dict[str, Any]:
        """The edge as plain data (what :meth:`Graph.from_dict` reads back)."""
        return {**asdict(self), "protocols": list(self.protocols)}


class Graph(nn.Module):
    r"""Agents on a directed graph; an edge ``learner -> tutor`` reads "learner learns from tutor".

    The structure lives in a ``networkx.DiGraph`` (:attr:`nx`): node ``name`` carries the
    :class:`~agora.agent.Agent` under ``"agent"``, edge ``(learner, tutor)`` its
    :class:`Edge` under ``"edge"``. The modules (agents, aggregators, per-edge adapters) are
    registered on this ``nn.Module``, so ``graph.parameters()`` and ``graph.state_dict()`` hold
    everything that trains.

    Args:
        agents (iterable of Agent): added in order. (default: none)
        message_dim (int): size of the message space shared by every agent. (default: ``128``)
        codec (str or callable): kind of codec built for agents without one: ``"mlp"`` (the
            paper's), ``"linear"``, ``"token"``, ``"token-linear"``, or a callable
            ``(s_shape, e_shape, message_dim) -> Codec``. (default: ``"mlp"``)
        codec_hidden (int): hidden width of MLP codecs. (default: ``256``)
        codec_dropout (float): dropout of MLP codecs. (default: ``0.1``)

    Example:
        >>> from torch import nn
        >>> def mlp(name, d, **kw):
        ...     return Agent(name, nn.Linear(4, d), nn.Sequential(nn.Linear(d, d), nn.ReLU()),
        ...                  nn.Linear(d, 1), task="regression", **kw)
        >>> graph = Graph([mlp("teacher", 32, frozen=True), mlp("student", 8)], message_dim=16)
        >>> graph.add_edge("student", "teacher", "talk", rounds=2, weights={"interact": 0.1})
        Edge(learner='student', tutor='teacher', ...)
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
    ) -> None:
        super().__init__()
        if not isinstance(message_dim, int) or message_dim <= 0:
            raise GraphError(f"message_dim must be a positive integer, got {message_dim!r}")
        if isinstance(codec, str) and codec not in CODEC_KINDS:
            raise GraphError(f"Unknown codec kind {codec!r}; choose one of {CODEC_KINDS}")
        self.message_dim = message_dim
        self.codec_kind = codec
        self.codec_hidden, self.codec_dropout = codec_hidden, codec_dropout
        self.agents = nn.ModuleDict()
        self.aggregators = nn.ModuleDict()
        self.adapters = nn.ModuleDict()
        self.nx = nx.DiGraph()
        self._aggregation: dict[str, str | nn.Module] = {}
        self.built = False
        for agent in agents:
            self.add_agent(agent)

    # -- building ----------------------------------------------------------------------------

    def add_agent(self, agent: Agent, *, aggregation: str | nn.Module = "mean") -> Agent:
        """Add an agent; ``aggregation`` combines its tutors' replies when it learns from several."""
        if not isinstance(agent, Agent):
            raise GraphError(f"Expected an Agent, got {type(agent).__name__}")
        if agent.name in self.agents:
            raise GraphError(f"Duplicate agent name {agent.name!r}: agent names must be unique")
        if isinstance(aggregation, str) and aggregation not in AGGREGATIONS:
            raise GraphError(
                f"Agent {agent.name!r}: unknown aggregation {aggregation!r}; choose one of "
                f"{AGGREGATIONS} or pass a module"
            )
        self.agents[agent.name] = agent
        self._aggregation[agent.name] = aggregation
        self.nx.add_node(agent.name, agent=agent)
        self.built = False
        return agent

    def add_edge(
        self, learner: str, tutor: str, protocols: str | Sequence[str] = "talk", **options: Any
    ) -> Edge:
        """Add the edge ``learner -> tutor``; ``options`` are the fields of :class:`Edge`."""
        for role, name in (("learner", learner), ("tutor", tutor)):
            if name not in self.agents:
                raise GraphError(
                    f"Edge {learner}->{tutor}: unknown {role} {name!r}; agents are {list(self.agents)}"
                )
        if learner == tutor:
            raise GraphError(
                f"Edge {learner}->{tutor}: an agent cannot learn from itself (self-loop)"
            )
        if self.nx.has_edge(learner, tutor):
            raise GraphError(
                f"Edge {learner}->{tutor} exists already; give one edge several protocols instead"
            )
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        edge = Edge(learner, tutor, protocols, **options)
        self.nx.add_edge(learner, tutor, edge=edge)
        self.built = False
        return edge

    def build(self, sample: Any) -> Graph:
        """Infer state shapes from a sample batch, build missing codecs, aggregators and
        adapters, then :meth:`validate`. Call again after changing the graph."""
        for agent in self.agents.values():
            if agent.codec is None:
                out = agent.sample_states(sample)
                lead = 2 if self._token_codec else 1
                if out.s.dim() <= lead - 1 or out.e.dim() <= lead - 1:
                    raise GraphError(
                        f"Agent {agent.name!r}: states s {list(out.s.shape)} / e {list(out.e.shape)} "
                        f"lack the {'[B, T]' if lead == 2 else '[B]'} leading dimensions the "
                        f"{self.codec_kind!r} codec needs"
                    )
                agent.codec = make_codec(
                    self.codec_kind,
                    tuple(out.s.shape[lead:]),
                    tuple(out.e.shape[lead:]),
                    self.message_dim,
                    hidden=self.codec_hidden,
                    dropout=self.codec_dropout,
                )
                agent.freeze(agent.frozen)  # applies codec_frozen to the new codec
            agent.codec.owner = agent.name
        self._build_aggregators()
        self._build_adapters()
        self.validate(sample)
        self.built = True
        return self

    @property
    def _token_codec(self) -> bool:
        return isinstance(self.codec_kind, str) and self.codec_kind.startswith("token")

    def _build_aggregators(self) -> None:
        # sized by every talk edge, active or not, so that a stage switching an edge off
        # keeps the learned weights of the others (see Aggregation's ``tutors``)
        for name in self.agents:
            tutors = self.talk_edges(name)
            have = self.aggregators[name] if name in self.aggregators else None
            if tutors and (have is None or getattr(have, "num_tutors", len(tutors)) != len(tutors)):
                module = make_aggregation(self._aggregation[name], len(tutors), self.message_dim)
                module.num_tutors = len(tutors)
                self.aggregators[name] = module

    def _build_adapters(self) -> None:
        for edge in self.edges:
            for protocol in edge.protocols:
                key = f"{edge.learner}__{edge.tutor}__{protocol}"
                if key in self.adapters:
                    continue
                adapter = PROTOCOLS[protocol].build(
                    edge, self.agents[edge.learner], self.agents[edge.tutor], self.message_dim
                )
                if adapter is not None:
                    self.adapters[key] = adapter

    def adapter(self, edge: Edge, protocol: str) -> nn.Module | None:
        """The module an edge's protocol owns (FitNet's regressor), or ``None``."""
        key = f"{edge.learner}__{edge.tutor}__{protocol}"
        return self.adapters[key] if key in self.adapters else None

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

    def tutors_of(self, learner: str) -> list[Edge]:
        """The active talk edges out of ``learner``, in the order its tutors' replies stack."""
        return [e for e in self.active_edges if e.learner == learner and e.talks]

    def talk_edges(self, learner: str) -> list[Edge]:
        """Every talk edge out of ``learner``, active or not: the tutors its aggregator weighs."""
        return [e for e in self.edges if e.learner == learner and e.talks]

    def learners(self) -> list[str]:
        """Names of the agents that learn along an active edge, in edge order."""
        return list(dict.fromkeys(e.learner for e in self.active_edges))

    # -- validation --------------------------------------------------------------------------

    def validate(self, sample: Any | None = None) -> None:
        """Raise :class:`GraphError` naming the agent or edge for anything that cannot train."""
        if not self.agents:
            raise GraphError("The graph has no agents")
        if not any(a.trainable for a in self.agents.values()):
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
            if learner.frozen:
                raise GraphError(
                    f"Edge {edge.name}: learner {learner.name!r} is frozen; a learner must be "
                    f"trainable (unfreeze it, or reverse the edge)"
                )
            if "logit" in edge.protocols:
                for agent in (learner, tutor):
                    if agent.head is None:
                        raise GraphError(
                            f"Edge {edge.name}: protocol 'logit' needs a head on {agent.name!r}"
                        )
            for agent in (learner, tutor):
                if agent.codec is None:
                    raise GraphError(
                        f"Edge {edge.name}: agent {agent.name!r} has no codec; call graph.build(sample)"
                    )
        for learner in self.learners():
            self._check_message_space(learner)
        for name, aggregation in self._aggregation.items():
            talk = self.talk_edges(name)
            if aggregation in ("weights", "router") and len(talk) < 2:
                raise GraphError(
                    f"Agent {name!r}: aggregation {aggregation!r} weighs the replies of several "
                    f"tutors, but {name!r} talks to {len(talk)} "
                    f"({[e.tutor for e in talk]}); use 'mean' or add talk edges to more tutors"
                )
        for learner in self.learners():
            talk = self.tutors_of(learner)
            rounds = {e.rounds for e in talk}
            interact = {e.weights["interact"] for e in talk}
            if len(rounds) > 1 or len(interact) > 1:
                raise GraphError(
                    f"Agent {learner!r} talks to several tutors with different rounds or interact "
                    f"weights ({[(e.name, e.rounds, e.weights['interact']) for e in talk]}); "
                    f"their replies are aggregated each round, so these must agree"
                )
        if sample is not None:
            self._check_shapes(sample)

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

    def _check_shapes(self, sample: Any) -> None:
        for agent in self.agents.values():
            out = agent.sample_states(sample)
            codec = agent.codec
            lead = 2 if codec.tokens else 1
            if (
                tuple(out.s.shape[lead:]) != codec.s_shape
                or tuple(out.e.shape[lead:]) != codec.e_shape
            ):
                raise GraphError(
                    f"Agent {agent.name!r}: codec expects s {list(codec.s_shape)} and e "
                    f"{list(codec.e_shape)} per {'token' if codec.tokens else 'example'}, but the "
                    f"agent produces s {list(out.s.shape)} and e {list(out.e.shape)}"
                )
            s_decoded, _ = codec.decode(codec.encode(out.s, out.e))
            try:
                agent.interpret(s_decoded, out.mask)
            except Exception as error:
                raise GraphError(
                    f"Agent {agent.name!r}: decoder returns s' of shape {list(s_decoded.shape)} "
                    f"but upper rejects it: {error}"
                ) from error

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The graph as plain data (agents' flags and specs, edges, codec settings)."""
        return {
            "message_dim": self.message_dim,
            "codec": self.codec_kind
            if isinstance(self.codec_kind, str)
            else _import_path(self.codec_kind),
            "codec_hidden": self.codec_hidden,
            "codec_dropout": self.codec_dropout,
            "agents": [
                {
                    "name": a.name,
                    "frozen": a.frozen,
                    "codec_frozen": a.codec_frozen,
                    "task": a.task,
                    "task_weight": a.task_weight,
                    "aggregation": _aggregation_name(self._aggregation[a.name]),
                    "spec": a.spec,
                }
                for a in self.agents.values()
            ],
            "edges": [e.to_dict() for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], agents: Mapping[str, Agent] | None = None) -> Graph:
        """Rebuild a graph from :meth:`to_dict`'s data. Agents are taken from ``agents`` by name,
        or built from their ``spec`` (``{"factory": "module:function", "kwargs": {...}}``)."""
        agents = dict(agents or {})
        codec = data.get("codec", "mlp")
        if isinstance(codec, str) and codec not in CODEC_KINDS:
            codec = import_object(codec)
        graph = cls(
            message_dim=data["message_dim"],
            codec=codec,
            codec_hidden=data.get("codec_hidden", 256),
            codec_dropout=data.get("codec_dropout", 0.1),
        )
        for entry in data["agents"]:
            name = entry["name"]
            agent = agents.pop(name, None)
            if agent is None:
                agent = agent_from_spec(name, entry.get("spec"))
            agent.task = entry.get("task", agent.task)
            agent.task_weight = float(entry.get("task_weight", agent.task_weight))
            agent.freeze(
                entry.get("frozen", agent.frozen),
                codec=entry.get("codec_frozen", agent.codec_frozen),
            )
            aggregation = entry.get("aggregation", "mean")
            if aggregation not in AGGREGATIONS:
                aggregation = import_object(aggregation)()
            graph.add_agent(agent, aggregation=aggregation)
        if agents:
            raise GraphError(f"Agents {sorted(agents)} are not in the graph's data")
        for entry in data["edges"]:
            entry = dict(entry)
            graph.add_edge(
                entry.pop("learner"), entry.pop("tutor"), entry.pop("protocols"), **entry
            )
        return graph

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        edges = ", ".join(
            f"{e.learner} -> {e.tutor} [{'+'.join(e.protocols)}"
            + (f", k={e.rounds}" if e.talks else "")
            + ("" if e.active else ", inactive")
            + "]"
            for e in self.edges
        )
        return f"Graph({edges or ', '.join(self.agents)})"


def import_object(path: str) -> Any:
    """``"package.module:attr"`` (or ``"package.module.attr"``) -> the object."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise GraphError(f"Cannot import {path!r}: {error}") from error


def _import_path(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _aggregation_name(aggregation: str | nn.Module) -> str:
    return aggregation if isinstance(aggregation, str) else _import_path(type(aggregation))


def agent_from_spec(name: str, spec: Mapping[str, Any] | None) -> Agent:
    """Build an agent from ``{"factory": "module:function", "kwargs": {...}}``; the factory
    returns an :class:`Agent` (its name is set to ``name``)."""
    if not spec or "factory" not in spec:
        raise GraphError(
            f"Agent {name!r}: no agent given and no spec to build it from; pass agents={{{name!r}: ...}}"
        )
    factory = import_object(spec["factory"])
    agent = factory(name=name, **spec.get("kwargs", {}))
    if not isinstance(agent, Agent):
        raise GraphError(
            f"Agent {name!r}: factory {spec['factory']!r} returned {type(agent).__name__}"
        )
    agent.name = name
    agent.spec = dict(spec)
    return agent
