r"""How hard each loss term pulls on each agent: the norm of each weighted term's gradient.

A loss weight says little by itself: a distillation term weighted 0.1 whose gradient on the
student is a thousandth of the task loss's cannot change what the student learns. One training
step's terms, each differentiated alone, tell how much of the update each one makes::

    from agora.analysis.gradients import term_gradients, relative

    norms = term_gradients(graph, x, y)        # {agent: {term: ||∇ w·L_term||}}
    relative(norms)["student"]                 # each term over the agent's task term

Only a trainable agent's backbone counts (``lower``, ``upper``, ``head``): its codec is trained
by the consistency terms alone, so their pull on it says nothing about the student.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from agora.graph import Graph, GraphError
from agora.losses import LossBalancer
from agora.orchestrator import Orchestrator


def term_gradients(
    graph: Graph,
    x: Any = None,
    y: Tensor | Mapping[str, Tensor] | None = None,
    *,
    batches: Mapping[str, Any] | None = None,
    balance: bool = False,
) -> dict[str, dict[str, float]]:
    """The L2 norm of each weighted loss term's gradient on each trainable agent's backbone.

    Runs one training step on ``x, y`` (or per-learner ``batches``) in train mode, so dropout
    and message noise draw from the RNG as in training, then differentiates every term
    ``w * L`` alone (a parameter shared by two parts counts once). Nothing is updated:
    parameters' ``.grad`` are left as they were, buffers (batch-norm statistics) restored, and
    the graph's train/eval mode too.

    With ``balance``, each term is weighted as :class:`~agora.losses.LossBalancer` weighs it
    at the first step of a run with ``FitConfig(balance_losses=True)``: scaled by the task's
    gradient norm over its own on this batch, so that each term's norm is its weight times
    the task's.

    Returns:
        dict[str, dict[str, float]]: ``{agent: {term: norm}}`` for every trainable agent, terms
        named as in :class:`~agora.protocols.Losses` (``task[student]``, ``interact[student]``,
        ``logit[student->teacher]``...). A term that does not reach an agent has norm 0.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 8, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher", "logit", weights={"logit": 0.5})
        >>> x, y = torch.randn(16, 4), torch.randn(16)
        >>> norms = term_gradients(graph.build(x), x, y)
        >>> sorted(norms["student"])
        ['logit[student->teacher]', 'task[student]']
    """
    if not graph.built:
        raise GraphError("The graph is not built: call graph.build(sample_batch) first")
    params = graph.backbone_parameters()
    was_training = graph.training
    buffers = {name: b.clone() for name, b in graph.named_buffers()}  # batch-norm statistics
    graph.train()
    try:
        out = Orchestrator(graph)(x, y, batches=batches)
        scales: dict[str, float] = {}
        if balance:
            balancer = LossBalancer(params, momentum=0.0, every=1)
            balancer(out.losses)
            scales = balancer.scales
        norms: dict[str, dict[str, float]] = {name: {} for name in params}
        for term, (weight, value) in out.losses.terms.items():
            weight = weight * scales.get(term, 1.0)
            if not value.requires_grad:
                for name in params:
                    norms[name][term] = 0.0
                continue
            for name, tensors in params.items():
                grads = torch.autograd.grad(
                    weight * value, tensors, retain_graph=True, allow_unused=True
                )
                squares = [g.float().pow(2).sum() for g in grads if g is not None]
                norms[name][term] = torch.stack(squares).sum().sqrt().item() if squares else 0.0
    finally:
        graph.train(was_training)
        with torch.no_grad():
            for name, b in graph.named_buffers():
                b.copy_(buffers[name])
    return norms


def relative(norms: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Each term's norm over the agent's own task term's (``task[agent]``); agents without a
    task term are left out.

    Example:
        >>> relative({"student": {"task[student]": 2.0, "interact[student]": 0.01}})
        {'student': {'task[student]': 1.0, 'interact[student]': 0.005}}
    """
    out = {}
    for agent, terms in norms.items():
        task = terms.get(f"task[{agent}]")
        if task:
            out[agent] = {term: value / task for term, value in terms.items()}
    return out
