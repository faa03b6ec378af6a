"""Feature distillation in the message space (Heo et al., 2019), and Hybrid (logit + feature)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from agora.losses import distance
from agora.protocols.base import ALIASES, Link, Protocol


class Feature(Protocol):
    r"""FD: both agents' messages meet, :math:`L = d(E_u(s_u, e_u), E_v(s_v, e_v))`.

    Both encoders learn; a trainable tutor's states are a target and carry no gradient to its
    backbone.
    """

    name = "feature"
    weights: ClassVar[dict[str, float]] = {"feature": 1.0}
    speaks = True

    def loss(self, link: Link, kind: str) -> Tensor:
        """The distance between the learner's and the tutor's round-0 messages."""
        tutor = link.tutor_out
        tutor_message = tutor.m
        if tutor.s.requires_grad or tutor.e.requires_grad:  # a trainable tutor: states as targets
            tutor_message = link.tutor.codec.encode(tutor.s.detach(), tutor.e.detach())
        return distance(link.learner_out.m, tutor_message, kind, link.learner_out.mask)


# Hybrid distillation (Zhu & Wang, 2021): label and feature distillation on one edge
ALIASES["hybrid"] = ("logit", "feature")
