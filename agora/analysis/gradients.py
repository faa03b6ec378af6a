r"""How hard each loss term pulls on each agent: the norm of each weighted term's gradient.

A loss weight says little by itself: a distillation term weighted 0.1 whose gradient on the
student is a thousandth of the task loss's cannot change what the student learns. One training
step's terms, each differentiated alone, tell how much of the update each one makes::

    from agora.analysis.gradients import term_gradients, relative

    norms = term_gradients(graph, x, y)        # {agent: {term: ||∇ w·L_term||}}
    relative(norms)["student"]                 # each term over the agent's task term
    term_alignment(graph, x, y)["student"]     # each term's cosine with the task's gradient

Only a trainable agent's backbone counts (``lower``, ``upper``, ``head``): its codec is trained
by the consistency terms alone, so their pull on it says nothing about the student.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from agora.graph import Graph, GraphError
from agora.losses import LossBalancer, gradient, gradient_dot
from agora.orchestrator import Orchestrator

Gradient = list[Tensor | None]  # one part per parameter; None where the term does not reach


def term_gradients(
    graph: Graph,
    x: Any = None,
    y: Tensor | Mapping[str, Tensor] | None = None,
    *,
    batches: Mapping[str, Any] | None = None,
    transfer: Any = None,
    balance: bool = False,
) -> dict[str, dict[str, float]]:
    """The L2 norm of each weighted loss term's gradient on each trainable agent's backbone.

    Runs one training step on ``x, y`` (or per-learner ``batches``; with ``transfer``, a batch
    of inputs without labels beside them, as :class:`~agora.orchestrator.Orchestrator` takes
    it) in train mode, so dropout and message noise draw from the RNG as in training, then
    differentiates every term
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
    return _each_term(
        graph, x, y, batches, transfer, balance, lambda g, task: gradient_dot(g, g).sqrt().item()
    )


def term_alignment(
    graph: Graph,
    x: Any = None,
    y: Tensor | Mapping[str, Tensor] | None = None,
    *,
    batches: Mapping[str, Any] | None = None,
    transfer: Any = None,
) -> dict[str, dict[str, float]]:
    """The cosine between each loss term's gradient and the agent's task term's gradient, on
    each trainable agent's backbone: does the term pull the way the task does (near 1),
    across it (near 0) or against it (below 0)?

    Runs one training step as :func:`term_gradients` does (``transfer`` too), changing nothing.
    A term that does not reach the agent has cosine 0; agents without a task term are left out.

    Returns:
        dict[str, dict[str, float]]: ``{agent: {term: cosine}}``; the task term's own is 1.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 8, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher", "logit", weights={"logit": 0.5})
        >>> x, y = torch.randn(16, 4), torch.randn(16)
        >>> cosines = term_alignment(graph.build(x), x, y)["student"]
        >>> round(cosines["task[student]"], 4), -1 <= cosines["logit[student->teacher]"] <= 1
        (1.0, True)
    """

    def cosine(grads: Gradient, task: Gradient | None) -> float:
        if task is None:
            return float("nan")
        size = (gradient_dot(grads, grads) * gradient_dot(task, task)).sqrt()
        return (gradient_dot(grads, task) / size).item() if size > 0 else 0.0

    cosines = _each_term(graph, x, y, batches, transfer, False, cosine)
    return {agent: terms for agent, terms in cosines.items() if f"task[{agent}]" in terms}


def _each_term(
    graph: Graph,
    x: Any,
    y: Any,
    batches: Mapping[str, Any] | None,
    transfer: Any,
    balance: bool,
    measure: Callable[[Gradient, Gradient | None], float],
) -> dict[str, dict[str, float]]:
    """One training step on ``x, y`` (or ``batches``; ``transfer`` beside them), then
    ``measure(grads, task_grads)`` of each weighted term's gradient on each trainable agent's
    backbone (``task_grads``: the agent's task term's, ``None`` without one); nothing updated,
    buffers and mode restored."""
    if not graph.built:
        raise GraphError("The graph is not built: call graph.build(sample_batch) first")
    params = {name: tensors for name, tensors in graph.backbone_parameters().items() if tensors}
    was_training = graph.training
    buffers = {name: b.clone() for name, b in graph.named_buffers()}  # batch-norm statistics
    graph.train()
    try:
        out = Orchestrator(graph)(x, y, batches=batches, transfer=transfer)
        scales: dict[str, float] = {}
        if balance:
            balancer = LossBalancer(params, momentum=0.0, every=1)
            balancer(out.losses)
            scales = balancer.scales
        terms = out.losses.terms

        def weighted(term: str, tensors: list[Tensor]) -> Gradient:
            weight, value = terms[term]
            return gradient(weight * scales.get(term, 1.0) * value, tensors)

        measured: dict[str, dict[str, float]] = {}
        for name, tensors in params.items():
            task = weighted(f"task[{name}]", tensors) if f"task[{name}]" in terms else None
            measured[name] = {term: measure(weighted(term, tensors), task) for term in terms}
    finally:
        graph.train(was_training)
        with torch.no_grad():
            for name, b in graph.named_buffers():
                b.copy_(buffers[name])
    return measured


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
