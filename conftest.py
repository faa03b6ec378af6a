import pytest
import torch
from torch import nn

import agora

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(torch=torch, nn=nn, **{n: getattr(agora, n) for n in agora.__all__})


try:  # the text extra: without it, its modules' examples cannot run
    import transformers  # noqa: F401
except ImportError:
    collect_ignore = ["agora/models/transformer.py", "agora/data/sst2.py"]
