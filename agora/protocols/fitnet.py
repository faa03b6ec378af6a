"""FitNet (Romero et al., 2014): the learner's states regress the tutor's."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from agora.losses import distance
from agora.protocols.base import Link, Protocol


class FitNet(Protocol):
    r"""FitNet as the learner decoding the tutor's raw states.

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

    def loss(self, link: Link, kind: str) -> Tensor:
        """The learner's states against its decoding of ``P(tutor's states)``."""
        learner, tutor = link.learner_out, link.tutor_out
        tutor_state = link.tutor.codec.pack_states(tutor.s.detach(), tutor.e.detach())
        decoded = link.learner.codec.decode(link.module(tutor_state))
        return distance((learner.s, learner.e), decoded, kind, learner.mask)
