"""FitNet: the learner decodes the tutor's raw states."""

import torch
import torch.nn.functional as F

from tests.helpers import one_way_terms


def test_fitnet_protocol_decodes_the_tutors_raw_states():
    graph, out, x = one_way_terms("fitnet")
    s, t = graph.agents["student"], graph.agents["teacher"]
    so, to = s(x), t(x)
    regressor = graph.edge_module(graph.edge("student", "teacher"), "fitnet")
    decoded = s.codec.decoder(regressor(torch.cat([to.s, to.e], -1)))
    expected = F.mse_loss(decoded, torch.cat([so.s, so.e], -1))
    assert torch.allclose(out.losses.terms["fitnet[student->teacher]"][1], expected)
