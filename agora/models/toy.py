"""A toy MLP agent for tiny configs, tests and examples."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from torch import nn

from agora.agent import Agent, Task


def mlp_agent(
    name: str,
    d_in: int,
    width: int,
    depth: int = 1,
    out: int = 1,
    task: Task | None = "regression",
    **agent_kwargs: Any,
) -> Agent:
    """An MLP split into ``lower: x -> s [B, width]``, ``upper: s -> e [B, width // 2]`` and
    ``head: e -> y [B, out]``.

    ``lower`` is ``Linear + ReLU`` to ``width``; ``upper`` is ``depth`` times ``Linear + ReLU``,
    the last one down to ``width // 2``; ``head`` is one ``Linear``. Configs name it as
    ``agora.models.toy:mlp_agent``.

    Args:
        name (str): the agent's name.
        d_in (int): input features.
        width (int): width of ``s`` (``e`` has ``width // 2``); at least 2.
        depth (int): layers in ``upper``. (default: ``1``)
        out (int): outputs of the head: 1 for regression, classes for classification.
            (default: ``1``)
        task (str, optional): the agent's task loss. (default: ``"regression"``)
        **agent_kwargs: passed to :class:`~agora.agent.Agent` (``frozen``, ``task_weight``...).

    Example:
        >>> import torch
        >>> agent = mlp_agent("student", d_in=8, width=16, depth=2)
        >>> out = agent(torch.randn(3, 8))
        >>> tuple(out.s.shape), tuple(out.e.shape), tuple(out.y.shape)
        ((3, 16), (3, 8), (3, 1))
    """
    if width < 2 or depth < 1 or d_in < 1 or out < 1:
        raise ValueError(
            f"mlp_agent {name!r}: need d_in >= 1, width >= 2, depth >= 1 and out >= 1; got "
            f"d_in={d_in}, width={width}, depth={depth}, out={out}"
        )
    lower = nn.Sequential(nn.Linear(d_in, width), nn.ReLU())
    widths = [width] * depth + [width // 2]
    upper = nn.Sequential(
        *(
            layer
            for w_in, w_out in pairwise(widths)
            for layer in (nn.Linear(w_in, w_out), nn.ReLU())
        )
    )
    head = nn.Linear(width // 2, out)
    return Agent(name, lower, upper, head, task=task, **agent_kwargs)
