"""A protocol is one class: defining it registers it, and an import path names a user's own."""

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from agora import Graph, GraphError, Orchestrator
from agora.protocols import PROTOCOLS, Protocol, get_protocol, known_protocols
from tests.helpers import mlp_agent, regression_data


class CosineLogits(Protocol):
    """A protocol a user writes in their own module: 1 - cos(y_learner, y_tutor)."""

    name = "test_cosine_logits"
    weights: ClassVar[dict[str, float]] = {"test_cosine_logits": 1.0}
    needs_head = True

    def loss(self, link, distance):
        return 1 - F.cosine_similarity(link.learner_out.y, link.tutor_out.y.detach(), -1).mean()


def graph(protocol):
    torch.manual_seed(0)
    g = Graph([mlp_agent("teacher", width=32, frozen=True), mlp_agent("student", width=8)],
              message_dim=8)  # fmt: skip
    g.add_edge("student", "teacher", protocol)
    return g


def test_defining_a_protocol_registers_it_with_no_edit_elsewhere():
    assert "test_cosine_logits" in known_protocols()
    x, y = regression_data(8)
    out = Orchestrator(graph("test_cosine_logits").build(x))(x, y)
    assert set(out.losses.terms) == {"task[student]", "test_cosine_logits[student->teacher]"}
    assert out.outputs["student"].m is None  # it does not speak: no message was encoded


def test_a_protocol_is_named_by_its_import_path_in_configs():
    path = f"{__name__}:CosineLogits"
    assert isinstance(get_protocol(path), CosineLogits)
    assert PROTOCOLS[path] is PROTOCOLS["test_cosine_logits"] is CosineLogits
    assert graph(path).edge("student", "teacher").protocols == (CosineLogits(),)


def test_a_protocol_that_needs_heads_says_so():
    g = Graph([mlp_agent("teacher", width=32, frozen=True), mlp_agent("student", width=8)],
              message_dim=8)  # fmt: skip
    g.agents["teacher"].head = None
    g.agents["teacher"].task = None
    g.add_edge("student", "teacher", "test_cosine_logits")
    with pytest.raises(GraphError, match="'test_cosine_logits' needs a head on 'teacher'"):
        g.build(regression_data(4)[0])


def test_unknown_and_unimportable_protocols_are_named():
    with pytest.raises(GraphError, match=r"unknown protocol 'gossip'; known: \[.*'relational'"):
        get_protocol("gossip")
    with pytest.raises(GraphError, match="Cannot import protocol 'nowhere:Thing'"):
        get_protocol("nowhere:Thing")
    with pytest.raises(GraphError, match="is not a Protocol subclass"):
        get_protocol("torch.nn:Linear")
