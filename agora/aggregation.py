"""How a learner with several tutors combines their replies in the message space."""

from __future__ import annotations

import torch
from einops import einsum
from torch import Tensor, nn

AGGREGATIONS = ("mean", "weights", "router")


class Aggregation(nn.Module):
    r"""Combine ``n`` replies into one: :math:`r = \sum_i w_i\, r_i` with :math:`\sum_i w_i = 1`.

    Subclasses implement :meth:`weights`; the last weights used are kept in ``last_weights``
    (detached) so a user can see which tutor each learner listens to.

    Shapes:
        - **replies**: ``[n, B, m_dim]`` or ``[n, B, T, m_dim]``
        - **question**: the learner's message, ``[B, m_dim]`` or ``[B, T, m_dim]``
        - **weights**: ``[n]`` (one per tutor) or ``[B, n]`` / ``[B, T, n]`` (per example)
        - **output**: ``[B, m_dim]`` or ``[B, T, m_dim]``
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_weights: Tensor | None = None

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, replies: Tensor, question: Tensor) -> Tensor:
        weights = self.weights(replies, question)
        self.last_weights = weights.detach()
        if weights.dim() == 1:
            return einsum(weights, replies, "n, n ... m -> ... m")
        return einsum(weights, replies, "... n, n ... m -> ... m")


class MeanAggregation(Aggregation):
    r"""Equal weights: :math:`r = \frac{1}{n}\sum_i r_i`."""

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        n = replies.shape[0]
        return torch.full((n,), 1.0 / n, device=replies.device, dtype=replies.dtype)

    def forward(self, replies: Tensor, question: Tensor) -> Tensor:
        self.last_weights = self.weights(replies, question)
        return replies.mean(0)


class WeightedAggregation(Aggregation):
    r"""Learned per-tutor weights: :math:`w = \mathrm{softmax}(a)`, ``a`` a parameter ``[n]``."""

    def __init__(self, num_tutors: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_tutors))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.logits)

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        return self.logits.softmax(0).to(replies.dtype)

    def extra_repr(self) -> str:
        return f"num_tutors={self.logits.numel()}"


class RouterAggregation(Aggregation):
    r"""A per-example gate on the learner's question (a mixture of tutors):
    :math:`w(m) = \mathrm{softmax}(W m + b)`."""

    def __init__(self, num_tutors: int, message_dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(message_dim, num_tutors)

    def reset_parameters(self) -> None:
        self.gate.reset_parameters()

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        return self.gate(question).softmax(-1)  # [B, n] or [B, T, n]


def make_aggregation(kind: str | nn.Module, num_tutors: int, message_dim: int) -> nn.Module:
    """An aggregation by name (``"mean"``, ``"weights"``, ``"router"``) or a module as given.

    Example:
        >>> agg = make_aggregation("weights", num_tutors=2, message_dim=4)
        >>> agg(torch.ones(2, 3, 4), torch.zeros(3, 4)).shape
        torch.Size([3, 4])
    """
    if isinstance(kind, nn.Module):
        return kind
    if kind == "mean":
        return MeanAggregation()
    if kind == "weights":
        return WeightedAggregation(num_tutors)
    if kind == "router":
        return RouterAggregation(num_tutors, message_dim)
    raise ValueError(f"Unknown aggregation {kind!r}; choose one of {AGGREGATIONS} or pass a module")
