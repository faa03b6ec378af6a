"""Evaluation: :func:`evaluate` scores every agent with a task, and the helpers that name the
metrics, choose the one that picks the best weights and tell whether a value beats the best.

:func:`~agora.train.fit` evaluates through :class:`~agora.runlog.RunLog`; all of these are
importable from :mod:`agora.train` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset

from agora.agent import Agent
from agora.data.download import DataError
from agora.graph import Graph
from agora.loaders import eval_loader, split_batch, to_device

Data = Dataset | DataLoader


@torch.no_grad()
def evaluate(
    graph: Graph,
    data: Data | Mapping[str, Data],
    *,
    batch_size: int = 1024,
    accelerator: Accelerator | None = None,
    agents: list[str] | None = None,
) -> dict[str, float]:
    """Metrics of every agent with a head and a task: RMSE (regression) or accuracy (classes).

    With per-learner data (``{learner: data}``) each learner is evaluated on its own data,
    and ``mean/rmse`` (``mean/accuracy``) averages the learners' metrics. A NaN or infinite
    regression target is an error (:class:`~agora.data.download.DataError`, naming the agent
    and how many), never a NaN metric.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("student", 4, 8)], message_dim=8).build(torch.randn(2, 4))
        >>> data = torch.utils.data.TensorDataset(torch.randn(10, 4), torch.randn(10))
        >>> sorted(evaluate(graph, data))
        ['student/loss', 'student/rmse']
        >>> sorted(evaluate(graph, {"student": data}))
        ['mean/rmse', 'student/loss', 'student/rmse']
    """
    if isinstance(data, Mapping):
        metrics: dict[str, float] = {}
        for name, part in data.items():
            metrics.update(
                evaluate(graph, part, batch_size=batch_size, accelerator=accelerator, agents=[name])
            )
        return {**metrics, **_means(metrics)}
    agents = [
        a
        for a in graph.agents.values()
        if a.task is not None and a.head is not None and (agents is None or a.name in agents)
    ]
    if not agents:
        return {}
    loader = eval_loader(data, batch_size)
    device = accelerator.device if accelerator is not None else next(graph.parameters()).device
    was_training = graph.training
    graph.eval()
    # per agent: the metric's sum, the loss's, and how many targets were not finite
    sums = {a.name: torch.zeros(3, dtype=torch.float64, device=device) for a in agents}
    count = torch.zeros((), dtype=torch.float64, device=device)
    for batch in loader:
        x, y = split_batch(batch)
        x, y = to_device(x, device), to_device(y, device)
        for agent in agents:
            y_pred = agent.read(x).y  # the agent's own forward: token agents pool real tokens only
            target = y[agent.name] if isinstance(y, Mapping) else y
            if accelerator is not None:
                y_pred, target = accelerator.gather_for_metrics((y_pred, target))
            if agent.task == "regression":
                error = (y_pred.reshape(target.shape).float() - target.float()).pow(2).sum()
                bad = (~torch.isfinite(target)).sum()
                sums[agent.name] += torch.stack([error, error, bad]).double()
            else:
                correct = (y_pred.argmax(-1) == target).sum()
                loss = torch.nn.functional.cross_entropy(y_pred.float(), target, reduction="sum")
                sums[agent.name] += torch.stack([correct, loss, loss.new_zeros(())]).double()
        count += target.shape[0]
    graph.train(was_training)
    metrics = {}
    for agent in agents:
        first, second, _ = (sums[agent.name] / count.clamp_min(1)).tolist()
        if bad := int(sums[agent.name][2]):
            raise DataError(
                f"evaluate: {bad} of {int(count)} targets of agent {agent.name!r} are NaN or "
                "infinite, which no metric can score; fix or drop those examples of the data"
            )
        if agent.task == "regression":
            metrics[f"{agent.name}/rmse"] = math.sqrt(first)
            metrics[f"{agent.name}/loss"] = second
        else:
            metrics[f"{agent.name}/accuracy"] = first
            metrics[f"{agent.name}/loss"] = second
    return metrics


def _means(metrics: Mapping[str, float]) -> dict[str, float]:
    means = {}
    for kind in ("rmse", "accuracy"):
        values = [v for k, v in metrics.items() if k.endswith(f"/{kind}")]
        if values:
            means[f"mean/{kind}"] = sum(values) / len(values)
    return means


def metric_names(graph: Graph, learners: list[str] | None = None) -> list[str]:
    """The metrics :func:`evaluate` reports for ``graph`` (``learners``: per-learner data).

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> metric_names(Graph([mlp_agent("student", 4, 8)]))
        ['student/loss', 'student/rmse']
    """
    agents = [
        a
        for a in graph.agents.values()
        if a.task is not None and a.head is not None and (learners is None or a.name in learners)
    ]
    names = [f"{a.name}/{'rmse' if a.task == 'regression' else 'accuracy'}" for a in agents]
    names += [f"{a.name}/loss" for a in agents]
    if learners is not None:
        names += [
            f"mean/{kind}" for kind in ("rmse", "accuracy") if any(n.endswith(kind) for n in names)
        ]
    return sorted(names)


def default_metric(graph: Graph, learners: list[str] | None = None) -> str | None:
    """The first trainable agent's metric; for per-learner eval data (``learners``), the
    learners' mean (``mean/rmse``), or the single learner's own."""
    if learners is not None:
        tasks = [graph.agents[name].task for name in learners]
        kind = "rmse" if "regression" in tasks else "accuracy"
        return f"{learners[0]}/{kind}" if len(learners) == 1 else f"mean/{kind}"
    for agent in graph.agents.values():
        if agent.trainable and agent.task is not None and agent.head is not None:
            return f"{agent.name}/{'rmse' if agent.task == 'regression' else 'accuracy'}"
    return None


def improved(metric: str, value: float, best: float | None) -> bool:
    """True when ``value`` beats ``best``: higher accuracy, lower anything else."""
    if best is None:
        return True
    return value > best if metric.endswith("accuracy") else value < best


def _unchanging(graph: Graph, metric: str) -> bool:
    """True when ``metric`` measures agents whose predictions cannot change (all fixed)."""
    name = metric.partition("/")[0]
    agents = [graph.agents[name]] if name in graph.agents else list(graph.agents.values())
    return all(_fixed(agent) for agent in agents)


def _fixed(agent: Agent) -> bool:
    """True when nothing the agent predicts with can train (a frozen backbone may still share
    a parameter with a trainable agent)."""
    return not any(p.requires_grad for p in agent.backbone_parameters())
