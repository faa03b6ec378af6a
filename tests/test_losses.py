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
