"""What each kind of edge adds to the loss, and the distances they measure with.

Every loss here takes tensors and returns a scalar, so they compose; :class:`Losses` keeps the
weighted sum and prints itself as ``L = 1.0 * task[student] + 0.1 * interact[student]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch.nn.functional as F
from einops import pack
from torch import Tensor, nn

if TYPE_CHECKING:
    from agora.agent import Agent, AgentOutput
    from agora.graph import Edge

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


# -- protocols ------------------------------------------------------------------------------


class Protocol:
    """What one edge ``learner -> tutor`` adds to the loss from round-0 outputs.

    Subclasses set ``name`` and ``weights`` (the names of the weights they use, with defaults)
    and implement :meth:`add_losses`. A protocol that needs a module of its own on the edge
    (FitNet's regressor) builds it in :meth:`build`.
    """

    name: str = ""
    weights: ClassVar[dict[str, float]] = {}

    def build(self, edge: Edge, learner: Agent, tutor: Agent, message_dim: int) -> nn.Module | None:
        """A module the edge needs for this protocol (e.g. FitNet's regressor), or ``None``."""
        return None

    def add_losses(
        self,
        losses: Losses,
        edge: Edge,
        learner: AgentOutput,
        tutor: AgentOutput,
        agents: tuple[Agent, Agent],
        adapter: nn.Module | None,
    ) -> None:
        """Add this protocol's terms for ``edge`` from both agents' round-0 outputs."""
        raise NotImplementedError


class Talk(Protocol):
    r"""Talking-model Distillation's round-0 terms: message and state consistency.

    .. math::
        L_{MC} = d(m_u, m_v), \qquad
        L_{SC} = d(\{s_u; e_u\}, D_u(m_v)) + d(\{s_v; e_v\}, D_v(m_u))

    The ``k`` talk rounds with their interact loss run in the
    :class:`~agora.orchestrator.Orchestrator`, since a learner with several tutors talks to
    all of them at once.
    """

    name = "talk"
    weights: ClassVar[dict[str, float]] = {
        "interact": 1.0,
        "message_consistency": 1.0,
        "state_consistency": 1.0,
    }

    def add_losses(self, losses, edge, learner, tutor, agents, adapter) -> None:
        """Add ``message_consistency[edge]`` and ``state_consistency[edge]``."""
        learner_agent, tutor_agent = agents
        mask, kind = learner.mask, edge.distance
        if edge.weights["message_consistency"]:
            losses.add(
                f"message_consistency[{edge.name}]",
                edge.weights["message_consistency"],
                distance(learner.m, tutor.m, kind, mask),
            )
        if edge.weights["state_consistency"]:
            decoded_by_learner = learner_agent.codec.decode(tutor.m)  # (s'_u, e'_u) = D_u(m_v)
            decoded_by_tutor = tutor_agent.codec.decode(learner.m)  # (s'_v, e'_v) = D_v(m_u)
            learner.decoded[tutor_agent.name] = decoded_by_tutor  # the first talk round's, too
            consistency = distance((learner.s, learner.e), decoded_by_learner, kind, mask)
            consistency = consistency + distance((tutor.s, tutor.e), decoded_by_tutor, kind, mask)
            losses.add(
                f"state_consistency[{edge.name}]", edge.weights["state_consistency"], consistency
            )


class Logit(Protocol):
    r"""Label distillation (Hinton et al., 2015): :math:`L = d(y_u, y_v)`.

    The tutor's predictions are a target: they carry no gradient back to the tutor.
    """

    name = "logit"
    weights: ClassVar[dict[str, float]] = {"logit": 1.0}

    def add_losses(self, losses, edge, learner, tutor, agents, adapter) -> None:
        """Add ``logit[edge]``: MSE for regression, softened KL for classes."""
        kind = edge.logit_distance or ("kl" if agents[0].task == "classification" else "mse")
        value = logit_distance(learner.y, tutor.y.detach(), kind, edge.temperature)
        losses.add(f"logit[{edge.name}]", edge.weights["logit"], value)


class Feature(Protocol):
    r"""Feature distillation in the message space (Heo et al., 2019):
    :math:`L = d(E_u(s_u, e_u), E_v(s_v, e_v))`.

    Both encoders learn; the tutor's states are a target and carry no gradient to its backbone.
    """

    name = "feature"
    weights: ClassVar[dict[str, float]] = {"feature": 1.0}

    def add_losses(self, losses, edge, learner, tutor, agents, adapter) -> None:
        """Add ``feature[edge]``: the distance between both messages."""
        tutor_message = tutor.m
        if tutor.s.requires_grad or tutor.e.requires_grad:  # a trainable tutor: states as targets
            tutor_message = agents[1].codec.encode(tutor.s.detach(), tutor.e.detach())
        value = distance(learner.m, tutor_message, edge.distance, learner.mask)
        losses.add(f"feature[{edge.name}]", edge.weights["feature"], value)


class FitNet(Protocol):
    r"""FitNet (Romero et al., 2014) as the learner decoding the tutor's raw states.

    .. math::
        L = d(\{s_u; e_u\}, D_u(P\{s_v; e_v\}))

    ``P`` is a learned linear map from the tutor's flattened states to the message size (the
    paper's identity "encoder", made to fit the learner's decoder when sizes differ).
    """

    name = "fitnet"
    weights: ClassVar[dict[str, float]] = {"fitnet": 1.0}

    def build(self, edge, learner, tutor, message_dim) -> nn.Module:
        """The regressor ``P``: the tutor's flattened states to the message size."""
        return nn.Linear(tutor.codec.state_dim, message_dim)

    def add_losses(self, losses, edge, learner, tutor, agents, adapter) -> None:
        """Add ``fitnet[edge]``: the learner's states against its decoding of ``P(tutor)``."""
        pattern = "b *" if learner.mask is None else "b t *"
        tutor_state, _ = pack([tutor.s.detach(), tutor.e.detach()], pattern)
        decoded = agents[0].codec.decode(adapter(tutor_state))
        value = distance((learner.s, learner.e), decoded, edge.distance, learner.mask)
        losses.add(f"fitnet[{edge.name}]", edge.weights["fitnet"], value)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (Talk(), Logit(), Feature(), FitNet())}
ALIASES: dict[str, tuple[str, ...]] = {"hybrid": ("logit", "feature")}


def all_weights() -> dict[str, float]:
    """Every loss weight name of every protocol, with its default."""
    return {k: v for protocol in PROTOCOLS.values() for k, v in protocol.weights.items()}
