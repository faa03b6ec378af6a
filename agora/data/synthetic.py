"""Synthetic data for tiny configs and tests: no download, deterministic, seconds to fit."""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

# The target function is fixed (its own seed), so that every ``seed`` samples the same task.
_TARGET_SEED = 1234


def _target(x: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(_TARGET_SEED)
    d_in = x.shape[-1]
    a = torch.randn(d_in, generator=g) / math.sqrt(d_in)  # [d_in]
    b = torch.randn(d_in, generator=g) / math.sqrt(d_in)  # [d_in]
    return torch.sin(2 * x @ a) + 0.5 * torch.tanh(x @ b) ** 2  # [n]


def regression(
    n: int = 512,
    d_in: int = 8,
    seed: int = 0,
    valid_fraction: float = 0.2,
    noise: float = 0.1,
    test_fraction: float = 0.0,
) -> dict[str, TensorDataset]:
    r"""A smooth nonlinear regression task, split into train, valid and (optionally) test.

    .. math::
        x \sim \mathcal{N}(0, I_{d}), \quad
        y = \sin(2\, a^\top x) + \tfrac12 \tanh(b^\top x)^2 + \epsilon, \quad
        \epsilon \sim \mathcal{N}(0, \sigma^2)

    with ``a`` and ``b`` fixed for each ``d_in`` (independent of ``seed``). Configs name it as
    ``agora.data.synthetic:regression``.

    Args:
        n (int): examples in all. (default: ``512``)
        d_in (int): input features. (default: ``8``)
        seed (int): seed of the sample (not of the target function). (default: ``0``)
        valid_fraction (float): share of the examples held out for validation, in ``(0, 1)``.
            (default: ``0.2``)
        noise (float): :math:`\sigma`. (default: ``0.1``)
        test_fraction (float): share held out as a test split, in ``[0, 1)``; ``0``: none.
            (default: ``0.0``)

    Returns:
        ``{"train": TensorDataset, "valid": TensorDataset}`` of ``(x [d_in], y [])`` pairs,
        and ``"test"`` with a ``test_fraction``.

    Example:
        >>> splits = regression(n=100, d_in=4)
        >>> len(splits["train"]), len(splits["valid"])
        (80, 20)
        >>> x, y = splits["train"][0]
        >>> tuple(x.shape), tuple(y.shape)
        ((4,), ())
    """
    n_valid, n_test = round(n * valid_fraction), round(n * test_fraction)
    if not 0 <= test_fraction < 1 or (test_fraction and not n_test):
        raise ValueError(
            f"regression: test_fraction={test_fraction} of n={n} must be 0, or in (0, 1) and "
            "hold at least one example"
        )
    if not 0 < valid_fraction < 1 or not 0 < n_valid < n - n_test:
        raise ValueError(
            f"regression: valid_fraction={valid_fraction} of n={n} must leave at least one "
            f"example in both train and valid"
        )
    if d_in < 1 or noise < 0:
        raise ValueError(f"regression: need d_in >= 1 and noise >= 0, got {d_in} and {noise}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)  # [n, d_in]
    y = _target(x) + noise * torch.randn(n, generator=g)  # [n]
    n_train = n - n_valid - n_test
    splits = {
        "train": TensorDataset(x[:n_train], y[:n_train]),
        "valid": TensorDataset(x[n_train : n_train + n_valid], y[n_train : n_train + n_valid]),
    }
    if n_test:
        splits["test"] = TensorDataset(x[n_train + n_valid :], y[n_train + n_valid :])
    return splits


def unlabelled(n: int = 2048, d_in: int = 8, seed: int = 1) -> TensorDataset:
    """Inputs of :func:`regression`'s distribution without targets: a transfer set.

    Configs name it as ``agora.data.synthetic:unlabelled`` (under ``data.transfer``).

    Args:
        n (int): examples. (default: ``2048``)
        d_in (int): input features. (default: ``8``)
        seed (int): seed of the sample; another than the labelled data's gives other
            examples. (default: ``1``)

    Returns:
        A ``TensorDataset`` of ``(x [d_in],)``.

    Example:
        >>> data = unlabelled(n=100, d_in=4)
        >>> len(data), tuple(data[0][0].shape)
        (100, (4,))
    """
    if n < 1 or d_in < 1:
        raise ValueError(f"unlabelled: need n >= 1 and d_in >= 1, got {n} and {d_in}")
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, d_in, generator=g))  # [n, d_in]
