r"""Talking-model Distillation (the paper's Algorithm 1, for a learner with any tutors).

Everything about talk lives here: the protocol and its settings (:class:`Talk`: a learner's
rounds ``k``, its interact weight, how it aggregates several tutors), the per-learner module
it builds from them (:class:`TalkLearner`, with the aggregator), and how a graph written when
an agent held those settings is read (:func:`move_learner_settings`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from agora.aggregation import AGGREGATIONS, make_aggregation
from agora.errors import GraphError
from agora.losses import Losses, distance
from agora.protocols.base import Link, Protocol
from agora.trust import import_object

if TYPE_CHECKING:
    from agora.agent import Agent
    from agora.edge import Edge
    from agora.graph import Graph

State = tuple[Tensor, Tensor]

MAX_ROUNDS = 64  # k: more talk rounds than any schedule needs, and still a finite step
SETTINGS = ("rounds", "interact_weight", "aggregation")  # a learner's, on each of its talk edges


class Talk(Protocol):
    r"""TD: the learner asks, its tutors interpret and reply, the learner learns from the reply.

    Round 0 gives each agent its states and message, :math:`m_a = E_a(s_a, e_a)`. Each talk
    edge ``u -> v`` aligns the message space:

    .. math::
        L_{MC} = d(m_u, m_v), \qquad
        L_{SC} = d(\{s_u; e_u\}, D_u(m_v)) + d(\{s_v; e_v\}, D_v(m_u))

    Then the learner ``u`` talks ``k`` rounds (``rounds``) with all its tutors ``v``
    at once, starting from ``state = (s_u, e_u)`` and ``m = m_u``:

    .. math::
        s'_v, \_ = D_v(m), \quad \tilde e_v = \mathrm{upper}_v(s'_v + \epsilon), \quad
        r_v = E_v(s'_v, \tilde e_v), \quad r = \mathrm{agg}(r_v) \\
        s'_u, e'_u = D_u(r), \quad L_{interact} \mathrel{+}= d(\mathrm{state}, (s'_u, e'_u)),
        \quad \mathrm{state} = (s'_u, \mathrm{upper}_u(s'_u)), \quad m = E_u(\mathrm{state})

    A frozen tutor's weights never change, but gradients flow *through* its upper layers
    into the codecs and the learner. ``k = 0`` keeps only the consistency terms (the paper's
    "no interaction"). The reply is encoded with the tutor's own encoder ``E_v`` (the text of
    section 3.3; the appendix's line 13 writes ``E_g``).

    Each step is a method to override: :meth:`reply` (a tutor decodes, interprets and
    answers), :meth:`aggregate`, :meth:`listen` (the learner decodes the reply) and
    :meth:`follow_up` (it interprets and asks again).

    The settings are the learner's, which talks with all its tutors at once: every talk edge
    of a learner carries the same ones (pass one ``Talk(...)`` to each), and the graph builds
    from them one :class:`TalkLearner` per learner (:meth:`build_learner`). The consistency
    weights are each edge's own (``edge.weights``).

    Args:
        rounds (int): ``k``, the talk rounds the learner runs with its tutors; 0 keeps only the
            consistency terms (the paper's "no interaction"). (default: ``1``)
        interact_weight (float): the weight of the learner's ``interact`` term, summed over
            rounds. (default: ``1.0``)
        aggregation (str or nn.Module): how the learner combines the replies of several
            tutors: ``"mean"``, ``"weights"`` (learned per tutor), ``"router"`` (per example),
            a module (:class:`~agora.aggregation.Aggregation`) or a module class
            ``"package.module:Class"``. (default: ``"mean"``)

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> from agora import Graph
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher", Talk(rounds=2, interact_weight=0.5))
        >>> graph.build(torch.randn(2, 4)).learner_module("talk", "student")
        TalkLearner(
          rounds=2, interact_weight=0.5, tutors=['teacher']
          (aggregator): MeanAggregation()
        )
    """

    name = "talk"
    weights: ClassVar[dict[str, float]] = {"message_consistency": 1.0, "state_consistency": 1.0}
    speaks = True

    def __init__(
        self, rounds: int = 1, interact_weight: float = 1.0, aggregation: str | nn.Module = "mean"
    ) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= MAX_ROUNDS:
            raise GraphError(
                f"must be an integer in [0, {MAX_ROUNDS}], got {rounds!r} (each round runs the "
                f"tutors' upper layers again; the paper's k is 1 to 3)",
                "rounds",
                "Talk",
            )
        weight = interact_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise GraphError(f"must be a number, got {weight!r}", "interact_weight", "Talk")
        if not math.isfinite(weight) or weight < 0:
            raise GraphError(f"must be finite and >= 0, got {weight}", "interact_weight", "Talk")
        named = isinstance(aggregation, str) and (aggregation in AGGREGATIONS or ":" in aggregation)
        if not isinstance(aggregation, nn.Module) and not named:
            raise GraphError(
                f"unknown aggregation {aggregation!r}; choose one of {list(AGGREGATIONS)}, a "
                f"module, or a module class 'package.module:Class'",
                "aggregation",
                "Talk",
            )
        if named and aggregation not in AGGREGATIONS:
            import_object(aggregation, "aggregation")
        self.rounds, self.interact_weight = rounds, float(interact_weight)
        self.aggregation = aggregation

    def settings(self) -> dict[str, Any]:
        """``rounds``, ``interact_weight`` and ``aggregation``."""
        return {key: getattr(self, key) for key in SETTINGS}

    def describe(self) -> str:
        """``k=<rounds>``, as a graph's repr shows a talk edge."""
        return f"k={self.rounds}"

    # -- the learner's own module --------------------------------------------------------------

    def check_learner(self, learner: str, edges: list[Edge]) -> None:
        """Every talk edge of the learner carries these settings; learned weights and routers
        weigh several tutors, so they need two talk edges."""
        others = [(edge, edge.protocol(self.name)) for edge in edges]
        if any(talk != self for _, talk in others):
            described = ", ".join(f"{edge.name} has {talk!r}" for edge, talk in others)
            raise GraphError(
                f"Agent {learner!r}: its talk edges disagree ({described}); it talks with all "
                f"its tutors at once: give each of its talk edges the same Talk(...)"
            )
        if self.aggregation in ("weights", "router") and len(edges) < 2:
            raise GraphError(
                f"Agent {learner!r}: aggregation {self.aggregation!r} weighs the replies of "
                f"several tutors, but {learner!r} talks to {len(edges)} "
                f"({[e.tutor for e in edges]}); use 'mean' or add talk edges to more tutors"
            )

    def build_learner(
        self, learner: Agent, edges: list[Edge], message_dim: int, built: nn.Module | None
    ) -> TalkLearner:
        """The learner's :class:`TalkLearner`, its aggregator sized by all its talk edges,
        active or not, so that a stage switching one off keeps the learned weights of the
        others (see :class:`~agora.aggregation.Aggregation`'s ``tutors``). The one ``built``
        before is kept while it fits (same settings, same tutors)."""
        tutors = [edge.tutor for edge in edges]
        if isinstance(built, TalkLearner) and built.fits(self, tutors):
            return built
        if isinstance(self.aggregation, nn.Module):  # a module of the user's own, as it is
            aggregator = self.aggregation
        elif self.aggregation not in AGGREGATIONS:  # a module class named by import path
            aggregator = import_object(self.aggregation, "aggregation")()
        else:
            aggregator = make_aggregation(self.aggregation, len(tutors), message_dim)
        return TalkLearner(self, tutors, aggregator)

    # -- the step ------------------------------------------------------------------------------

    def add_losses(self, losses: Losses, links: list[Link], graph: Graph) -> None:
        """Add each edge's consistency terms, then the learner's ``interact`` term."""
        learner_talk = links[0].learner_module
        if not isinstance(learner_talk, TalkLearner) or not learner_talk.fits(self):
            raise GraphError(
                f"Agent {links[0].learner.name!r}: its talk settings changed since the graph "
                "was built; call graph.build(sample) again"
            )
        heard = {link.tutor.name: self.consistency(losses, link, graph.distance) for link in links}
        if learner_talk.rounds > 0 and learner_talk.interact_weight > 0:
            self.converse(losses, links, graph, heard)

    def consistency(self, losses: Losses, link: Link, kind: str) -> State | None:
        """Add ``message_consistency[edge]`` and ``state_consistency[edge]``; returns
        ``D_v(m_u)``, the tutor's reading of the learner's first question, when it was
        computed (the first round reuses it)."""
        edge, learner, tutor = link.edge, link.learner_out, link.tutor_out
        mask = learner.mask
        if edge.weights["message_consistency"]:
            losses.add(
                f"message_consistency[{edge.name}]",
                edge.weights["message_consistency"],
                distance(learner.m, tutor.m, kind, mask),
                learner=link.learner.name,
                edge=edge.name,
            )
        if not edge.weights["state_consistency"]:
            return None
        decoded_by_learner = link.learner.codec.decode(tutor.m)  # (s'_u, e'_u) = D_u(m_v)
        decoded_by_tutor = link.tutor.codec.decode(learner.m)  # (s'_v, e'_v) = D_v(m_u)
        consistency = distance((learner.s, learner.e), decoded_by_learner, kind, mask)
        consistency = consistency + distance((tutor.s, tutor.e), decoded_by_tutor, kind, mask)
        losses.add(
            f"state_consistency[{edge.name}]", edge.weights["state_consistency"], consistency,
            learner=link.learner.name, edge=edge.name,
        )  # fmt: skip
        return decoded_by_tutor

    def converse(
        self, losses: Losses, links: list[Link], graph: Graph, heard: dict[str, State | None]
    ) -> None:
        """``k`` rounds of question, replies, aggregation and follow-up for one learner."""
        learner, out = links[0].learner, links[0].learner_out
        learner_talk = links[0].learner_module  # its TalkLearner: rounds, interact weight
        state: State = (out.s, out.e)
        question = out.m
        for i in range(learner_talk.rounds):
            replies = [
                self.reply(link, question, heard[link.tutor.name] if i == 0 else None, graph)
                for link in links
            ]
            reply = self.aggregate(links, replies, question)
            self.report(losses, links)
            decoded = self.listen(learner, reply)  # (s'_u, e'_u)
            losses.add(
                f"interact[{learner.name}]",
                learner_talk.interact_weight,
                distance(state, decoded, graph.distance, out.mask),
                learner=learner.name,
            )
            if i + 1 < learner_talk.rounds:  # the last follow-up would never be answered
                state, question = self.follow_up(learner, decoded[0], out.mask)

    def reply(self, link: Link, question: Tensor, decoded: State | None, graph: Graph) -> Tensor:
        """The tutor decodes the question (or reuses ``decoded``), interprets it with its own
        upper layers, and answers: ``r_v = E_v(s'_v, upper_v(s'_v))``."""
        tutor, mask = link.tutor, link.learner_out.mask
        s = decoded[0] if decoded is not None else tutor.codec.decode(question)[0]  # s'_v
        if link.edge.noise and graph.training:
            s = s + link.edge.noise * torch.randn_like(s)
        e = tutor.interpret(s, mask)  # ẽ_v, differentiable even when the tutor is frozen
        return tutor.codec.encode(s, e)

    def aggregate(self, links: list[Link], replies: list[Tensor], question: Tensor) -> Tensor:
        """One reply from several (the learner's aggregator); a single reply passes unchanged.

        The aggregator weighs all of the learner's talk edges; when a stage has switched some
        off, it is told which of them replied (``tutors=``)."""
        if len(replies) == 1:
            return replies[0]
        learner_talk = links[0].learner_module
        tutors = None
        if len(replies) != len(learner_talk.tutors):
            tutors = [learner_talk.tutors.index(link.tutor.name) for link in links]
        return learner_talk.aggregator(torch.stack(replies), question, tutors=tutors)

    def report(self, losses: Losses, links: list[Link]) -> None:
        """Note, for the log, the weight the learner gave each tutor's reply (its mean over
        examples and tokens): ``aggregation/<learner>/<tutor>``. An aggregator of the user's
        own that keeps no ``last_weights`` reports nothing."""
        aggregator = links[0].learner_module.aggregator
        weights = getattr(aggregator, "last_weights", None) if len(links) > 1 else None
        if weights is not None and weights.shape[-1] == len(links):  # [n] or [B, (T,) n]
            mean = weights.reshape(-1, weights.shape[-1]).float().mean(0)
            learner = links[0].learner.name
            for link, weight in zip(links, mean):
                losses.note(f"aggregation/{learner}/{link.tutor.name}", weight)

    def listen(self, learner: Agent, reply: Tensor) -> State:
        """The learner decodes the (aggregated) reply: ``(s'_u, e'_u) = D_u(r)``."""
        return learner.codec.decode(reply)

    def follow_up(self, learner: Agent, s: Tensor, mask: Tensor | None) -> tuple[State, Tensor]:
        """The learner interprets the decoded reply and encodes its next question."""
        state = (s, learner.interpret(s, mask))
        return state, learner.codec.encode(*state)


class TalkLearner(nn.Module):
    """A learner's talk state, made by :meth:`Talk.build_learner` when the graph is built: its
    rounds ``k`` and interact weight, the tutors it talks with (its talk edges, active or not,
    in the order their replies stack) and the aggregator that weighs their replies. The graph
    holds one per learner that talks (``graph.learner_module("talk", name)``), so the
    aggregator's weights are in ``graph.parameters()`` and its checkpoints.
    """

    def __init__(self, talk: Talk, tutors: Sequence[str], aggregator: nn.Module) -> None:
        super().__init__()
        self.rounds, self.interact_weight = talk.rounds, talk.interact_weight
        self.tutors = tuple(tutors)
        self.aggregator = aggregator
        self._talk = copy.copy(talk)  # the settings it was built from (a module by reference)

    def fits(self, talk: Talk, tutors: Sequence[str] | None = None) -> bool:
        """Whether it was built from these settings (and, when given, for these tutors)."""
        return talk == self._talk and (tutors is None or tuple(tutors) == self.tutors)

    def extra_repr(self) -> str:
        return (
            f"rounds={self.rounds}, interact_weight={self.interact_weight}, "
            f"tutors={list(self.tutors)}"
        )


def move_learner_settings(graph: Mapping[str, Any]) -> dict[str, Any]:
    """Graph data written when each agent held its talk ``rounds``, ``interact_weight`` and
    ``aggregation`` (``graph.json`` of format 2 or older), with those moved onto the agent's
    talk edges, as this agora reads them.

    Example:
        >>> move_learner_settings({"agents": [{"name": "s", "rounds": 2}, {"name": "t"}],
        ...                        "edges": [{"learner": "s", "tutor": "t", "protocols": ["talk"]}]})
        {'agents': [{'name': 's'}, {'name': 't'}], 'edges': [{'learner': 's', 'tutor': 't', 'protocols': [{'talk': {'rounds': 2}}]}]}
    """
    data = copy.deepcopy(dict(graph))
    moved = {}
    for agent in data.get("agents", []):
        moved[agent.get("name")] = {key: agent.pop(key) for key in SETTINGS if key in agent}
    for edge in data.get("edges", []):
        settings = moved.get(edge.get("learner"))
        protocols = edge.get("protocols", ["talk"])
        protocols = [protocols] if isinstance(protocols, str) else protocols
        if settings:
            protocols = [{"talk": settings} if p == "talk" else p for p in protocols]
        edge["protocols"] = protocols
    return data
