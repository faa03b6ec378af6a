"""Relational knowledge distillation, distance-wise (Park et al., 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

from agora.protocols.base import Link, Protocol


def pairwise_distances(x: Tensor) -> Tensor:
    r"""Euclidean distances between the rows of ``x`` ``[B, D]``, over their mean:
    :math:`\psi(x)_{ij} = \lVert x_i - x_j \rVert / \mu`, with :math:`\mu` the mean over
    pairs :math:`i \ne j`.

    Example:
        >>> pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[0., 1.],
                [1., 0.]])
    """
    distances = torch.cdist(x, x)  # [B, B]
    pairs = x.shape[0] * (x.shape[0] - 1)
    mean = distances.sum() / max(pairs, 1)
    return distances / mean.clamp_min(1e-12)


def _per_example(e: Tensor, mask: Tensor | None) -> Tensor:
    """``e`` as one vector per example: token states averaged over real tokens."""
    if mask is None:
        return rearrange(e, "b ... -> b (...)")
    weights = rearrange(mask.to(e.dtype), "b t -> b t 1")
    pooled = reduce(e * weights, "b t ... -> b ...", "sum") / reduce(
        weights, "b t 1 -> b 1", "sum"
    ).clamp_min(1)
    return rearrange(pooled, "b ... -> b (...)")


class Relational(Protocol):
    r"""RKD-D: the learner keeps the tutor's *geometry* of a batch, not its coordinates.

    .. math::
        L = \frac{1}{B^2} \sum_{i, j} \ell_\delta\big(\psi(e_u)_{ij},\ \psi(e_v)_{ij}\big)

    with :math:`\psi` the normalised pairwise distances of the higher-level states
    (:func:`pairwise_distances`) and :math:`\ell_\delta` the Huber loss (``δ = 1``). Learner
    and tutor may have states of any widths: only distances between examples are compared.
    Token states are first averaged over real tokens. The tutor's states are a target.
    """

    name = "relational"
    weights: ClassVar[dict[str, float]] = {"relational": 1.0}

    def loss(self, link: Link, distance: str) -> Tensor:
        """The Huber loss between both agents' normalised distance matrices of the batch."""
        mask = link.learner_out.mask
        learner = pairwise_distances(_per_example(link.learner_out.e, mask))
        with torch.no_grad():
            tutor = pairwise_distances(_per_example(link.tutor_out.e.detach(), mask))
        return F.smooth_l1_loss(learner, tutor)
