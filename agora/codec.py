"""Codecs: an agent's encoder into the shared message space and decoder back out of it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from einops import pack, unpack
from torch import Tensor, nn


class Codec(nn.Module):
    r"""The pair encoder / decoder between an agent's states and the message space.

    .. math::
        m = E(\{s; e\}), \qquad \{s'; e'\} = D(m)

    ``s`` and ``e`` are flattened and concatenated (``einops.pack``) before the encoder, and the
    decoder's output is split and reshaped back (``einops.unpack``), so ``s'`` has exactly the
    shape the agent's ``upper`` accepts. With ``tokens=True`` the codec works per token: states
    ``[B, T, ...]`` map to messages ``[B, T, m_dim]``.

    Subclasses choose the networks by overriding :meth:`build_encoder` and
    :meth:`build_decoder`.

    Args:
        s_shape (tuple): trailing shape of ``s`` (after ``B``, or ``B, T`` for tokens).
        e_shape (tuple): trailing shape of ``e``.
        message_dim (int): size of the message space ``m_dim``.
        tokens (bool): per-token messages. (default: ``False``)

    Shapes:
        - **encode**: ``s [B, *s_shape]``, ``e [B, *e_shape]`` -> ``m [B, m_dim]``
          (tokens: ``[B, T, *s_shape]``, ``[B, T, *e_shape]`` -> ``[B, T, m_dim]``)
        - **decode**: the reverse.
    """

    def __init__(
        self,
        s_shape: Sequence[int],
        e_shape: Sequence[int],
        message_dim: int,
        *,
        tokens: bool = False,
    ) -> None:
        super().__init__()
        self.s_shape, self.e_shape = tuple(s_shape), tuple(e_shape)
        self.message_dim = int(message_dim)
        self.tokens = tokens
        self.pattern = "b t *" if tokens else "b *"
        self.state_dim = math.prod(self.s_shape) + math.prod(self.e_shape)
        self.owner = "?"  # the agent's name, for error messages; set by Graph.build
        self.encoder = self.build_encoder(self.state_dim, self.message_dim)
        self.decoder = self.build_decoder(self.message_dim, self.state_dim)

    def build_encoder(self, state_dim: int, message_dim: int) -> nn.Module:
        """The network ``[..., state_dim] -> [..., message_dim]``; subclasses choose it."""
        raise NotImplementedError

    def build_decoder(self, message_dim: int, state_dim: int) -> nn.Module:
        """The network ``[..., message_dim] -> [..., state_dim]``; subclasses choose it."""
        raise NotImplementedError

    def encode(self, s: Tensor, e: Tensor) -> Tensor:
        """``m = E({s; e})``: flatten and concatenate the states, encode; checks their shapes."""
        lead = 2 if self.tokens else 1
        if tuple(s.shape[lead:]) != self.s_shape or tuple(e.shape[lead:]) != self.e_shape:
            raise ValueError(
                f"Agent {self.owner!r}: codec expects s {_fmt(self.s_shape, self.tokens)} and "
                f"e {_fmt(self.e_shape, self.tokens)}, got s {list(s.shape)} and e {list(e.shape)}"
            )
        state, _ = pack([s, e], self.pattern)  # [B, d_s + d_e] or [B, T, d_s + d_e]
        return self.encoder(state)  # [B, m_dim] or [B, T, m_dim]

    def decode(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """``(s', e') = D(m)``: decode, split and reshape to the agent's state shapes."""
        if m.shape[-1] != self.message_dim:
            raise ValueError(
                f"Agent {self.owner!r}: decoder expects messages of size {self.message_dim}, "
                f"got {list(m.shape)}"
            )
        state = self.decoder(m)  # [B, d_s + d_e]
        s, e = unpack(state, [self.s_shape, self.e_shape], self.pattern)
        return s, e

    def forward(self, s: Tensor, e: Tensor) -> Tensor:
        return self.encode(s, e)

    def reset_parameters(self) -> None:
        """Re-initialise every submodule that has ``reset_parameters`` (the encoder's and the
        decoder's layers)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        kind = "tokens, " if self.tokens else ""
        return f"{kind}s={list(self.s_shape)}, e={list(self.e_shape)}, m_dim={self.message_dim}"


def _fmt(shape: tuple[int, ...], tokens: bool) -> str:
    return str(["B", "T", *shape] if tokens else ["B", *shape])


class MLPCodec(Codec):
    r"""The paper's codec: dense-ReLU-dense, with dropout, and LayerNorm on the message.

    .. math::
        E(z) = \mathrm{LN}(W_2\,\mathrm{drop}(\mathrm{relu}(W_1 z))), \qquad
        D(m) = W_4\,\mathrm{drop}(\mathrm{relu}(W_3 m))

    The LayerNorm keeps messages on one scale, so the message-consistency loss cannot be
    lowered by shrinking every message towards zero. ``s_shape``, ``e_shape``,
    ``message_dim`` and ``tokens`` are as in :class:`Codec`.

    Args:
        hidden (int): width of the ReLU layer. (default: ``256``)
        dropout (float): dropout after the ReLU. (default: ``0.1``)
    """

    def __init__(
        self,
        s_shape: Sequence[int],
        e_shape: Sequence[int],
        message_dim: int,
        *,
        hidden: int = 256,
        dropout: float = 0.1,
        tokens: bool = False,
    ) -> None:
        self.hidden, self.dropout = hidden, dropout
        super().__init__(s_shape, e_shape, message_dim, tokens=tokens)

    def _dense_relu_dense(self, d_in: int, d_out: int) -> list[nn.Module]:
        return [
            nn.Linear(d_in, self.hidden),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, d_out),
        ]

    def build_encoder(self, state_dim: int, message_dim: int) -> nn.Module:
        """Dense-ReLU-dropout-dense, then LayerNorm on the message."""
        return nn.Sequential(
            *self._dense_relu_dense(state_dim, message_dim), nn.LayerNorm(message_dim)
        )

    def build_decoder(self, message_dim: int, state_dim: int) -> nn.Module:
        """Dense-ReLU-dropout-dense."""
        return nn.Sequential(*self._dense_relu_dense(message_dim, state_dim))


class LinearCodec(Codec):
    r"""Linear projections: :math:`E(z) = W_E z + b_E`, :math:`D(m) = W_D m + b_D`."""

    def build_encoder(self, state_dim: int, message_dim: int) -> nn.Module:
        """One linear map to the message space."""
        return nn.Linear(state_dim, message_dim)

    def build_decoder(self, message_dim: int, state_dim: int) -> nn.Module:
        """One linear map back to the states."""
        return nn.Linear(message_dim, state_dim)


CodecFactory = Callable[[tuple[int, ...], tuple[int, ...], int], Codec]
CODEC_KINDS = ("mlp", "linear", "token", "token-linear")


def make_codec(
    kind: str | CodecFactory,
    s_shape: Sequence[int],
    e_shape: Sequence[int],
    message_dim: int,
    *,
    hidden: int = 256,
    dropout: float = 0.1,
) -> Codec:
    """Build a codec by kind: ``"mlp"`` (the paper's), ``"linear"``, ``"token"`` (per-token
    MLP), ``"token-linear"``, or a callable ``(s_shape, e_shape, message_dim) -> Codec``.

    Example:
        >>> codec = make_codec("mlp", (300,), (256,), 128)
        >>> m = codec.encode(torch.randn(4, 300), torch.randn(4, 256))
        >>> [tuple(t.shape) for t in (m, *codec.decode(m))]
        [(4, 128), (4, 300), (4, 256)]
    """
    s_shape, e_shape = tuple(s_shape), tuple(e_shape)
    if callable(kind):
        return kind(s_shape, e_shape, message_dim)
    tokens = kind.startswith("token")
    if kind in ("mlp", "token"):
        return MLPCodec(
            s_shape, e_shape, message_dim, hidden=hidden, dropout=dropout, tokens=tokens
        )
    if kind in ("linear", "token-linear"):
        return LinearCodec(s_shape, e_shape, message_dim, tokens=tokens)
    raise ValueError(f"Unknown codec kind {kind!r}; choose one of {CODEC_KINDS} or pass a callable")
