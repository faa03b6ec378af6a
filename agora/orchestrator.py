"""The orchestrator: one training step over a graph of agents.

Shapes name ``B`` the examples of a batch (each learner's own, with per-learner batches; the
transfer batch's, for a transfer set), ``T`` tokens, ``C`` classes, ``m_dim`` the message
size, and ``...`` the trailing shape of an agent's own states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agora.agent import Agent, AgentOutput
from agora.graph import Graph, GraphError
from agora.losses import Losses
from agora.protocols import Link, Protocol

Batch = tuple[Any, Tensor | None]


@dataclass
class StepOutput:
    """The result of one step: the total ``loss``, its named terms, and each agent's round 0.

    With per-learner batches, ``outputs`` holds each learner's round 0 on its own batch, and
    ``groups`` what every agent of a learner's group (the learner and its tutors) said about
    that batch: ``groups[learner][agent]``.
    """

    loss: Tensor
    losses: Losses
    outputs: dict[str, AgentOutput]
    groups: dict[str, dict[str, AgentOutput]] | None = None


class Orchestrator(nn.Module):
    r"""Runs one training step over a :class:`~agora.graph.Graph` (Algorithm 1, for N agents).

    Round 0: every agent sees ``x``; :math:`y_a, s_a, e_a = a(x)`, and an agent on an edge
    whose protocol speaks encodes :math:`m_a = E_a(s_a, e_a)`. Trainable agents add their
    task loss. Then, learner by learner, each protocol of its active edges adds its terms
    (:meth:`Protocol.add_losses <agora.protocols.Protocol.add_losses>`): the one-way
    protocols one term per edge, ``talk`` its consistency terms and the learner's ``k``
    rounds with all its tutors (:class:`~agora.protocols.talk.Talk`).

    Frozen agents run round 0 without gradients; gradients still flow *through* a frozen
    tutor's upper layers when it interprets, into the codecs and the learner.

    With ``batches={learner: (x, y)}`` instead of a shared ``x``, each learner trains on its
    own data (several students of one teacher, each on its own task): round 0 runs once per
    learner, in which the learner and each of its tutors observe that learner's ``x``; the
    learner's edges and talk rounds use those outputs and its task loss its own ``y``. A tutor
    shared by several learners thus observes each learner's batch, and its codec learns from
    all of them. Every learner of an active edge, and every trainable agent with a task, needs
    a batch.

    With ``transfer`` (inputs without labels, beside ``x`` or ``batches``, or alone), the
    agents on active edges also observe the transfer batch; the task loss counts the labelled
    examples only, and each distillation term is its mean over both,
    ``(n_l * L_l + n_t * L_t) / (n_l + n_t)`` (``n``: the learner's labelled and transfer
    examples in the step).

    Args:
        graph (Graph): a built graph (:meth:`Graph.build <agora.graph.Graph.build>`).

    Shapes:
        - **x**: any input every agent's ``lower`` accepts (shared by all agents)
        - **y**: targets ``[B]`` / ``[B, ...]``, or a mapping agent name -> targets
        - **batches**: learner name -> ``(x, y)``, batch sizes free per learner
        - **transfer**: inputs as ``x``, any batch size; no targets
        - **output**: :class:`StepOutput`

    Example:
        >>> from torch import nn
        >>> from agora import Talk
        >>> def mlp(name, d, **kw):
        ...     return Agent(name, nn.Linear(4, d), nn.Sequential(nn.Linear(d, d), nn.ReLU()),
        ...                  nn.Linear(d, 1), task="regression", **kw)
        >>> graph = Graph([mlp("teacher", 32, frozen=True), mlp("student", 8)], message_dim=16)
        >>> _ = graph.add_edge("student", "teacher", Talk(rounds=2))
        >>> step = Orchestrator(graph.build(torch.randn(5, 4)))
        >>> out = step(torch.randn(5, 4), torch.randn(5))
        >>> out.losses
        L = 1.0 * task[student] + 1.0 * message_consistency[student->teacher] + 1.0 * state_consistency[student->teacher] + 1.0 * interact[student]
        >>> out.loss.backward()
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph

    def forward(
        self,
        x: Any = None,
        y: Tensor | Mapping[str, Tensor] | None = None,
        *,
        batches: Mapping[str, Batch] | None = None,
        transfer: Any = None,
    ) -> StepOutput:
        graph = self.graph
        if not graph.built:
            raise GraphError("The graph is not built: call graph.build(sample_batch) first")
        groups, outputs, seen_by = None, {}, {}
        if batches is not None:
            check_learner_data(graph, batches, "batches")
            groups = {name: self.round_zero(xy[0], learner=name) for name, xy in batches.items()}
            outputs = {name: group[name] for name, group in groups.items()}
            seen_by = groups
            y = {name: xy[1] for name, xy in batches.items() if xy[1] is not None} or None
        elif x is not None:
            outputs = self.round_zero(x)
            seen_by = dict.fromkeys(graph.learners(), outputs)  # one x: one round 0 for all
        losses = Losses()
        if y is not None:
            self.task_losses(outputs, y, losses)
        heard = self.round_zero(transfer, transfer=True) if transfer is not None else None
        for learner in graph.learners():
            labelled = seen_by.get(learner)
            if heard is None:
                self.edge_losses(learner, labelled, losses)
                continue
            # each term is its mean over the labelled and the transfer examples together
            sizes = [_examples(part[learner]) if part else 0 for part in (labelled, heard)]
            for part, size in zip((labelled, heard), sizes):
                if size:
                    own = Losses()
                    self.edge_losses(learner, part, own)
                    losses.extend(own, size / sum(sizes))
        if not losses.terms:
            raise GraphError(
                "Nothing to learn in this step: no trainable agent has a task and targets, and "
                f"no edge is active (edges: {[e.name for e in graph.edges]})"
            )
        return StepOutput(loss=losses.total, losses=losses, outputs=outputs, groups=groups)

    def edge_losses(self, learner: str, outputs: Mapping[str, AgentOutput], losses: Losses) -> None:
        """Add the terms of the learner's active edges, each protocol's in turn."""
        for protocol, links in self.links(learner, outputs).items():
            protocol.add_losses(losses, links, self.graph)

    def links(self, learner: str, outputs: Mapping[str, AgentOutput]) -> dict[Protocol, list[Link]]:
        """The learner's active edges, each a :class:`~agora.protocols.Link`, grouped by
        protocol (the first edge's instance) in the order the protocols first appear on its
        edges."""
        graph = self.graph
        by_name: dict[str, tuple[Protocol, list[Link]]] = {}
        for edge in graph.active_edges:
            if edge.learner != learner:
                continue
            for protocol in edge.protocols:
                link = Link(
                    edge, graph.agents[learner], graph.agents[edge.tutor], outputs[learner],
                    outputs[edge.tutor], graph.edge_module(edge, protocol.name),
                    graph.learner_module(protocol.name, learner),
                )  # fmt: skip
                by_name.setdefault(protocol.name, (protocol, []))[1].append(link)
        return dict(by_name.values())

    # -- round 0 -----------------------------------------------------------------------------

    def round_zero(
        self, x: Any, learner: str | None = None, transfer: bool = False
    ) -> dict[str, AgentOutput]:
        """Every agent that trains or sits on an active edge sees ``x``; with ``learner``,
        only that learner's group: the learner and the tutors of its active edges; for a
        ``transfer`` batch (no labels: no task to train), only the agents on active edges."""
        graph = self.graph
        edges = [e for e in graph.active_edges if learner is None or e.learner == learner]
        speaking = {
            name
            for e in edges
            if any(p.speaks for p in e.protocols)
            for name in (e.learner, e.tutor)
        }
        present = {n for e in edges for n in (e.learner, e.tutor)}
        return {
            name: self.observe(agent, x, message=name in speaking)
            for name, agent in graph.agents.items()
            if name in present
            or (name == learner if learner is not None else agent.trainable and not transfer)
        }

    def observe(self, agent: Agent, x: Any, message: bool = True) -> AgentOutput:
        """Round 0 of one agent: ``y, s, e = agent(x)`` and, when it speaks, ``m = E(s, e)``."""
        if agent.frozen:
            with torch.no_grad():  # a frozen backbone needs no graph; its codec still learns
                out = agent.read(x)  # y [B] or [B, C]; s, e [B, ...] or [B, T, ...]
        else:
            out = agent.read(x)  # y [B] or [B, C]; s, e [B, ...] or [B, T, ...]
        if message:
            out.m = agent.codec.encode(out.s, out.e)  # [B, m_dim] or [B, T, m_dim]
        return out

    def task_losses(
        self, outputs: dict[str, AgentOutput], y: Tensor | Mapping[str, Tensor], losses: Losses
    ) -> None:
        """Add ``task[name]`` for every trainable agent with a task."""
        for name, out in outputs.items():
            agent = self.graph.agents[name]
            if agent.trainable and agent.task is not None and agent.task_weight:
                if isinstance(y, Mapping) and name not in y:
                    raise KeyError(
                        f"Agent {name!r} trains on task {agent.task!r}, but the targets hold "
                        f"{sorted(y)} only"
                    )
                target = y[name] if isinstance(y, Mapping) else y  # [B] or [B, ...]
                value = agent.task_loss(out.y, target)
                losses.add(f"task[{name}]", agent.task_weight, value, learner=name, task=True)


def _examples(out: AgentOutput) -> int:
    """The examples an agent's round 0 was about (its states' batch size)."""
    return out.s.shape[0]  # B


def check_learner_data(graph: Graph, data: Mapping[str, Any], what: str = "data") -> None:
    """Per-learner data must name agents of ``graph`` that train, and give data to every
    learner of an active edge and every trainable agent with a task.

    Raises:
        GraphError: naming the agent without data, or the name that is not a trainable agent.
    """
    for name in data:
        if name not in graph.agents:
            raise GraphError(
                f"{what} holds data for {name!r}, which is not an agent of the graph; agents "
                f"are {list(graph.agents)}"
            )
        if graph.agents[name].frozen:
            raise GraphError(
                f"{what} holds data for {name!r}, which is frozen and learns nothing from it; "
                f"a frozen tutor observes the data of each of its learners"
            )
    trainees = [
        name
        for name, agent in graph.agents.items()
        if agent.trainable and (name in graph.learners() or agent.task is not None)
    ]
    for name in trainees:
        if name not in data:
            raise GraphError(
                f"Learner {name!r} has no data: {what} holds data for {sorted(data)}; with "
                f"per-learner data every learner (and every trainable agent with a task) needs "
                f"its own"
            )
