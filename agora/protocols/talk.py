r"""Talking-model Distillation (the paper's Algorithm 1, for a learner with any tutors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from agora.losses import Losses, distance
from agora.protocols.base import Link, Protocol

if TYPE_CHECKING:
    from agora.agent import Agent
    from agora.graph import Graph

State = tuple[Tensor, Tensor]


class Talk(Protocol):
    r"""TD: the learner asks, its tutors interpret and reply, the learner learns from the reply.

    Round 0 gives each agent its states and message, :math:`m_a = E_a(s_a, e_a)`. Each talk
    edge ``u -> v`` aligns the message space:

    .. math::
        L_{MC} = d(m_u, m_v), \qquad
        L_{SC} = d(\{s_u; e_u\}, D_u(m_v)) + d(\{s_v; e_v\}, D_v(m_u))

    Then the learner ``u`` talks ``k`` rounds (``learner.rounds``) with all its tutors ``v``
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

    Weights:
        - ``message_consistency``, ``state_consistency``: per edge (``edge.weights``).
        - ``interact``: the learner's own, :attr:`Agent.interact_weight
          <agora.agent.Agent.interact_weight>`, with its rounds and its aggregation.
    """

    name = "talk"
    weights: ClassVar[dict[str, float]] = {"message_consistency": 1.0, "state_consistency": 1.0}
    speaks = True

    def add_losses(self, losses: Losses, links: list[Link], graph: Graph) -> None:
        """Add each edge's consistency terms, then the learner's ``interact`` term."""
        heard = {link.tutor.name: self.consistency(losses, link, graph.distance) for link in links}
        learner = links[0].learner
        if learner.rounds > 0 and learner.interact_weight > 0:
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
        state: State = (out.s, out.e)
        question = out.m
        for i in range(learner.rounds):
            replies = [
                self.reply(link, question, heard[link.tutor.name] if i == 0 else None, graph)
                for link in links
            ]
            reply = self.aggregate(learner, replies, question, graph)
            self.report(losses, learner, links)
            decoded = self.listen(learner, reply)  # (s'_u, e'_u)
            losses.add(
                f"interact[{learner.name}]",
                learner.interact_weight,
                distance(state, decoded, graph.distance, out.mask),
                learner=learner.name,
            )
            if i + 1 < learner.rounds:  # the last follow-up would never be answered
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

    def aggregate(
        self, learner: Agent, replies: list[Tensor], question: Tensor, graph: Graph
    ) -> Tensor:
        """One reply from several (the learner's aggregator); a single reply passes unchanged.

        The aggregator weighs all of the learner's talk edges; when a stage has switched some
        off, it is told which of them replied (``tutors=``)."""
        if len(replies) == 1:
            return replies[0]
        talk = graph.talk_edges(learner.name)
        tutors = None
        if len(replies) != len(talk):
            tutors = [i for i, edge in enumerate(talk) if edge.active]
        return learner.aggregator(torch.stack(replies), question, tutors=tutors)

    def report(self, losses: Losses, learner: Agent, links: list[Link]) -> None:
        """Note, for the log, the weight the learner gave each tutor's reply (its mean over
        examples and tokens): ``aggregation/<learner>/<tutor>``. An aggregator of the user's
        own that keeps no ``last_weights`` reports nothing."""
        weights = getattr(learner.aggregator, "last_weights", None) if len(links) > 1 else None
        if weights is not None and weights.shape[-1] == len(links):  # [n] or [B, (T,) n]
            mean = weights.reshape(-1, weights.shape[-1]).float().mean(0)
            for link, weight in zip(links, mean):
                losses.note(f"aggregation/{learner.name}/{link.tutor.name}", weight)

    def listen(self, learner: Agent, reply: Tensor) -> State:
        """The learner decodes the (aggregated) reply: ``(s'_u, e'_u) = D_u(r)``."""
        return learner.codec.decode(reply)

    def follow_up(self, learner: Agent, s: Tensor, mask: Tensor | None) -> tuple[State, Tensor]:
        """The learner interprets the decoded reply and encodes its next question."""
        state = (s, learner.interpret(s, mask))
        return state, learner.codec.encode(*state)
