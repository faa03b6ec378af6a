"""Feature distillation in the message space, and Hybrid."""

import torch
import torch.nn.functional as F

from tests.helpers import one_way_terms


def test_feature_protocol_is_distance_in_message_space():
    graph, out, x = one_way_terms("feature")
    s, t = graph.agents["student"], graph.agents["teacher"]
    so, to = s(x), t(x)
    m_s = s.codec.encoder(torch.cat([so.s, so.e], -1))
    m_t = t.codec.encoder(torch.cat([to.s, to.e], -1))
    assert torch.allclose(out.losses.terms["feature[student->teacher]"][1], F.mse_loss(m_s, m_t))


def test_hybrid_is_logit_plus_feature():
    _, hybrid, _ = one_way_terms("hybrid")
    assert set(hybrid.losses.terms) == {
        "task[student]",
        "logit[student->teacher]",
        "feature[student->teacher]",
    }
