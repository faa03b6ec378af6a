"""How a learner with several tutors combines their replies in the message space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import einsum
from torch import Tensor, nn

AGGREGATIONS = ("mean", "weights", "router")


class Aggregation(nn.Module):
    r"""Combine ``n`` replies into one: :math:`r = \sum_i w_i\, r_i` with :math:`\sum_i w_i = 1`.

    Subclasses implement :meth:`weights` over every tutor the learner has (its talk edges,
    active or not). When a stage switches some of those edges off, ``tutors`` gives the
    positions of the active ones, whose weights are kept and renormalised to sum to one.
    The last weights used are kept in ``last_weights`` (detached) so a user can see which
    tutor each learner listens to; :meth:`Talk.report <agora.protocols.talk.Talk.report>` notes
    them in the step's losses, which the run log writes by tutor name.

    Shapes:
        - **replies**: ``[n, B, m_dim]`` or ``[n, B, T, m_dim]``, ``n`` the active tutors
        - **question**: the learner's message, ``[B, m_dim]`` or ``[B, T, m_dim]``
        - **weights**: ``[n]`` (one per tutor) or ``[B, n]`` / ``[B, T, n]`` (per example)
        - **output**: ``[B, m_dim]`` or ``[B, T, m_dim]``
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_weights: Tensor | None = None

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        """The weights of the ``n`` replies: ``[n]``, or per example ``[B, n]`` / ``[B, T, n]``."""
        raise NotImplementedError

    def forward(
        self, replies: Tensor, question: Tensor, tutors: Sequence[int] | None = None
    ) -> Tensor:
        weights = self.weights(replies, question)
        if tutors is not None:  # some tutors are switched off: share their weight out
            weights = weights[..., list(tutors)]
            weights = weights / weights.sum(-1, keepdim=True)
        self.last_weights = weights.detach()
        if weights.dim() == 1:
            return einsum(weights, replies, "n, n ... m -> ... m")
        return einsum(weights, replies, "... n, n ... m -> ... m")


class MeanAggregation(Aggregation):
    r"""Equal weights: :math:`r = \frac{1}{n}\sum_i r_i`."""

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        """``1 / n`` for every tutor."""
        n = replies.shape[0]
        return torch.full((n,), 1.0 / n, device=replies.device, dtype=replies.dtype)

    def forward(
        self, replies: Tensor, question: Tensor, tutors: Sequence[int] | None = None
    ) -> Tensor:
        self.last_weights = self.weights(replies, question)  # over the replies given
        return replies.mean(0)


class WeightedAggregation(Aggregation):
    r"""Learned per-tutor weights: :math:`w = \mathrm{softmax}(a)`, ``a`` a parameter ``[n]``."""

    def __init__(self, num_tutors: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_tutors))

    def reset_parameters(self) -> None:
        """Set every logit to zero: equal weights ``1 / n``."""
        nn.init.zeros_(self.logits)

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        """``softmax(logits)``, one learned weight per tutor."""
        return self.logits.softmax(0).to(replies.dtype)

    def extra_repr(self) -> str:
        return f"num_tutors={self.logits.numel()}"


class RouterAggregation(Aggregation):
    r"""A per-example gate on the learner's question (a mixture of tutors):
    :math:`w(m) = \mathrm{softmax}(W m + b)`.

    The gate is trained by the interact loss: the learner learns which tutor's reply helps
    it reconstruct its states, example by example.

    Example:
        >>> router = RouterAggregation(num_tutors=3, message_dim=4)
        >>> reply = router(torch.randn(3, 5, 4), torch.randn(5, 4))  # 3 tutors, 5 examples
        >>> tuple(router.last_weights.shape), torch.allclose(router.last_weights.sum(-1), torch.ones(5))
        ((5, 3), True)
    """

    def __init__(self, num_tutors: int, message_dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(message_dim, num_tutors)

    def reset_parameters(self) -> None:
        """Re-draw the gate's ``W`` and ``b`` (``nn.Linear``'s default initialisation)."""
        self.gate.reset_parameters()

    def weights(self, replies: Tensor, question: Tensor) -> Tensor:
        """``softmax(W m + b)`` of the learner's question, per example."""
        return self.gate(question).softmax(-1)  # [B, n] or [B, T, n]

    def extra_repr(self) -> str:
        return f"num_tutors={self.gate.out_features}"


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
