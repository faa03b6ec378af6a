"""What agora reads from a data set: any sized, indexable collection of ``(x, y)``, and the
optional ``__getitems__`` + ``collate_fn`` and ``lengths`` that training and evaluation honour.

(``group_names`` is read by the per-group analyses: tests/analysis/test_cka.py.)
"""

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from agora import Graph
from agora.data import TaskData
from agora.loaders import LengthBatches, make_loader
from agora.models.toy import mlp_agent
from agora.train import evaluate

X, Y = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), torch.linspace(-1, 1, 10)


class Gathering(Dataset):
    """``(x [4], y)`` examples that gather a whole batch at once (a ``{"x", "y"}`` mapping,
    passed on by ``collate_fn``) and record each gather; ``lengths`` when given."""

    def __init__(self, lengths=None):
        self.gathered = []
        if lengths is not None:
            self.lengths = lengths

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i], Y[i]

    def __getitems__(self, indices):
        self.gathered.append(list(indices))
        return {"x": X[indices], "y": Y[indices]}

    @staticmethod
    def collate_fn(batch):
        return batch


class Sized:
    def __len__(self):
        return 3


@pytest.mark.parametrize(
    "data, is_task_data",
    [
        (TensorDataset(X, Y), True),
        (list(zip(X, Y)), True),
        (Gathering(), True),
        (Sized(), False),
        (iter([(X[0], Y[0])]), False),
    ],
    ids=["TensorDataset", "list", "gathering", "no __getitem__", "iterator"],
)
def test_task_data_is_any_sized_indexable_collection(data, is_task_data):
    assert isinstance(data, TaskData) is is_task_data


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return Graph([mlp_agent("student", 4, 8)], message_dim=8).build(torch.randn(2, 4))


def test_evaluation_gathers_whole_batches_and_scores_as_on_plain_examples(graph):
    data = Gathering()
    metrics = evaluate(graph, data, batch_size=4)
    assert data.gathered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # one gather a batch, in order
    assert metrics == pytest.approx(evaluate(graph, TensorDataset(X, Y), batch_size=4))


def test_evaluation_batches_examples_of_similar_length_together(graph):
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]
    data = Gathering(lengths)
    metrics = evaluate(graph, data, batch_size=4)
    assert data.gathered == list(LengthBatches(lengths, 4))
    assert data.gathered[0] == [9, 1, 5, 3]  # lengths 0, 1, 2, 3: the shortest first
    assert metrics == pytest.approx(evaluate(graph, TensorDataset(X, Y), batch_size=4))


def test_training_batches_are_gathered_whole_and_carry_their_rows():
    data = Gathering(lengths=list(range(10)))
    loader, _ = make_loader(data, batch_size=4, seed=0, shuffle=True, group_by_length=True)
    batches = list(loader)
    assert [index.tolist() for _, index in batches] == data.gathered
    for batch, index in batches:
        assert torch.equal(batch["x"], X[index]) and torch.equal(batch["y"], Y[index])
    full = [rows for rows in data.gathered if len(rows) == 4]
    assert all(max(rows) - min(rows) == 3 for rows in full)  # neighbours in length
