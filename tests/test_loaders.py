"""Batches for fit and evaluate: resumable shuffles, index-carrying loaders, one batch of every
part per step, and the unpacking of a loader's items into the orchestrator's arguments.

(Elsewhere: a transfer step's sampler and ``step_inputs`` in tests/test_transfer.py, shorter
learners restarting in tests/test_orchestrator.py, grouping by length in
tests/models/test_transformer.py, resuming under DDP in tests/test_train.py.)
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from agora.errors import GraphError
from agora.loaders import (
    TRANSFER,
    EpochSampler,
    LengthBatches,
    eval_loader,
    first_x,
    make_learner_loader,
    make_loader,
    make_transfer_loader,
    split_batch,
    step_inputs,
    to_device,
    transfer_inputs,
)
from agora.models.toy import mlp_agent


def numbered(n: int, start: int = 0) -> TensorDataset:
    """Examples ``(x, y)`` whose ``x`` is their own number (plus ``start``), so a batch says
    which rows it holds."""
    x = torch.arange(start, start + n, dtype=torch.float32)
    return TensorDataset(x.unsqueeze(-1), -x)


# ---------------------------------------------------------------------------------------------
# The shuffle


def test_the_shuffle_depends_on_seed_and_epoch_alone():
    def order(seed, epoch):
        sampler = EpochSampler(20, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert sorted(order(0, 0)) == list(range(20)) and len(EpochSampler(20, 0)) == 20
    assert order(0, 2) == order(0, 2)  # a resumed run replays the epoch
    assert len({tuple(order(seed, epoch)) for seed in (0, 1) for epoch in (0, 1)}) == 4
    assert list(EpochSampler(20, 0, shuffle=False)) == list(range(20))


def test_with_lengths_a_partial_batch_stays_last():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    order = list(EpochSampler(11, seed=0, lengths=lengths, batch_size=4))
    assert sorted(order) == list(range(11))
    assert sorted(order[8:]) == [1, 3, 6]  # one run sorted by length: the 3 shortest left over


@pytest.mark.parametrize(
    "lengths, batch_size", [([1, 2], 2), ([1, 2, 3], None)], ids=["too few", "no batch size"]
)
def test_lengths_need_one_per_example_and_a_batch_size(lengths, batch_size):
    with pytest.raises(
        ValueError, match=rf"one length per example \(3, got {len(lengths)}\) and batch_size"
    ):
        EpochSampler(3, seed=0, lengths=lengths, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Loaders


def test_a_training_batch_carries_the_rows_it_holds():
    loader, sampler = make_loader(numbered(10), batch_size=4, seed=0, shuffle=True)
    sampler.set_epoch(1)
    rows = []
    for (x, y), index in loader:
        assert torch.equal(x.squeeze(-1), index.float()) and torch.equal(y, -index.float())
        rows += index.tolist()
    assert rows == list(sampler) and [len(i) for _, i in loader] == [4, 4, 2]


def test_a_given_dataloader_lends_its_dataset_collate_and_batch_size():
    def as_mapping(examples):
        x, y = torch.utils.data.default_collate(examples)
        return {"x": x, "y": y}

    given = DataLoader(numbered(10), batch_size=3, collate_fn=as_mapping)
    loader, _ = make_loader(given, batch_size=64, seed=0, shuffle=False)
    batches = [(batch, index.tolist()) for batch, index in loader]
    assert [index for _, index in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert set(batches[0][0]) == {"x", "y"}


def test_grouping_by_length_names_the_dataset_without_lengths():
    with pytest.raises(ValueError, match=r"`lengths` attribute .*; TensorDataset has none"):
        make_loader(numbered(4), batch_size=2, seed=0, shuffle=True, group_by_length=True)


def test_per_learner_data_gives_every_learner_its_own_batch_each_step():
    loader, sizes = make_learner_loader({"a": numbered(6), "b": numbered(3, 100)}, 2, seed=0)
    assert sizes == {"a": 6, "b": 3} and len(loader) == 3  # the longest makes the epoch
    for step in loader:
        assert set(step) == {"a", "b"}
        for name, start in (("a", 0), ("b", 100)):
            (x, _), index = step[name]
            assert torch.equal(x.squeeze(-1), index.float() + start)


def test_a_transfer_loader_holds_its_own_batch_size_and_makes_the_epoch():
    loader, sizes = make_transfer_loader(numbered(4), numbered(9, 50), 2, 3, seed=0)
    assert sizes == {None: 4, TRANSFER: 9} and len(loader) == 3  # 9 transfer examples, 3 a step
    steps = list(loader)
    assert [len(step[TRANSFER][1]) for step in steps] == [3, 3, 3]
    assert [len(step[None][1]) for step in steps] == [2, 2, 2]  # the labelled set restarts
    loader, sizes = make_transfer_loader({"a": numbered(4)}, numbered(6), 2, 2, seed=0)
    assert sizes == {"a": 4, TRANSFER: 6}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: make_learner_loader({}, 2, seed=0), "Per-learner training data is empty"),
        (
            lambda: make_learner_loader({"a": numbered(2), "b": numbered(0)}, 2, seed=0),
            "^Learner 'b' has no data: its dataset is empty$",
        ),
        (
            lambda: make_transfer_loader(numbered(2), numbered(0), 2, 2, seed=0),
            "^The transfer set has no data: its dataset is empty$",
        ),
    ],
    ids=["no learner", "empty learner", "empty transfer set"],
)
def test_empty_data_is_refused_naming_the_part(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_transfer_is_no_agent_name():
    with pytest.raises(GraphError, match=r"without '\.', '/' or spaces"):
        mlp_agent(TRANSFER, 2, 4)


def test_evaluation_goes_in_order_or_shortest_first_and_passes_a_dataloader_through():
    batches = [x.squeeze(-1).tolist() for x, _ in eval_loader(numbered(5), 2)]
    assert batches == [[0, 1], [2, 3], [4]]
    given = DataLoader(numbered(5))
    assert eval_loader(given) is given
    assert list(LengthBatches([5, 1, 3, 1, 2], 2)) == [[1, 3], [4, 2], [0]]  # ties stay in order
    assert len(LengthBatches([5, 1, 3, 1, 2], 2)) == 3


# ---------------------------------------------------------------------------------------------
# From a loader's item to the orchestrator's arguments


def test_split_batch_reads_pairs_and_mappings():
    x, y = torch.zeros(2, 3), torch.ones(2)
    assert split_batch((x, y)) == (x, y)
    assert split_batch({"x": x, "y": y, "mask": None}) == (x, y)
    assert split_batch({"x": x}) == (x, None)  # unlabelled
    with pytest.raises(KeyError, match="'x'"):
        split_batch({"input_ids": x})


def test_transfer_inputs_drop_any_label():
    x, y = torch.zeros(2, 3), torch.ones(2)
    tokens = {"input_ids": x, "attention_mask": x}
    assert transfer_inputs((x, y)) is x and transfer_inputs([x]) is x
    assert transfer_inputs({"x": x, "y": y}) is x
    assert transfer_inputs(tokens) is tokens and transfer_inputs(x) is x


def test_step_inputs_for_shared_and_per_learner_data():
    x, y, index = torch.zeros(2, 3), torch.ones(2), torch.arange(2)
    assert step_inputs(((x, y), index)) == {"x": x, "y": y, "index": index}
    t = torch.zeros(5, 3)
    item = {"a": ((x, y), index), "b": ({"x": x, "y": y}, index + 2), TRANSFER: ((t,), index)}
    inputs = step_inputs(item)
    assert set(inputs) == {"batches", "index", "transfer"} and inputs["transfer"] is t
    assert inputs["batches"] == {"a": (x, y), "b": (x, y)}
    assert inputs["index"]["b"].tolist() == [2, 3] and TRANSFER in inputs["index"]


def test_first_x_is_the_first_batch_inputs_or_the_first_learners():
    loader, _ = make_loader(numbered(5, 10), 2, seed=0, shuffle=False)
    assert first_x(loader).squeeze(-1).tolist() == [10, 11]
    loader, _ = make_learner_loader({"a": numbered(4, 20), "b": numbered(4, 30)}, 2, seed=0)
    assert (first_x(loader) >= 20).all() and (first_x(loader) < 24).all()


def test_to_device_moves_tensors_nested_in_mappings_and_leaves_the_rest():
    meta = torch.device("meta")
    moved = to_device({"ids": torch.zeros(2), "inner": {"mask": torch.ones(2)}, "n": 3}, meta)
    assert moved["ids"].is_meta and moved["inner"]["mask"].is_meta and moved["n"] == 3
    assert to_device(torch.zeros(1), meta).is_meta
    pair = (torch.zeros(1), torch.zeros(1))
    assert to_device(pair, meta) is pair  # a tuple is not a mapping: left as it is
