"""Label distillation (Hinton et al., 2015)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from agora.errors import GraphError
from agora.losses import logit_distance
from agora.protocols.base import Link, Protocol


class Logit(Protocol):
    r"""LD: the learner's predictions follow the tutor's, :math:`L = d(y_u, y_v)`.

    ``d`` is the MSE for a regression learner and Hinton's softened KL,
    :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(y_v/T) \Vert \mathrm{softmax}(y_u/T))`, for a
    classifier (``edge.logit_distance`` overrides; ``edge.temperature`` is ``T``). The tutor's
    predictions are a target: they carry no gradient back to the tutor.
    """

    name = "logit"
    weights: ClassVar[dict[str, float]] = {"logit": 1.0}
    needs_head = True

    def loss(self, link: Link, distance: str) -> Tensor:
        """``d(y_learner, y_tutor)``, the tutor's side detached."""
        edge = link.edge
        kind = edge.logit_distance or ("kl" if link.learner.task == "classification" else "mse")
        y = link.learner_out.y
        if kind == "kl" and (y.dim() == 1 or y.shape[-1] == 1):
            raise GraphError(
                f"Edge {edge.name}: logit_distance 'kl' needs class logits, but "
                f"{edge.learner!r} predicts one value per example (a KL over one class is "
                "always 0); use 'mse' for a regression head",
                "logit_distance",
            )
        return logit_distance(link.learner_out.y, link.tutor_out.y.detach(), kind, edge.temperature)
