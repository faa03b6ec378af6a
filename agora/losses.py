"""The distances protocols measure with, the weighted sum of named loss terms, and the
balancer that makes a distillation weight mean its strength relative to the task.

Every loss here takes tensors and returns a scalar, so they compose; :class:`Losses` keeps the
weighted sum and prints itself as ``L = 1.0 * task[student] + 0.1 * interact[student]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
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
    a = [a] if isinstance(a, Tensor) else list(a)
    b = [b] if isinstance(b, Tensor) else list(b)
    if kind == "l2" and mask is None and all(x.shape == y.shape for x, y in zip(a, b)):
        if len(a) == 1:  # every example holds as many values: the mean over all of them
            return F.mse_loss(a[0], b[0])
        total = sum(F.mse_loss(x, y, reduction="sum") for x, y in zip(a, b))
        return total / sum(x.numel() for x in a)
    a_flat, b_flat = _flat(a, mask), _flat(b, mask)  # [B, D] or [B, T, D]
    if kind == "l2":
        per_item = (a_flat - b_flat).pow(2).mean(-1)  # [B] or [B, T]
    elif kind == "cosine":
        per_item = 1 - F.cosine_similarity(a_flat, b_flat, dim=-1)
    else:
        raise ValueError(f"Unknown distance {kind!r}; choose one of {DISTANCES}")
    if mask is None:
        return per_item.mean()
    mask = mask.to(per_item.dtype)
    return (per_item * mask).sum() / mask.sum().clamp_min(1)


def _flat(parts: list[Tensor], mask: Tensor | None) -> Tensor:
    """The tensors flattened after their leading axes (``[B]``, or ``[B, T]`` with a mask) and
    concatenated: ``[B, D]`` or ``[B, T, D]``."""
    lead = 1 if mask is None else 2
    flat = [t.flatten(lead) if t.dim() > lead else t.unsqueeze(-1) for t in parts]
    return flat[0] if len(flat) == 1 else torch.cat(flat, -1)


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


class Owner(NamedTuple):
    """Whom a loss term trains: its ``learner``, the ``edge`` it belongs to (``None`` for a
    learner's own term, such as its task or its interact term), and whether it is the
    learner's ``task`` term."""

    learner: str
    edge: str | None = None
    task: bool = False


class Losses:
    """Named loss terms with their weights and owners; ``total`` is the weighted sum.

    A term added twice under one name (the interact loss of each round) accumulates. Each term
    carries its :class:`Owner` (:attr:`owners`), so that the balancer and the run log know
    whom it trains without reading its name; :attr:`notes` hold values a protocol reports for
    the log (how a learner weighed its tutors' replies), not terms of the loss.

    Example:
        >>> losses = Losses()
        >>> losses.add("task[student]", 1.0, torch.tensor(2.0), learner="student", task=True)
        >>> losses.add("interact[student]", 0.5, torch.tensor(4.0), learner="student")
        >>> losses
        L = 1.0 * task[student] + 0.5 * interact[student]
        >>> losses.total
        tensor(4.)
        >>> losses.owners["interact[student]"]
        Owner(learner='student', edge=None, task=False)
    """

    def __init__(self) -> None:
        self.terms: dict[str, tuple[float, Tensor]] = {}
        self.owners: dict[str, Owner] = {}
        self.notes: dict[str, Tensor] = {}

    def add(
        self,
        name: str,
        weight: float,
        value: Tensor,
        *,
        learner: str,
        edge: str | None = None,
        task: bool = False,
    ) -> None:
        """Add ``weight * value`` under ``name``, a term that trains ``learner`` (on ``edge``,
        or its own when ``None``; its task term when ``task``); a second value under one name
        adds up."""
        if name in self.terms:
            weight, previous = self.terms[name][0], self.terms[name][1]
            value = previous + value
        self.terms[name] = (weight, value)
        self.owners[name] = Owner(learner, edge, task)

    def note(self, name: str, value: Tensor) -> None:
        """Report ``value`` (detached) to the log under ``name``; a later note replaces it."""
        self.notes[name] = value.detach()

    def extend(self, other: Losses, scale: float = 1.0) -> None:
        """Add every term of ``other``, its value times ``scale``, under the same name, weight
        and owner (the labelled and the transfer part of a step, each by its share); its notes
        are pooled by the same shares."""
        for name, (weight, value) in other.terms.items():
            self.add(name, weight, scale * value, **other.owners[name]._asdict())
        for name, value in other.notes.items():
            self.notes[name] = self.notes.get(name, 0) + scale * value

    def task_term(self, learner: str) -> str | None:
        """The name of ``learner``'s task term, ``None`` when it has none in this step."""
        return next((n for n, o in self.owners.items() if o.task and o.learner == learner), None)

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


def gradient(value: Tensor, params: Sequence[Tensor]) -> list[Tensor | None]:
    """The gradient of the scalar ``value`` on each of ``params`` (``None`` where it does not
    reach), keeping the autograd graph for the next term and leaving ``.grad`` alone."""
    if not value.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(value, params, retain_graph=True, allow_unused=True))


def gradient_dot(a: Sequence[Tensor | None], b: Sequence[Tensor | None]) -> Tensor:
    """The dot product of two gradients on the same parameters, in float32 (a ``None`` part
    counts as zeros): ``gradient_dot(g, g).sqrt()`` is the norm of ``g``."""
    parts = [(u.float() * v.float()).sum() for u, v in zip(a, b, strict=True)
             if u is not None and v is not None]  # fmt: skip
    return torch.stack(parts).sum() if parts else torch.zeros(())


class LossBalancer:
    r"""Rescales each distillation term so that its weight says how hard it pulls on its
    learner relative to the learner's task term, whatever the term's natural scale.

    A term's pull is the norm of its gradient on its learner's backbone parameters,
    :math:`G_i = \lVert \nabla_{\theta_{u(i)}} L_i \rVert`, where :math:`u(i)` is the agent
    term :math:`i` trains. The balanced loss is

    .. math::
        L = \sum_u w^{task}_u L^{task}_u
            + \sum_i w_i \, \frac{w^{task}_{u(i)} \, \bar G^{task}_{u(i)}}{\bar G_i} \, L_i

    so that a term weighted :math:`w_i` pulls :math:`w_i` times as hard as the task: 1 is "as
    strong as the task", for any model, state width or data. The :math:`\bar G` are running
    means, :math:`\bar G \leftarrow \beta \bar G + (1 - \beta) G`, started at the first
    measurement; the norms are measured every ``every`` training calls (one extra backward
    pass per term, with its learner's parameters only) and averaged over processes when
    ``reduce`` is given. The scales carry no gradient. Terms whose learner has no task term,
    or whose gradient does not reach its learner's backbone (a codec-only term), keep their
    raw scale. :attr:`scales` holds the current scales (``metrics.jsonl`` logs them as
    ``scale/<term>``).

    Args:
        parameters: each learner's trainable backbone parameters, by agent name
            (:meth:`Graph.backbone_parameters <agora.graph.Graph.backbone_parameters>`).
        momentum (float): :math:`\beta`, in ``[0, 1)``. (default: ``0.9``)
        every (int): measure the gradient norms every this many training calls. (default: ``10``)
        reduce: averages a tensor over processes (e.g. ``lambda t: accelerator.reduce(t,
            "mean")``) so that every process scales alike; ``None`` in a single process.

    Example:
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> losses = Losses()
        >>> losses.add("task[student]", 1.0, (w**2).sum(), learner="student", task=True)
        >>> losses.add("interact[student]", 0.5, 0.01 * w.sum(), learner="student")
        >>> balancer = LossBalancer({"student": [w]})
        >>> total = balancer(losses)
        >>> round(balancer.scales["interact[student]"], 1)  # 4.47 / 0.0141
        316.2
        >>> torch.autograd.grad(total, w)[0]  # the talk term now pulls half as hard as the task
        tensor([ 3.5811, -2.4189])
    """

    def __init__(
        self,
        parameters: Mapping[str, Sequence[Tensor]],
        momentum: float = 0.9,
        every: int = 10,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"LossBalancer: momentum must be in [0, 1), got {momentum}")
        if every < 1:
            raise ValueError(f"LossBalancer: every must be >= 1, got {every}")
        self.parameters = {name: list(ps) for name, ps in parameters.items() if ps}
        self.momentum, self.every, self.reduce = momentum, every, reduce
        self.means: dict[str, float] = {}  # running mean of each term's gradient norm
        self.calls = 0
        self.scales: dict[str, float] = {}

    def __call__(self, losses: Losses, *, update: bool = True) -> Tensor:
        """The balanced total of ``losses``; ``update`` (training) measures the gradient norms
        every :attr:`every` calls and moves their running means."""
        if update:
            if self.calls % self.every == 0:
                self._update(self.norms(losses))
            self.calls += 1
        total = 0
        for name, (weight, value) in losses.terms.items():
            owner = losses.owners[name]
            task_name = losses.task_term(owner.learner)
            task_weight = losses.terms[task_name][0] if task_name is not None else 0.0
            task, own = self.means.get(task_name or ""), self.means.get(name)
            if owner.task or not task or not own:
                total = total + weight * value
                continue
            self.scales[name] = task_weight * task / own
            total = total + weight * self.scales[name] * value
        return total  # type: ignore[return-value]

    def norms(self, losses: Losses) -> dict[str, float]:
        """The norm of each term's (unweighted) gradient on its learner's parameters; terms of
        an agent without parameters here are left out, a term that does not reach them is 0."""
        names = [n for n in losses.terms if losses.owners[n].learner in self.parameters]
        if not names:
            return {}
        norms = []
        for name in names:
            value = losses.terms[name][1]
            grads = gradient(value, self.parameters[losses.owners[name].learner])
            norms.append(gradient_dot(grads, grads).sqrt().to(value.device))
        stacked = torch.stack(norms).detach()
        if self.reduce is not None:
            stacked = self.reduce(stacked)
        return dict(zip(names, stacked.tolist(), strict=True))

    def _update(self, norms: Mapping[str, float]) -> None:
        for name, norm in norms.items():
            if not math.isfinite(norm) or norm <= 0:  # unreached, or an fp16 underflow
                continue
            before = self.means.get(name)
            self.means[name] = norm if before is None else (
                self.momentum * before + (1 - self.momentum) * norm
            )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """The running means and the call count, saved with a checkpoint so that a resumed run
        scales as before."""
        return {"means": dict(self.means), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s running means and call count."""
        if "calls" not in state:
            raise ValueError(
                "LossBalancer: this state has no call count: it was saved by the earlier balancer, "
                "whose means are of loss values, not gradient norms; start the run afresh"
            )
        means, calls = state["means"], state["calls"]
        if not isinstance(means, Mapping) or not isinstance(calls, int) or calls < 0:
            raise ValueError(
                f"LossBalancer: a state of means {means!r} and calls {calls!r} is not one it "
                "saves (a mapping of term -> mean, and a count >= 0); start the run afresh"
            )
        for term, mean in means.items():
            if isinstance(mean, bool) or not isinstance(mean, (int, float)):
                mean = None
            if mean is None or not math.isfinite(mean) or mean <= 0:
                raise ValueError(
                    f"LossBalancer: the running mean of {term!r} is {means[term]!r}, but a "
                    "gradient norm it averages is finite and > 0: the state is corrupted; "
                    "start the run afresh"
                )
        self.means = {term: float(mean) for term, mean in means.items()}
        self.calls = calls
