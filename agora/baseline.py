"""Did talking help? The students of a graph trained alone, and the comparison.

:func:`alone` copies a graph without its edges, so that the same students (same initial
weights) train with the same data, seed, budget and early stopping and nobody to learn from;
:func:`compare` evaluates both on the validation (and test) split and pairs the differences::

    solo = agora.alone(graph)                       # before training graph
    agora.fit(graph, train, valid, config)
    agora.fit(solo, train, valid, config)
    agora.compare(graph, solo, valid, test)         # what `agora run --baseline` writes

``agora run CONFIG --baseline`` does all of it and writes ``comparison.json``.
"""

from __future__ import annotations

import copy
from typing import Any

from agora.aggregation import AGGREGATIONS
from agora.graph import Graph
from agora.train import evaluate, improved


def alone(graph: Graph) -> Graph:
    """The students of ``graph`` with nobody to learn from: a copy of it (the same initial
    weights, so that runs pair) without its edges. Train it with the same data and
    :class:`~agora.train.FitConfig`, and :func:`compare` tells whether the edges helped.
    A learner that aggregated several tutors (``"weights"``, ``"router"``) has none left: its
    copy aggregates by ``"mean"``, which is never used without a tutor.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher")
        >>> alone(graph)
        Graph(teacher, student)
    """
    solo = copy.deepcopy(graph)
    for learner, tutor in list(solo.nx.edges):
        solo.nx.remove_edge(learner, tutor)
    for edge in [*solo.edge_modules]:
        del solo.edge_modules[edge]
    for agent in solo.agents.values():
        if agent.aggregation in AGGREGATIONS:
            # with no tutor there is nothing to weigh: learned weights and routers need two
            agent.aggregation, agent.aggregator = "mean", None
    solo._built = False if any(a.codec is None for a in solo.agents.values()) else graph.built
    return solo


def compare(graph: Graph, solo: Graph, valid: Any, test: Any = None) -> dict[str, Any]:
    """Every agent with a task, in the graph and (for the students) alone: validation and
    test metrics, and the difference graph − alone of each student.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher")
        >>> data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16))
        >>> graph.build(data[:2][0])
        Graph(student -> teacher [talk, k=1])
        >>> result = compare(graph, alone(graph), data)
        >>> sorted(result["agents"]), result["agents"]["student"]["difference"]["valid"]
        (['student', 'teacher'], {'rmse': 0.0})
    """
    splits = {"valid": valid, **({"test": test} if test is not None else {})}
    ours = {split: evaluate(graph, data) for split, data in splits.items()}
    theirs = {split: evaluate(solo, data) for split, data in splits.items()}
    agents: dict[str, Any] = {}
    for name, agent in graph.agents.items():
        keys = [k for k in ours["valid"] if k.startswith(f"{name}/") and not k.endswith("/loss")]
        if not keys:
            continue
        entry: dict[str, Any] = {"role": "student" if agent.trainable else "frozen"}
        entry["graph"] = {s: {k.split("/")[1]: m[k] for k in keys} for s, m in ours.items()}
        if agent.trainable:
            entry["alone"] = {s: {k.split("/")[1]: m[k] for k in keys} for s, m in theirs.items()}
            entry["difference"] = {
                s: {m: entry["graph"][s][m] - entry["alone"][s][m] for m in entry["graph"][s]}
                for s in splits
            }
        agents[name] = entry
    return {"splits": list(splits), "agents": agents}


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The comparison as the command line prints it: one line per agent and split."""
    lines = []
    for split in comparison["splits"]:
        for name, entry in comparison["agents"].items():
            for metric, value in entry["graph"][split].items():
                if entry["role"] == "frozen":
                    lines.append(f"{split:5s} {metric}  {name} (frozen) {value:.4f}")
                    continue
                solo = entry["alone"][split][metric]
                better = improved(metric, value, solo)
                lines.append(
                    f"{split:5s} {metric}  {name}: alone {solo:.4f}, in the graph {value:.4f} "
                    f"({value - solo:+.4f}, {'better' if better else 'not better'})"
                )
    return lines
