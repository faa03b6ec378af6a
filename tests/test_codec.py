"""Codecs: shapes in and out."""

import torch

from agora import (
    make_codec,
)


def test_token_codec_round_trips_shapes():
    codec = make_codec("token", (16,), (16,), message_dim=8)
    s, e = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    m = codec.encode(s, e)
    s2, e2 = codec.decode(m)
    assert m.shape == (2, 5, 8) and s2.shape == s.shape and e2.shape == e.shape
