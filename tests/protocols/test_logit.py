"""Label distillation against Hinton's formula."""

import torch
import torch.nn.functional as F

from tests.helpers import one_way_terms


def test_logit_protocol_is_label_distillation():
    graph, out, x = one_way_terms("logit", weights={"logit": 0.5})
    y_s, y_t = graph.agents["student"](x).y, graph.agents["teacher"](x).y
    assert torch.allclose(out.losses.terms["logit[student->teacher]"][1], F.mse_loss(y_s, y_t))
    assert out.losses.terms["logit[student->teacher]"][0] == 0.5
