"""Codecs: an agent's encoder into the shared message space and decoder back out of it.

Shapes name ``B`` the batch, ``T`` the tokens of a per-token codec, ``d_s`` and ``d_e`` the
flattened sizes of ``s`` and ``e`` (their sum is :attr:`Codec.state_dim`), ``m_dim`` the
message size, and ``C, H, W`` a feature map's channels and grid (``c_s``, ``c_e``: the
channels of ``s`` and ``e``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn


class Codec(nn.Module):
    r"""The pair encoder / decoder between an agent's states and the message space.

    .. math::
        m = E(\{s; e\}), \qquad \{s'; e'\} = D(m)

    ``s`` and ``e`` are flattened and concatenated before the encoder, and the decoder's output
    is split and reshaped back, so ``s'`` has exactly the
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
        self.lead = 2 if tokens else 1  # the leading axes of its networks' input: [B] or [B, T]
        self.state_sizes = (math.prod(self.s_shape), math.prod(self.e_shape))  # d_s, d_e
        self.state_dim = sum(self.state_sizes)
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
        lead = self.lead
        if tuple(s.shape[lead:]) != self.s_shape or tuple(e.shape[lead:]) != self.e_shape:
            raise ValueError(
                f"Agent {self.owner!r}: codec expects s {_fmt(self.s_shape, self.tokens)} and "
                f"e {_fmt(self.e_shape, self.tokens)}, got s {list(s.shape)} and e {list(e.shape)}"
            )
        return self.encoder(self.pack_states(s, e))  # [B, m_dim] or [B, T, m_dim]

    def pack_states(self, s: Tensor, e: Tensor) -> Tensor:
        """The states as the encoder reads them: ``{s; e}``, ``[B, d_s + d_e]`` (or per token
        ``[B, T, d_s + d_e]``), of size :attr:`state_dim`."""
        (d_s, d_e), lead = self.state_sizes, s.shape[: self.lead]  # lead: [B] or [B, T]
        return torch.cat([s.reshape(*lead, d_s), e.reshape(*lead, d_e)], -1)

    def decode(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """``(s', e') = D(m)``: decode, split and reshape to the agent's state shapes."""
        if m.shape[-1] != self.message_dim:
            raise ValueError(
                f"Agent {self.owner!r}: decoder expects messages of size {self.message_dim}, "
                f"got {list(m.shape)}"
            )
        state = self.decoder(m)  # [B, d_s + d_e] or [B, T, d_s + d_e]
        # -> s [B, *s_shape], e [B, *e_shape] (per token: [B, T, *s_shape], [B, T, *e_shape])
        s, e = state.split(self.state_sizes, -1)
        lead = state.shape[:-1]
        return s.reshape(*lead, *self.s_shape), e.reshape(*lead, *self.e_shape)

    def forward(self, s: Tensor, e: Tensor) -> Tensor:
        return self.encode(s, e)

    @property
    def state_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The trailing shapes of the states it reads, after :attr:`state_lead` axes."""
        return self.s_shape, self.e_shape

    @property
    def state_lead(self) -> int:
        """The leading axes of the states it reads: ``[B]`` (1) or ``[B, T]`` (2)."""
        return 2 if self.tokens else 1

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


def _channels(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(channels, channel axis)`` of a state's trailing shape: ``(C, H, W)`` feature maps
    keep channels first, ``(T, D)`` tokens last, ``(D,)`` vectors are their own channels."""
    if len(shape) == 3:
        return shape[0], 0
    return shape[-1], len(shape) - 1


class _WholeStates(MLPCodec):
    """An MLP codec over states it reshapes first: it reads ``[B, *shape]`` states whole
    (:attr:`full_shapes`), whatever its networks see."""

    kind = ""
    full_shapes: tuple[tuple[int, ...], tuple[int, ...]]

    def encode(self, s: Tensor, e: Tensor) -> Tensor:
        """``m = E(pack_states(s, e))``: the states reshaped as the networks read them."""
        return self.encoder(self.pack_states(s, e))  # [B, m_dim], or [B, H W, m_dim] (spatial)

    @property
    def state_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.full_shapes

    @property
    def state_lead(self) -> int:
        return 1

    def extra_repr(self) -> str:
        s_shape, e_shape = self.full_shapes
        return f"{self.kind}, s={list(s_shape)}, e={list(e_shape)}, m_dim={self.message_dim}"


class PooledCodec(_WholeStates):
    r"""Messages of whole examples from states with positions: each state is averaged over its
    positions (tokens ``[B, T, D]`` over ``T``, feature maps ``[B, C, H, W]`` over ``H, W``)
    before the paper's MLP encoder, and the decoded vectors are broadcast back over the
    positions. So a CNN, a ViT and an MLP can share one ``[B, m_dim]`` message space.

    .. math::
        m = E(\{\bar s; \bar e\}), \qquad s'_{\cdot p} = D_s(m) \ \forall p

    Every position is averaged alike: for padded token states, prefer the ``token`` codec.

    Example:
        >>> codec = PooledCodec((16, 8, 8), (17, 32), 24)  # a CNN's s, a ViT's e
        >>> m = codec.encode(torch.randn(2, 16, 8, 8), torch.randn(2, 17, 32))
        >>> [tuple(t.shape) for t in (m, *codec.decode(m))]
        [(2, 24), (2, 16, 8, 8), (2, 17, 32)]
    """

    kind = "pooled"

    def __init__(self, s_shape: Sequence[int], e_shape: Sequence[int], message_dim: int,
                 **mlp: Any) -> None:  # fmt: skip
        self.full_shapes = (tuple(s_shape), tuple(e_shape))
        (c_s, _), (c_e, _) = _channels(self.full_shapes[0]), _channels(self.full_shapes[1])
        super().__init__((c_s,), (c_e,), message_dim, **mlp)

    def pack_states(self, s: Tensor, e: Tensor) -> Tensor:
        """Each state averaged over its positions, concatenated: ``[B, c_s + c_e]``."""
        pooled = []
        for state, shape in zip((s, e), self.full_shapes):
            if tuple(state.shape[1:]) != shape:
                raise ValueError(
                    f"Agent {self.owner!r}: pooled codec expects s {['B', *self.full_shapes[0]]} "
                    f"and e {['B', *self.full_shapes[1]]}, got s {list(s.shape)}, e {list(e.shape)}"
                )
            _, axis = _channels(shape)
            positions = [1 + i for i in range(len(shape)) if i != axis]
            pooled.append(state.mean(dim=positions) if positions else state)  # [B, C]
        return super().pack_states(*pooled)  # [B, c_s + c_e]

    def decode(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """Decode one vector per state and broadcast it over the state's positions."""
        vectors = super().decode(m)  # [B, c_s], [B, c_e]
        out = []
        for vector, shape in zip(vectors, self.full_shapes):
            channels, axis = _channels(shape)
            view = [1] * len(shape)
            view[axis] = channels
            # [B, C] -> [B, *shape]: the same vector at every position
            out.append(vector.reshape(vector.shape[0], *view).expand(vector.shape[0], *shape))
        return out[0], out[1]


class SpatialCodec(_WholeStates):
    r"""Per-position messages from feature maps: ``[B, C, H, W]`` states are read as
    ``[B, H W, C]`` tokens (``einops``: ``b c h w -> b (h w) c``) by the per-token MLP codec,
    and decoded back to maps. ``s`` and ``e`` must share their grid ``H × W``; messages are
    ``[B, H W, m_dim]``, so agents that talk need the same grid.

    Example:
        >>> codec = SpatialCodec((16, 4, 4), (32, 4, 4), 8)
        >>> m = codec.encode(torch.randn(2, 16, 4, 4), torch.randn(2, 32, 4, 4))
        >>> [tuple(t.shape) for t in (m, *codec.decode(m))]
        [(2, 16, 8), (2, 16, 4, 4), (2, 32, 4, 4)]
    """

    kind = "spatial"

    def __init__(self, s_shape: Sequence[int], e_shape: Sequence[int], message_dim: int,
                 **mlp: Any) -> None:  # fmt: skip
        s_shape, e_shape = tuple(s_shape), tuple(e_shape)
        if len(s_shape) != 3 or len(e_shape) != 3 or s_shape[1:] != e_shape[1:]:
            raise ValueError(
                f"the spatial codec needs feature maps [B, C, H, W] of one grid for s and e, got "
                f"s {['B', *s_shape]} and e {['B', *e_shape]}; use the pooled codec instead"
            )
        self.grid = s_shape[1:]
        self.full_shapes = (s_shape, e_shape)
        super().__init__((s_shape[0],), (e_shape[0],), message_dim, tokens=True, **mlp)

    def pack_states(self, s: Tensor, e: Tensor) -> Tensor:
        """The maps read as tokens, one per position: ``[B, H W, c_s + c_e]``."""
        # [B, C, H, W] -> [B, H W, C] each, packed: [B, H W, c_s + c_e]
        return super().pack_states(*(rearrange(t, "b c h w -> b (h w) c") for t in (s, e)))

    def decode(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """Decode each position and put the tokens back on the grid."""
        h, w = self.grid
        s, e = super().decode(m)  # [B, H W, c_s], [B, H W, c_e]
        return tuple(rearrange(t, "b (h w) c -> b c h w", h=h, w=w) for t in (s, e))  # type: ignore[return-value]


CodecFactory = Callable[[tuple[int, ...], tuple[int, ...], int], Codec]
CODEC_KINDS = ("mlp", "linear", "token", "token-linear", "pooled", "spatial")
# the kinds whose messages carry a T axis ([B, T, m_dim]): their states lead with [B, T]
TOKEN_KINDS = ("token", "token-linear")


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
    MLP), ``"token-linear"``, ``"pooled"`` (states averaged over their positions:
    :class:`PooledCodec`), ``"spatial"`` (per position of a feature map:
    :class:`SpatialCodec`), or a callable ``(s_shape, e_shape, message_dim) -> Codec``.

    Example:
        >>> codec = make_codec("mlp", (300,), (256,), 128)
        >>> m = codec.encode(torch.randn(4, 300), torch.randn(4, 256))
        >>> [tuple(t.shape) for t in (m, *codec.decode(m))]
        [(4, 128), (4, 300), (4, 256)]
    """
    s_shape, e_shape = tuple(s_shape), tuple(e_shape)
    if callable(kind):
        return kind(s_shape, e_shape, message_dim)
    if kind in ("pooled", "spatial"):
        cls = PooledCodec if kind == "pooled" else SpatialCodec
        return cls(s_shape, e_shape, message_dim, hidden=hidden, dropout=dropout)
    tokens = kind.startswith("token")
    if kind in ("mlp", "token"):
        return MLPCodec(
            s_shape, e_shape, message_dim, hidden=hidden, dropout=dropout, tokens=tokens
        )
    if kind in ("linear", "token-linear"):
        return LinearCodec(s_shape, e_shape, message_dim, tokens=tokens)
    raise ValueError(f"Unknown codec kind {kind!r}; choose one of {CODEC_KINDS} or pass a callable")
