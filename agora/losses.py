"""The distances protocols measure with, the weighted sum of named loss terms, and the
balancer that makes a distillation weight mean its strength relative to the task.

Every loss here takes tensors and returns a scalar, so they compose; :class:`Losses` keeps the
weighted sum and prints itself as ``L = 1.0 * task[student] + 0.1 * interact[student]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


# -- balancing each distillation term against its learner's task ------------------------------


def _learner(term: str) -> str:
    """The agent a term trains: ``task[student]`` and ``interact[student]`` -> ``student``,
    ``logit[student->teacher]`` -> ``student``."""
    return term[term.index("[") + 1 : -1].split("->")[0]


class LossBalancer:
    r"""Rescales each distillation term to its learner's task loss, so that a weight says how
    strong the term is relative to the task, whatever the term's natural scale.

    .. math::
        L = \sum_u w^{task}_u L^{task}_u
            + \sum_i w_i \, \frac{\bar L^{task}_{u(i)}}{\bar L_i} \, L_i

    where :math:`u(i)` is the learner term :math:`i` trains, and :math:`\bar L` are running
    means of the terms' values (detached: the scales carry no gradient),
    :math:`\bar L \leftarrow \beta \bar L + (1 - \beta) L`, started at the first value. A
    term weighted 1 is then as large as its learner's task loss (with ``momentum=0`` the
    scale is the current batch's ratio, as NVIDIA ModelOpt's dynamic distillation loss scale
    does). Terms of a learner without a task term keep their raw scale. The scales update in
    training only; :attr:`scales` holds the last ones (``metrics.jsonl`` logs them as
    ``scale/<term>``).

    Args:
        momentum (float): :math:`\beta`, in ``[0, 1)``. (default: ``0.98``)

    Example:
        >>> losses = Losses()
        >>> losses.add("task[student]", 1.0, torch.tensor(2.0))
        >>> losses.add("interact[student]", 0.5, torch.tensor(0.01))
        >>> balancer = LossBalancer()
        >>> balancer(losses)  # 2.0 + 0.5 * (2.0 / 0.01) * 0.01
        tensor(3.)
        >>> round(balancer.scales["interact[student]"], 3)
        200.0
    """

    def __init__(self, momentum: float = 0.98) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"LossBalancer: momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.means: dict[str, float] = {}
        self.scales: dict[str, float] = {}

    def __call__(self, losses: Losses, *, update: bool = True) -> Tensor:
        """The balanced total of ``losses``; ``update`` (training) moves the running means."""
        if update:
            for name, (_, value) in losses.terms.items():
                value = float(value.detach().float())
                before = self.means.get(name)
                self.means[name] = value if before is None else (
                    self.momentum * before + (1 - self.momentum) * value
                )  # fmt: skip
        total = 0
        for name, (weight, value) in losses.terms.items():
            task = self.means.get(f"task[{_learner(name)}]")
            if name.startswith("task[") or not task or not self.means.get(name):
                total = total + weight * value
                continue
            self.scales[name] = task / self.means[name]
            total = total + weight * self.scales[name] * value
        return total  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """The running means, saved with a checkpoint so that a resumed run scales as before."""
        return {"means": dict(self.means)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s running means."""
        self.means = dict(state["means"])
