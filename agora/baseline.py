"""Did talking help? The students of a graph trained alone, and the comparison.

:func:`alone` copies a graph without its edges, so that the same students (same initial
weights) train with the same data, seed, budget and early stopping and nobody to learn from;
:func:`compare` evaluates both on the validation (and test) split and pairs the differences,
each with a paired bootstrap interval over the evaluation examples and its verdict, "better",
"worse" or "within noise"::

    solo = agora.alone(graph)                       # before training graph
    agora.fit(graph, train, valid, config)
    agora.fit(solo, train, valid, config)
    agora.compare(graph, solo, valid, test)         # what `agora run --baseline` writes

``agora run CONFIG --baseline`` does all of it and writes ``comparison.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from agora.graph import Graph
from agora.loaders import eval_loader, split_batch, to_device
from agora.train import evaluate, improved

RESAMPLES = 2000  # bootstrap resamples of the evaluation examples
LEVEL = 0.95  # the interval's coverage


def alone(graph: Graph) -> Graph:
    """The students of ``graph`` with nobody to learn from: a copy of it (the same initial
    weights, so that runs pair) without its edges. Train it with the same data and
    :class:`~agora.train.FitConfig`, and :func:`compare` tells whether the edges helped.
    The modules protocols built for the edges and learners (talk's aggregators) go with them.

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
    for protocol in [*solo.learner_modules]:
        del solo.learner_modules[protocol]
    solo._built = False if any(a.codec is None for a in solo.agents.values()) else graph.built
    return solo


def compare(
    graph: Graph,
    solo: Graph,
    valid: Any,
    test: Any = None,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Every agent with a task, in the graph and (for the students) alone: validation and
    test metrics, and for each student the difference graph − alone with its paired bootstrap
    interval (:func:`paired_interval`) and verdict (:func:`verdict`).

    A verdict of one run says whether these examples could have given the difference by
    chance; the seed's own luck (another initialisation, another order) is not in it.

    Args:
        graph (Graph): the trained graph.
        solo (Graph): its students, trained alone (:func:`alone`).
        valid (Dataset, DataLoader or dict): the validation data, or ``{learner: data}``.
        test (Dataset, DataLoader or dict, optional): the test data. (default: ``None``)
        resamples (int): bootstrap resamples. (default: ``2000``)
        level (float): the interval's coverage. (default: ``0.95``)
        seed (int): the resampling's seed. (default: ``0``)

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher")
        >>> data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16))
        >>> graph.build(data[:2][0])
        Graph(student -> teacher [talk, k=1])
        >>> result = compare(graph, alone(graph), data)
        >>> student = result["agents"]["student"]
        >>> sorted(result["agents"]), student["difference"]["valid"], student["verdict"]["valid"]
        (['student', 'teacher'], {'rmse': 0.0}, {'rmse': 'within noise'})
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
            entry["interval"], entry["verdict"] = {}, {}
            for split, data in splits.items():
                paired = example_scores(graph, data, name), example_scores(solo, data, name)
                entry["interval"][split], entry["verdict"][split] = {}, {}
                for metric in entry["graph"][split]:
                    low, high = paired_interval(*paired, metric, resamples, level, seed)
                    entry["interval"][split][metric] = [low, high]
                    entry["verdict"][split][metric] = verdict(metric, low, high)
        agents[name] = entry
    bootstrap = {"resamples": resamples, "level": level, "seed": seed, "over": "examples"}
    return {"splits": list(splits), "agents": agents, "bootstrap": bootstrap}


@torch.no_grad()
def example_scores(graph: Graph, data: Any, name: str, batch_size: int = 1024) -> Tensor:
    """Agent ``name``'s score of each example of ``data``, in the evaluation order: its squared
    error (regression; the RMSE is the root of their mean) or 1 where it is right (the
    accuracy is their mean).

    Shapes:
        - **output**: ``[N]``, float64 on the CPU
    """
    agent = graph.agents[name]
    data = data[name] if isinstance(data, Mapping) else data
    device = next(graph.parameters()).device
    was_training = graph.training
    graph.eval()
    scores = []
    for batch in eval_loader(data, batch_size):
        x, y = split_batch(batch)
        x, y = to_device(x, device), to_device(y, device)
        target = y[name] if isinstance(y, Mapping) else y
        y_pred = agent(x).y
        if agent.task == "regression":
            error = (y_pred.reshape(target.shape).double() - target.double()).pow(2)
            scores.append(error.reshape(len(target), -1).mean(-1))  # [B]
        else:
            scores.append((y_pred.argmax(-1) == target).double().reshape(len(target), -1).mean(-1))
    graph.train(was_training)
    return torch.cat(scores).cpu()


def paired_interval(
    ours: Tensor,
    theirs: Tensor,
    metric: str,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap interval of ``metric(ours) − metric(theirs)``: the examples are
    resampled with replacement, the same ones for both models (paired), so that what the two
    get right or wrong together cancels.

    Args:
        ours (Tensor): the graph's per-example scores (:func:`example_scores`), ``[N]``.
        theirs (Tensor): the lone student's, of the same examples in the same order, ``[N]``.
        metric (str): ``"rmse"`` (the root of the mean) or a mean such as ``"accuracy"``.
        resamples (int): bootstrap resamples. (default: ``2000``)
        level (float): the interval's coverage. (default: ``0.95``)
        seed (int): the resampling's seed. (default: ``0``)

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> alone = torch.rand(500, generator=g)
        >>> low, high = paired_interval(alone - 0.1, alone, "rmse")  # each error smaller
        >>> high < 0
        True
    """
    if ours.shape != theirs.shape or ours.dim() != 1 or len(ours) == 0:
        raise ValueError(
            f"paired_interval: needs the scores of the same examples, got {list(ours.shape)} "
            f"and {list(theirs.shape)}"
        )
    score = torch.sqrt if metric == "rmse" else (lambda mean: mean)
    g = torch.Generator().manual_seed(seed)
    step = max(1, (1 << 22) // len(ours))  # resamples at a time: at most 4M indices
    differences = []
    for start in range(0, resamples, step):
        rows = torch.randint(len(ours), (min(step, resamples - start), len(ours)), generator=g)
        differences.append(score(ours[rows].mean(1)) - score(theirs[rows].mean(1)))  # [r]
    tail = (1 - level) / 2
    bounds = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    low, high = torch.quantile(torch.cat(differences).double(), bounds).tolist()
    return low, high


def verdict(metric: str, low: float, high: float) -> str:
    """``"better"`` or ``"worse"`` when the interval of graph − alone lies on one side of 0
    (lower RMSE, higher accuracy is better), else ``"within noise"``.

    Example:
        >>> verdict("rmse", -0.03, -0.01), verdict("accuracy", -0.03, -0.01), verdict("rmse", -0.01, 0.02)
        ('better', 'worse', 'within noise')
    """
    if low <= 0 <= high:
        return "within noise"
    return "better" if improved(metric, low if low > 0 else high, 0.0) else "worse"


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The comparison as the command line prints it: one line per agent and split, each
    student's difference with its bootstrap interval and verdict."""
    level = comparison.get("bootstrap", {}).get("level", LEVEL)
    lines = []
    for split in comparison["splits"]:
        for name, entry in comparison["agents"].items():
            for metric, value in entry["graph"][split].items():
                if entry["role"] == "frozen":
                    lines.append(f"{split:5s} {metric}  {name} (frozen) {value:.4f}")
                    continue
                solo = entry["alone"][split][metric]
                low, high = entry["interval"][split][metric]
                lines.append(
                    f"{split:5s} {metric}  {name}: alone {solo:.4f}, in the graph {value:.4f} "
                    f"({value - solo:+.4f}, {level:.0%} [{low:+.4f}, {high:+.4f}]: "
                    f"{entry['verdict'][split][metric]})"
                )
    return lines
