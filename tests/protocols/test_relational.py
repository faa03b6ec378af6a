"""Relational distillation (RKD-D): the learner keeps the tutor's distances between examples."""

import torch
import torch.nn.functional as F

from agora import Graph, Orchestrator
from agora.protocols.relational import pairwise_distances
from tests.helpers import mlp_agent, regression_data, token_agent


def test_the_term_is_the_huber_loss_of_normalised_distance_matrices():
    torch.manual_seed(0)
    graph = Graph([mlp_agent("teacher", width=32, frozen=True), mlp_agent("student", width=8)],
                  message_dim=8)  # fmt: skip
    graph.add_edge("student", "teacher", "relational", weights={"relational": 0.5})
    x, y = regression_data(16)
    out = Orchestrator(graph.build(x))(x, y)
    weight, value = out.losses.terms["relational[student->teacher]"]

    def psi(e):  # written out: distances over their mean over pairs i != j
        d = (e[:, None, :] - e[None, :, :]).pow(2).sum(-1).sqrt()
        return d / (d.sum() / (len(e) * (len(e) - 1)))

    e_s, e_t = graph.agents["student"](x).e, graph.agents["teacher"](x).e
    assert weight == 0.5
    torch.testing.assert_close(value, F.smooth_l1_loss(psi(e_s), psi(e_t)))


def test_widths_may_differ_and_only_the_learner_gets_gradients():
    torch.manual_seed(0)
    graph = Graph([mlp_agent("teacher", width=64, frozen=True), mlp_agent("student", width=6)],
                  message_dim=8)  # fmt: skip
    graph.add_edge("student", "teacher", "relational")
    x, y = regression_data(8)
    out = Orchestrator(graph.build(x))(x, y)
    term = out.losses.terms["relational[student->teacher]"][1]
    term.backward()
    assert graph.agents["student"].upper[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in graph.agents["teacher"].parameters())


def test_a_scaled_tutor_teaches_the_same_geometry():
    e = torch.randn(10, 4)
    torch.testing.assert_close(pairwise_distances(3 * e), pairwise_distances(e))


def test_token_states_are_pooled_over_real_tokens_only():
    torch.manual_seed(0)
    graph = Graph([token_agent("teacher", 16, frozen=True), token_agent("student", 8)],
                  message_dim=6, codec="token")  # fmt: skip
    graph.add_edge("student", "teacher", "relational")
    ids = torch.randint(1, 20, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    graph.build({"input_ids": ids, "attention_mask": mask})
    step, y = Orchestrator(graph), torch.tensor([0, 2, 1])
    short = step({"input_ids": ids * mask, "attention_mask": mask}, y)
    junk = torch.cat([ids * mask, torch.randint(1, 20, (3, 2))], 1)  # two padding tokens more
    long = step({"input_ids": junk, "attention_mask": torch.cat([mask, torch.zeros(3, 2)], 1)}, y)
    name = "relational[student->teacher]"
    torch.testing.assert_close(long.losses.terms[name][1], short.losses.terms[name][1])
