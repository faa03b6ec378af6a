"""Distances against their formulas."""

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


def test_balanced_terms_are_as_large_as_their_learners_task_times_their_weight():
    from agora import Losses
    from agora.losses import LossBalancer

    losses = Losses()
    losses.add("task[a]", 1.0, torch.tensor(0.8))
    losses.add("interact[a]", 2.0, torch.tensor(0.004))
    losses.add("logit[a->t]", 0.5, torch.tensor(3.0))
    losses.add("task[b]", 1.0, torch.tensor(2.0))
    losses.add("feature[b->t]", 1.0, torch.tensor(0.1))
    losses.add("feature[c->t]", 1.0, torch.tensor(0.1))  # c has no task term: left raw
    total = LossBalancer(momentum=0.0)(losses)
    expected = 0.8 + 2 * 0.8 + 0.5 * 0.8 + 2.0 + 1 * 2.0 + 0.1
    assert torch.isclose(total, torch.tensor(expected))


def test_the_scales_are_running_means_and_carry_no_gradient():
    from agora import Losses
    from agora.losses import LossBalancer

    balancer = LossBalancer(momentum=0.5)
    p = torch.tensor(2.0, requires_grad=True)
    for task, term in ((1.0, 0.1), (3.0, 0.3)):
        losses = Losses()
        losses.add("task[a]", 1.0, torch.tensor(task))
        losses.add("interact[a]", 1.0, p * term)
        total = balancer(losses)
    # means: task 0.5 * 1 + 0.5 * 3 = 2; term 0.5 * 0.2 + 0.5 * 0.6 = 0.4 -> scale 5
    assert abs(balancer.scales["interact[a]"] - 5.0) < 1e-6
    (grad,) = torch.autograd.grad(total, p)
    assert torch.isclose(grad, torch.tensor(5.0 * 0.3))  # d(scale * p * 0.3)/dp, scale constant
    frozen = dict(balancer.means)
    balancer(losses, update=False)  # evaluation: the means stay
    assert balancer.means == frozen
