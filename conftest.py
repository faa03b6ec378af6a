import os

# no test reaches the network: the Hugging Face libraries read these when first imported
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import random

import numpy as np
import pytest
import torch
from torch import nn

import agora

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(torch=torch, nn=nn, **{n: getattr(agora, n) for n in agora.__all__})


@pytest.fixture(autouse=True)
def _seeded():
    """Every test and example starts from the same generators, so that none passes or fails
    by the tests that happened to run before it in its process (under xdist, an order that
    changes with the machine's cores)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


try:  # the text extra: without it, its modules' examples cannot run
    import transformers  # noqa: F401
except ImportError:
    collect_ignore = [
        "agora/models/transformer.py", "agora/models/vision.py", "agora/data/sst2.py",
    ]  # fmt: skip
