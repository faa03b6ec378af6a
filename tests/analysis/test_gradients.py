"""agora.analysis.gradients: each loss term's pull on each agent."""

from __future__ import annotations

import pytest
import torch

from agora import Agent, Graph, GraphError, Talk
from agora.analysis.gradients import relative, term_alignment, term_gradients
from agora.models.toy import mlp_agent
from agora.orchestrator import Orchestrator


def graph(weight: float) -> Graph:
    torch.manual_seed(0)
    g = Graph(
        [mlp_agent("teacher", 8, 16, frozen=True), mlp_agent("student", 8, 8)],
        message_dim=8,
        codec_dropout=0.0,
    )
    talk = dict.fromkeys(("message_consistency", "state_consistency"), weight)
    protocols = (Talk(rounds=2, interact_weight=weight), "logit")
    g.add_edge("student", "teacher", protocols, weights=talk, noise=0.0)
    return g.build(torch.randn(2, 8))


def batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 8, generator=gen)
    return x, x[:, :4].sum(-1).sin()


def test_each_term_is_differentiated_alone_on_the_backbone_only():
    g, (x, y) = graph(0.1), batch()
    norms = term_gradients(g.eval(), x, y)
    assert set(norms) == {"student"}  # a frozen agent has nothing to pull on
    student = g.agents["student"]
    backbone = [
        p for part in (student.lower, student.upper, student.head) for p in part.parameters()
    ]
    out = Orchestrator(g)(x, y)  # no dropout, no noise: the same step again
    for term, (weight, value) in out.losses.terms.items():
        grads = torch.autograd.grad(weight * value, backbone, retain_graph=True, allow_unused=True)
        expected = torch.cat([g.flatten() for g in grads if g is not None]).norm().item()
        assert norms["student"][term] == pytest.approx(expected, rel=1e-5), term
    assert all(p.grad is None for p in g.parameters())  # nothing accumulated, nothing updated
    assert not g.training  # its mode is given back


def test_a_shared_parameter_counts_once_and_batch_norm_statistics_are_kept():
    torch.manual_seed(0)
    nn = torch.nn
    shared = nn.Linear(8, 8)  # in upper and in head: one parameter, one gradient
    student = Agent(
        "student",
        nn.Sequential(nn.Linear(8, 8), nn.ReLU()),
        nn.Sequential(nn.BatchNorm1d(8), shared, nn.ReLU()),
        nn.Sequential(shared, nn.Linear(8, 1)),
        task="regression",
    )
    x, y = batch()
    g = Graph([student], message_dim=8).build(x)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    norm = term_gradients(g, x, y)["student"]["task[student]"]
    for key, value in g.state_dict().items():  # the batch-norm running statistics too
        assert torch.equal(value, before[key]), key
    loss = Orchestrator(g.train())(x, y).losses.terms["task[student]"][1]
    grads = torch.autograd.grad(loss, list(g.parameters()), allow_unused=True)  # each once
    expected = torch.cat([g.flatten() for g in grads if g is not None]).norm().item()
    assert norm == pytest.approx(expected, rel=1e-5)


def test_a_terms_pull_scales_with_its_weight_and_relative_divides_by_the_task():
    x, y = batch()
    low, high = term_gradients(graph(0.1), x, y), term_gradients(graph(1.0), x, y)
    for term in ("interact[student]", "message_consistency[student->teacher]"):
        assert high["student"][term] == pytest.approx(10 * low["student"][term], rel=1e-4)
    for name in ("task[student]", "logit[student->teacher]"):  # weights unchanged
        assert high["student"][name] == pytest.approx(low["student"][name], rel=1e-5)
    ratios = relative(low)["student"]
    assert ratios["task[student]"] == 1.0
    assert ratios["interact[student]"] == pytest.approx(
        low["student"]["interact[student]"] / low["student"]["task[student]"]
    )


def test_an_unbuilt_graph_is_an_error():
    g = Graph([mlp_agent("student", 8, 8)], message_dim=8)
    with pytest.raises(GraphError, match="not built"):
        term_gradients(g, torch.randn(4, 8), torch.randn(4))


def test_balance_weighs_each_term_as_the_balancer_does_at_the_first_step():
    g, (x, y) = graph(0.1), batch()
    raw, balanced = term_gradients(g, x, y), term_gradients(g, x, y, balance=True)
    weights = {t: w for t, (w, _) in Orchestrator(g.train())(x, y).losses.terms.items()}
    task = balanced["student"]["task[student]"]
    assert task == pytest.approx(raw["student"]["task[student]"])
    for term, norm in balanced["student"].items():
        if raw["student"][term] and not term.startswith("task"):  # w times the task's pull
            assert norm == pytest.approx(weights[term] * task, rel=1e-4), term
    assert balanced["student"]["interact[student]"] != pytest.approx(
        raw["student"]["interact[student]"]
    )


def test_alignment_is_each_terms_cosine_with_the_task_gradient():
    g, (x, y) = graph(0.1), batch()
    cosines = term_alignment(g.eval(), x, y)
    assert set(cosines) == {"student"}
    student = g.agents["student"]
    backbone = [
        p for part in (student.lower, student.upper, student.head) for p in part.parameters()
    ]
    out = Orchestrator(g)(x, y)  # no dropout, no noise: the same step again

    def flat(term):
        weight, value = out.losses.terms[term]
        grads = torch.autograd.grad(weight * value, backbone, retain_graph=True, allow_unused=True)
        return torch.cat([
            (torch.zeros_like(p) if d is None else d).flatten() for d, p in zip(grads, backbone)
        ])  # fmt: skip

    task = flat("task[student]")
    for term in out.losses.terms:
        expected = torch.nn.functional.cosine_similarity(flat(term), task, dim=0).item()
        assert cosines["student"][term] == pytest.approx(expected, abs=1e-5), term
    assert cosines["student"]["task[student]"] == pytest.approx(1.0)
    assert all(p.grad is None for p in g.parameters())


def test_a_transfer_batch_counts_as_the_step_counts_it():
    """With ``transfer``, each distillation term is the step's, over the labelled and the
    transfer examples (the orchestrator's mean); the task term stays the labelled batch's."""
    g, (x, y) = graph(0.1), batch()
    g.eval()  # no dropout: the same step twice gives the same gradients
    transfer = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    alone = term_gradients(g, x, y)["student"]
    both = term_gradients(g, x, y, transfer=transfer)["student"]
    assert both["task[student]"] == pytest.approx(alone["task[student]"])
    assert both["logit[student->teacher]"] != pytest.approx(alone["logit[student->teacher]"])
    # the orchestrator's own loss, differentiated by hand, gives the same norm
    step = Orchestrator(g)(x, y, transfer=transfer)
    weight, value = step.losses.terms["logit[student->teacher]"]
    student = g.agents["student"]
    params = [p for part in (student.lower, student.upper, student.head) for p in part.parameters()]
    grads = torch.autograd.grad(weight * value, params, allow_unused=True)
    norm = torch.sqrt(sum((gr**2).sum() for gr in grads if gr is not None))
    assert both["logit[student->teacher]"] == pytest.approx(norm.item(), rel=1e-5)
    cosines = term_alignment(g, x, y, transfer=transfer)["student"]
    assert (
        cosines["task[student]"] == pytest.approx(1.0) and -1 <= cosines["interact[student]"] <= 1
    )
