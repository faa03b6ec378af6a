"""The distances protocols measure with, and the weighted sum of named loss terms.

Every loss here takes tensors and returns a scalar, so they compose; :class:`Losses` keeps the
weighted sum and prints itself as ``L = 1.0 * task[student] + 0.1 * interact[student]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from einops import pack
from torch import Tensor

DISTANCES = ("l2", "cosine")
LOGIT_DISTANCES = ("mse", "kl")


# -- distances ------------------------------------------------------------------------------


def distance(
    a: Tensor | Sequence[Tensor],
    b: Tensor | Sequence[Tensor],
    kind: str = "l2",
    mask: Tensor | None = None,
) -> Tensor:
    r"""Distance between two states (or messages), averaged over examples and real tokens.

    Several tensors on a side are flattened and concatenated first: ``d({s; e}, {s'; e'})``.

    .. math::
        d_{l2}(a, b) = \frac{1}{N}\sum_n \frac{1}{D}\lVert a_n - b_n\rVert^2, \qquad
        d_{cos}(a, b) = \frac{1}{N}\sum_n \big(1 - \cos(a_n, b_n)\big)

    where ``n`` runs over examples, or over the real tokens when ``mask`` is given.

    Args:
        a (Tensor or sequence of Tensor): ``[B, ...]`` (or ``[B, T, ...]`` with ``mask``), or
            several such tensors, flattened and concatenated.
        b (Tensor or sequence of Tensor): the other side, shaped as ``a``.
        kind (str): ``"l2"`` (the paper's mean squared error) or ``"cosine"``.
            (default: ``"l2"``)
        mask (Tensor, optional): ``[B, T]``, ``True`` for real tokens; padding never counts.

    Example:
        >>> distance(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(1.)
    """
    pattern = "b *" if mask is None else "b t *"
    a, _ = pack([a] if isinstance(a, Tensor) else list(a), pattern)  # [B, D] or [B, T, D]
    b, _ = pack([b] if isinstance(b, Tensor) else list(b), pattern)
    if kind == "l2":
        per_item = (a - b).pow(2).mean(-1)  # [B] or [B, T]
    elif kind == "cosine":
        per_item = 1 - F.cosine_similarity(a, b, dim=-1)
    else:
        raise ValueError(f"Unknown distance {kind!r}; choose one of {DISTANCES}")
    if mask is None:
        return per_item.mean()
    mask = mask.to(per_item.dtype)
    return (per_item * mask).sum() / mask.sum().clamp_min(1)


def logit_distance(
    y_learner: Tensor, y_tutor: Tensor, kind: str = "mse", temperature: float = 1.0
) -> Tensor:
    r"""Distance between predictions: MSE for ratings, or Hinton's softened KL for classes.

    .. math::
        d_{KL} = T^2 \cdot \frac{1}{B}\sum_b \mathrm{KL}\big(\mathrm{softmax}(y^{tutor}_b / T)
        \,\Vert\, \mathrm{softmax}(y^{learner}_b / T)\big)

    Example:
        >>> logit_distance(torch.zeros(2, 3), torch.zeros(2, 3), kind="kl")
        tensor(0.)
    """
    if kind == "mse":
        if y_learner.shape != y_tutor.shape:
            y_tutor = y_tutor.reshape(y_learner.shape)
        return F.mse_loss(y_learner, y_tutor)
    if kind == "kl":
        log_p_learner = F.log_softmax(y_learner / temperature, dim=-1)
        log_p_tutor = F.log_softmax(y_tutor / temperature, dim=-1)
        kl = F.kl_div(log_p_learner, log_p_tutor, reduction="batchmean", log_target=True)
        return kl * temperature**2
    raise ValueError(f"Unknown logit distance {kind!r}; choose one of {LOGIT_DISTANCES}")


# -- the weighted sum of named terms ----------------------------------------------------------


class Losses:
    """Named loss terms with their weights; ``total`` is the weighted sum.

    A term added twice under one name (the interact loss of each round) accumulates.

    Example:
        >>> losses = Losses()
        >>> losses.add("task[student]", 1.0, torch.tensor(2.0))
        >>> losses.add("interact[student]", 0.5, torch.tensor(4.0))
        >>> losses
        L = 1.0 * task[student] + 0.5 * interact[student]
        >>> losses.total
        tensor(4.)
    """

    def __init__(self) -> None:
        self.terms: dict[str, tuple[float, Tensor]] = {}

    def add(self, name: str, weight: float, value: Tensor) -> None:
        """Add ``weight * value`` under ``name``; a second value under one name adds up."""
        if name in self.terms:
            weight, previous = self.terms[name][0], self.terms[name][1]
            value = previous + value
        self.terms[name] = (weight, value)

    @property
    def total(self) -> Tensor:
        """The weighted sum of every term: the loss to backpropagate."""
        return sum(weight * value for weight, value in self.terms.values())  # type: ignore[return-value]

    def values(self) -> dict[str, Tensor]:
        """The unweighted terms, detached, for logging."""
        return {name: value.detach() for name, (_, value) in self.terms.items()}

    def __repr__(self) -> str:
        return "L = " + " + ".join(f"{w} * {name}" for name, (w, _) in self.terms.items())
