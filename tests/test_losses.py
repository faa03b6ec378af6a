"""Distances against their formulas."""

import pytest
import torch

from agora import (
    distance,
    logit_distance,
)


def test_distances_match_their_formulas():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(distance(a, b), ((a - b) ** 2).sum(1).div(7).mean())
    cosine = 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert torch.allclose(distance(a, b, "cosine"), cosine.mean())
    split = distance((a[:, :3], a[:, 3:]), (b[:, :3], b[:, 3:]))
    assert torch.allclose(split, distance(a, b))


def test_logit_distances_match_hinton_and_mse():
    student, teacher, T = torch.randn(4, 5), torch.randn(4, 5), 3.0
    p_t = torch.softmax(teacher / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / T, -1))).sum(-1).mean() * T * T
    assert torch.allclose(logit_distance(student, teacher, "kl", T), kl, atol=1e-6)
    assert torch.allclose(
        logit_distance(student, teacher, "mse"), ((student - teacher) ** 2).mean()
    )


def test_masked_distance_ignores_padding():
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    expected = torch.cat([((a - b) ** 2)[0, :3], ((a - b) ** 2)[1, :2]]).mean()
    assert torch.allclose(distance(a, b, mask=mask), expected)
    b2 = b.clone()
    b2[~mask] = 100.0
    assert torch.equal(distance(a, b2, mask=mask), distance(a, b, mask=mask))


# -- the balancer ------------------------------------------------------------------------------


def _norm(total, params):
    grads = torch.autograd.grad(total, params, retain_graph=True)
    return torch.cat([g.flatten() for g in grads]).norm().item()


def test_a_balanced_term_pulls_its_learner_weight_times_as_hard_as_the_task():
    from agora import Losses
    from agora.losses import LossBalancer

    a, b = torch.randn(5, requires_grad=True), torch.randn(3, requires_grad=True)
    target = torch.randn(5)

    def losses(talk_weight):
        out = Losses()
        out.add("task[a]", 2.0, ((a - target) ** 2).mean(), learner="a", task=True)
        out.add("interact[a]", talk_weight, 1e-3 * (a**2).sum(), learner="a")  # tiny by nature
        out.add("feature[b->t]", 1.0, (b**2).mean(), learner="b", edge="b->t")  # no task: raw
        return out

    for weight in (0.3, 1.0, 3.0):
        balancer = LossBalancer({"a": [a], "b": [b]}, momentum=0.0)
        terms = losses(weight)
        balanced = balancer(terms)
        task = _norm(2.0 * terms.terms["task[a]"][1], [a])
        talk = _norm(balanced - terms.terms["task[a]"][0] * terms.terms["task[a]"][1], [a])
        assert talk == pytest.approx(weight * task, rel=1e-5)
        assert "feature[b->t]" not in balancer.scales
        assert _norm(balanced, [b]) == pytest.approx(_norm(terms.terms["feature[b->t]"][1], [b]))


def test_the_norms_are_measured_every_few_calls_as_running_means_and_carry_no_gradient():
    from agora import Losses
    from agora.losses import LossBalancer

    p = torch.tensor(2.0, requires_grad=True)
    balancer = LossBalancer({"a": [p]}, momentum=0.5, every=2)
    seen = []
    for task, term in ((1.0, 0.1), (5.0, 5.0), (3.0, 0.3)):  # the second call is not measured
        losses = Losses()
        losses.add("task[a]", 1.0, task * p, learner="a", task=True)  # gradient norm: task
        losses.add("interact[a]", 1.0, term * p, learner="a")  # gradient norm: term
        total = balancer(losses)
        seen.append(balancer.scales["interact[a]"])
    # means after calls 1 and 3: task 0.5 * 1 + 0.5 * 3 = 2; term 0.5 * 0.1 + 0.5 * 0.3 = 0.2
    assert seen == pytest.approx([10.0, 10.0, 10.0])
    assert balancer.means == pytest.approx({"task[a]": 2.0, "interact[a]": 0.2})
    (grad,) = torch.autograd.grad(total, p)
    assert torch.isclose(grad, torch.tensor(3.0 + 10.0 * 0.3))  # the scale is a constant
    frozen = dict(balancer.means)
    balancer(losses, update=False)  # evaluation: nothing is measured
    assert balancer.means == frozen and balancer.calls == 3
    resumed = LossBalancer({"a": [p]}, momentum=0.5, every=2)
    resumed.load_state_dict(balancer.state_dict())
    assert resumed.means == balancer.means and resumed.calls == 3


def test_a_term_that_does_not_reach_its_learner_keeps_its_raw_weight():
    from agora import Losses
    from agora.losses import LossBalancer

    p, codec = torch.tensor(1.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    losses = Losses()
    losses.add("task[a]", 1.0, 3.0 * p, learner="a", task=True)
    losses.add(
        "message_consistency[a->t]", 0.5, 2.0 * codec, learner="a", edge="a->t"
    )  # codec only
    total = LossBalancer({"a": [p]})(losses)
    assert total.item() == pytest.approx(3.0 + 0.5 * 2.0)


def test_the_balancer_reads_a_terms_learner_from_its_owner_not_its_name():
    from agora import Losses
    from agora.losses import LossBalancer

    a, b = torch.tensor(1.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    losses = Losses()
    losses.add("fit a", 1.0, 4.0 * a, learner="a", task=True)  # no brackets to parse
    losses.add("pull", 1.0, 0.5 * a + 100.0 * b, learner="a", edge="a->t")
    balancer = LossBalancer({"a": [a], "b": [b]})
    balancer(losses)
    # measured on a's parameter only (norm 0.5, not b's 100), scaled to a's task (norm 4)
    assert balancer.means == {"fit a": 4.0, "pull": 0.5}
    assert balancer.scales == {"pull": pytest.approx(8.0)}
    assert losses.task_term("a") == "fit a" and losses.task_term("b") is None


def test_extend_keeps_owners_and_pools_notes_by_share():
    from agora import Losses

    labelled, transfer, step = Losses(), Losses(), Losses()
    for part, w in ((labelled, 0.2), (transfer, 0.6)):
        part.add("interact[s]", 1.0, torch.tensor(1.0), learner="s")
        part.note("aggregation/s/t1", torch.tensor(w))
    step.extend(labelled, 0.25)
    step.extend(transfer, 0.75)
    assert step.owners["interact[s]"].learner == "s" and step.owners["interact[s]"].edge is None
    assert step.notes["aggregation/s/t1"].item() == pytest.approx(0.25 * 0.2 + 0.75 * 0.6)
