"""The orchestrator: one training step over a graph of agents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agora.agent import Agent, AgentOutput
from agora.graph import Edge, Graph, GraphError
from agora.protocols import PROTOCOLS, Losses, distance

State = tuple[Tensor, Tensor]


@dataclass
class StepOutput:
    """The result of one step: the total ``loss``, its named terms, and each agent's round 0."""

    loss: Tensor
    losses: Losses
    outputs: dict[str, AgentOutput]


class Orchestrator(nn.Module):
    r"""Runs one training step over a :class:`~agora.graph.Graph` (Algorithm 1, for N agents).

    Round 0: every agent sees ``x``; :math:`y_a, s_a, e_a = a(x)` and :math:`m_a = E_a(s_a, e_a)`.
    Trainable agents add their task loss, every active edge its protocols' terms. Then each
    learner ``u`` talks ``k`` rounds with its talk tutors ``v``:

    .. math::
        s'_v, \_ = D_v(m), \quad \tilde e_v = \mathrm{upper}_v(s'_v + \epsilon), \quad
        r_v = E_v(s'_v, \tilde e_v), \quad r = \mathrm{agg}(r_v) \\
        s'_u, e'_u = D_u(r), \quad L \mathrel{+}= w_{interact}\, d(\mathrm{state}, (s'_u, e'_u)),
        \quad \mathrm{state} = (s'_u, \mathrm{upper}_u(s'_u)), \quad m = E_u(\mathrm{state})

    Frozen agents run round 0 without gradients, but gradients flow *through* a frozen tutor's
    upper layers when it interprets, into the codecs and the learner.

    Each step is a small method to override: :meth:`observe` (round 0 of one agent),
    :meth:`reply` (a tutor decodes, interprets and answers), :meth:`aggregate`, :meth:`listen`
    (the learner decodes the reply) and :meth:`follow_up` (it interprets and asks again).

    Args:
        graph (Graph): a built graph (:meth:`Graph.build <agora.graph.Graph.build>`).

    Shapes:
        - **x**: any input every agent's ``lower`` accepts (shared by all agents)
        - **y**: targets ``[B]`` / ``[B, ...]``, or a mapping agent name -> targets
        - **output**: :class:`StepOutput`

    Example:
        >>> from torch import nn
        >>> def mlp(name, d, **kw):
        ...     return Agent(name, nn.Linear(4, d), nn.Sequential(nn.Linear(d, d), nn.ReLU()),
        ...                  nn.Linear(d, 1), task="regression", **kw)
        >>> graph = Graph([mlp("teacher", 32, frozen=True), mlp("student", 8)], message_dim=16)
        >>> _ = graph.add_edge("student", "teacher", "talk", rounds=2)
        >>> step = Orchestrator(graph.build(torch.randn(5, 4)))
        >>> out = step(torch.randn(5, 4), torch.randn(5))
        >>> out.losses
        L = 1.0 * task[student] + 1.0 * message_consistency[student->teacher] + 1.0 * state_consistency[student->teacher] + 1.0 * interact[student]
        >>> out.loss.backward()
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: Any, y: Tensor | Mapping[str, Tensor] | None = None) -> StepOutput:
        graph = self.graph
        if not graph.built:
            raise GraphError("The graph is not built: call graph.build(sample_batch) first")
        outputs = self.round_zero(x)
        losses = Losses()
        if y is not None:
            self.task_losses(outputs, y, losses)
        for edge in graph.active_edges:
            agents = (graph.agents[edge.learner], graph.agents[edge.tutor])
            for protocol in edge.protocols:
                PROTOCOLS[protocol].add_losses(
                    losses,
                    edge,
                    outputs[edge.learner],
                    outputs[edge.tutor],
                    agents,
                    graph.adapter(edge, protocol),
                )
        for learner in graph.learners():
            edges = graph.tutors_of(learner)
            if edges and edges[0].rounds > 0 and edges[0].weights["interact"] > 0:
                self.talk(graph.agents[learner], edges, outputs[learner], losses)
        return StepOutput(loss=losses.total, losses=losses, outputs=outputs)

    # -- round 0 -----------------------------------------------------------------------------

    def round_zero(self, x: Any) -> dict[str, AgentOutput]:
        """Every agent that trains or sits on an active edge sees ``x``."""
        graph = self.graph
        edges = graph.active_edges
        speaking = {
            n for e in edges if {"talk", "feature"} & set(e.protocols) for n in (e.learner, e.tutor)
        }
        present = {n for e in edges for n in (e.learner, e.tutor)}
        return {
            name: self.observe(agent, x, message=name in speaking)
            for name, agent in graph.agents.items()
            if agent.trainable or name in present
        }

    def observe(self, agent: Agent, x: Any, message: bool = True) -> AgentOutput:
        """Round 0 of one agent: ``y, s, e = agent(x)`` and, when it speaks, ``m = E(s, e)``."""
        if agent.frozen:
            with torch.no_grad():  # a frozen backbone needs no graph; its codec still learns
                out = agent(x)
        else:
            out = agent(x)
        if message:
            out.m = agent.codec.encode(out.s, out.e)
        return out

    def task_losses(
        self, outputs: dict[str, AgentOutput], y: Tensor | Mapping[str, Tensor], losses: Losses
    ) -> None:
        for name, out in outputs.items():
            agent = self.graph.agents[name]
            if agent.trainable and agent.task is not None and agent.task_weight:
                target = y[name] if isinstance(y, Mapping) else y
                losses.add(f"task[{name}]", agent.task_weight, agent.task_loss(out.y, target))

    # -- talk rounds -------------------------------------------------------------------------

    def talk(self, learner: Agent, edges: list[Edge], out: AgentOutput, losses: Losses) -> None:
        """``k`` rounds of question, replies, aggregation and follow-up for one learner."""
        tutors = [self.graph.agents[edge.tutor] for edge in edges]
        rounds, weight, kind = edges[0].rounds, edges[0].weights["interact"], edges[0].distance
        state: State = (out.s, out.e)
        question = out.m
        for i in range(rounds):
            replies = [self.reply(t, e, question, out.mask, out) for t, e in zip(tutors, edges)]
            reply = self.aggregate(learner, replies, question)
            decoded = self.listen(learner, reply)  # (s'_u, e'_u)
            losses.add(
                f"interact[{learner.name}]", weight, distance(state, decoded, kind, out.mask)
            )
            if i + 1 < rounds:  # the last follow-up would never be answered
                state, question = self.follow_up(learner, decoded[0], out.mask)

    def reply(
        self,
        tutor: Agent,
        edge: Edge,
        question: Tensor,
        mask: Tensor | None,
        learner: AgentOutput | None = None,
    ) -> Tensor:
        """The tutor decodes the question, interprets it with its own upper layers, answers."""
        if learner is not None and question is learner.m and tutor.name in learner.decoded:
            s = learner.decoded[tutor.name][0]  # D_v(m_u) of round 0, already computed for L_SC
        else:
            s, _ = tutor.codec.decode(question)  # s'_v
        if edge.noise and self.training:
            s = s + edge.noise * torch.randn_like(s)
        e = tutor.interpret(s, mask)  # ẽ_v, differentiable even when the tutor is frozen
        return tutor.codec.encode(s, e)  # r_v = E_v(s'_v, ẽ_v)

    def aggregate(self, learner: Agent, replies: list[Tensor], question: Tensor) -> Tensor:
        """One reply from several; a single tutor's reply passes unchanged.

        The aggregator weighs all of the learner's talk edges; when a stage has switched some
        off, it is told which of them replied (``tutors=``)."""
        if len(replies) == 1:
            return replies[0]
        aggregator = self.graph.aggregators[learner.name]
        talk = self.graph.talk_edges(learner.name)
        if len(replies) == len(talk):
            return aggregator(torch.stack(replies), question)
        active = [i for i, edge in enumerate(talk) if edge.active]
        return aggregator(torch.stack(replies), question, tutors=active)

    def listen(self, learner: Agent, reply: Tensor) -> State:
        return learner.codec.decode(reply)

    def follow_up(self, learner: Agent, s: Tensor, mask: Tensor | None) -> tuple[State, Tensor]:
        """The learner interprets the decoded reply and encodes its next question."""
        state = (s, learner.interpret(s, mask))
        return state, learner.codec.encode(*state)
