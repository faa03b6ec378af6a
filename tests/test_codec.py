"""Codecs: shapes in and out."""

import pytest
import torch

from agora import (
    GraphError,
    make_codec,
)


def test_token_codec_round_trips_shapes():
    codec = make_codec("token", (16,), (16,), message_dim=8)
    s, e = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    m = codec.encode(s, e)
    s2, e2 = codec.decode(m)
    assert m.shape == (2, 5, 8) and s2.shape == s.shape and e2.shape == e.shape


def test_pooled_codec_averages_positions_and_broadcasts_back():
    from agora.codec import PooledCodec

    codec = PooledCodec((4, 3, 3), (5, 2), 6, dropout=0.0)  # a feature map and tokens
    s, e = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 2)
    m = codec.encode(s, e)
    assert torch.allclose(m, codec.encode(s.mean((2, 3), keepdim=True).expand_as(s), e))
    s2, e2 = codec.decode(m)
    assert s2.shape == s.shape and e2.shape == e.shape
    assert torch.equal(s2[:, :, 0, 0], s2[:, :, 2, 1]) and torch.equal(e2[:, 0], e2[:, 4])
    with pytest.raises(ValueError, match="pooled codec expects s"):
        codec.encode(torch.randn(2, 4, 2, 2), e)


def test_spatial_codec_is_a_token_codec_over_positions():
    from agora.codec import SpatialCodec

    codec = SpatialCodec((4, 3, 2), (6, 3, 2), 5)
    m = codec.encode(torch.randn(2, 4, 3, 2), torch.randn(2, 6, 3, 2))
    assert m.shape == (2, 6, 5) and [t.shape for t in codec.decode(m)] == [
        (2, 4, 3, 2),
        (2, 6, 3, 2),
    ]
    with pytest.raises(ValueError, match="one grid for s and e"):
        SpatialCodec((4, 3, 2), (6, 1, 1), 5)


def test_an_agent_chooses_its_own_codec_kind_and_its_spec_keeps_it():
    from agora import Graph
    from agora.models.toy import mlp_agent

    graph = Graph([mlp_agent("teacher", 4, 8, frozen=True), mlp_agent("student", 4, 8, codec="linear")],
                  message_dim=6)  # fmt: skip
    graph.add_edge("student", "teacher")
    graph.build(torch.randn(2, 4))
    assert type(graph.agents["student"].codec).__name__ == "LinearCodec"
    assert type(graph.agents["teacher"].codec).__name__ == "MLPCodec"
    assert graph.spec().agents[1].codec == "linear" and graph.spec().agents[0].codec is None
    with pytest.raises(GraphError, match="unknown codec kind 'pool'"):
        mlp_agent("x", 4, 8, codec="pool")
