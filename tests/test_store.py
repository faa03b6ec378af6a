"""The teacher store: frozen agents' round 0 on disk, verified, shared by runs and processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from agora import store as store_module
from agora.store import StoreError, TeacherStore, fill, store_path
from agora.train import fit
from tests.helpers import assert_same, fit_data, quick_fit, talk_graph, token_agent

ROOT = Path(__file__).resolve().parent.parent


def unlabelled(n=96, seed=5):
    return TensorDataset(torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)))


class Tokens(torch.utils.data.Dataset):
    """Sentences of 1 to 7 token ids, padded per batch; ``lengths`` as text datasets have."""

    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.ids = [
            torch.randint(1, 20, (int(k),), generator=g)
            for k in torch.randint(1, 8, (n,), generator=g)
        ]
        self.lengths = [len(i) for i in self.ids]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i]

    def collate_fn(self, rows):
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)], mask[k, : len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}


def test_per_token_states_are_packed_and_read_back_padded_to_the_batch(tmp_path):
    torch.manual_seed(0)
    teacher = token_agent("teacher", 6, frozen=True)
    data = Tokens()
    store = fill(teacher, data, tmp_path, batch_size=8, progress=False)
    assert store.packed == ["s", "e"]
    shard = store.shards[0]
    assert shard.tensors["s"].shape == (sum(data.lengths), 6)  # real tokens only, no padding
    rows = [5, 0, 17, 3]
    x = data.collate_fn([data[i] for i in rows])
    out = store.lookup(torch.tensor(rows), teacher.attention_mask(x))
    with torch.no_grad():
        expected = teacher(x)
    real = x["attention_mask"].bool()
    torch.testing.assert_close(out.s[real], expected.s[real])
    torch.testing.assert_close(out.e[real], expected.e[real])
    torch.testing.assert_close(out.y, expected.y)
    assert out.s[~real].abs().sum() == 0


def test_a_run_with_the_store_equals_the_run_without_it(tmp_path):
    train, valid = fit_data(n=128)
    transfer = unlabelled()
    config = dict(epochs=2, batch_size=16, transfer_batch_size=32, cache_frozen=False)
    with_store = talk_graph(dropout=0.0)
    fit(with_store, train, valid, quick_fit(**config, teacher_store=True, store_dir=str(tmp_path)),
        transfer=transfer)  # fmt: skip
    without = talk_graph(dropout=0.0)
    fit(without, train, valid, quick_fit(**config), transfer=transfer)
    assert_same(with_store.state_dict(), without.state_dict(), rtol=1e-4, atol=1e-5)


def test_a_store_is_reused_by_a_second_run_and_the_teacher_is_not_called(tmp_path, monkeypatch):
    train, valid = fit_data(n=128)
    transfer = unlabelled()
    config = quick_fit(epochs=1, batch_size=16, teacher_store=True, store_dir=str(tmp_path))
    seen = []

    def counted(graph):
        teacher = graph.build(torch.randn(2, 8)).agents["teacher"]
        original = teacher.forward
        monkeypatch.setattr(teacher, "forward", lambda x: seen.append(len(x)) or original(x))
        return graph

    fit(counted(talk_graph()), train, valid, config, transfer=transfer)
    assert sum(seen) == len(train) + len(transfer) + len(valid)  # filled, then one evaluation
    assert (
        len(list(tmp_path.iterdir())) == 2
    )  # a store of the labelled data, one of the transfer set
    seen.clear()
    fit(counted(talk_graph()), train, valid, config, transfer=transfer)
    assert sum(seen) == len(valid)  # the evaluation only: training read the stores


def test_a_new_teacher_dataset_or_dtype_is_a_new_key(tmp_path):
    teacher = talk_graph().build(torch.randn(2, 8)).agents["teacher"]
    data = unlabelled()
    first = fill(teacher, data, tmp_path, progress=False)
    assert fill(teacher, data, tmp_path, progress=False).path == first.path
    assert fill(teacher, unlabelled(seed=6), tmp_path, progress=False).path != first.path
    half = fill(teacher, data, tmp_path, dtype="bf16", progress=False)
    assert half.path != first.path and half.bytes < 0.6 * first.bytes
    index = torch.tensor([4, 2])
    torch.testing.assert_close(half.lookup(index).e, first.lookup(index).e, rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        teacher.lower[0].weight[0, 0] += 1e-3
    assert fill(teacher, data, tmp_path, progress=False).path != first.path
    assert len(list(tmp_path.iterdir())) == 4


def test_a_corrupted_shard_is_an_error_naming_the_file(tmp_path):
    teacher = talk_graph().build(torch.randn(2, 8)).agents["teacher"]
    store = fill(teacher, unlabelled(), tmp_path, progress=False)
    shard = store.path / "shard-00000.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"shard-00000\.safetensors: checksum mismatch"):
        fill(teacher, unlabelled(), tmp_path, progress=False)
    (store.path / "store.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"store\.json: unreadable"):
        TeacherStore.open(store.path)


def test_a_process_that_loses_the_race_to_fill_a_key_uses_the_winners_store(tmp_path, monkeypatch):
    teacher = talk_graph().build(torch.randn(2, 8)).agents["teacher"]
    winner = fill(teacher, unlabelled(), tmp_path, progress=False)
    opened = TeacherStore.open
    calls = {"n": 0}

    def not_yet_there(path, key=None):  # the loser looked before the winner renamed
        calls["n"] += 1
        return None if calls["n"] == 1 else opened(path, key)

    monkeypatch.setattr(TeacherStore, "open", staticmethod(not_yet_there))
    loser = fill(teacher, unlabelled(), tmp_path, progress=False)
    assert loser.path == winner.path
    assert [p.name for p in tmp_path.iterdir()] == [winner.path.name]  # its own copy removed


KILLED_FILL = """
import sys, time, torch
from torch.utils.data import TensorDataset
from agora import store
from tests.helpers import talk_graph

class Slow(TensorDataset):
    def __getitems__(self, rows):
        time.sleep(0.05)
        return [self[i] for i in rows]

store.ROWS_PER_SHARD = 8
teacher = talk_graph().build(torch.randn(2, 8)).agents["teacher"]
data = Slow(torch.randn(400, 8, generator=torch.Generator().manual_seed(5)))
store.fill(teacher, data, sys.argv[1], batch_size=8, progress=False)
"""


def test_kill_9_while_a_store_is_written_leaves_nothing_a_later_run_reads(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_FILL, str(tmp_path)], env=env, cwd=ROOT)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".*/shard-00002.safetensors")):
        assert writer.poll() is None and time.time() < deadline, "the fill ended before the kill"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert [p.name.startswith(".") for p in tmp_path.iterdir()] == [True]  # only its private folder
    teacher = talk_graph().build(torch.randn(2, 8)).agents["teacher"]
    data = TensorDataset(torch.randn(400, 8, generator=torch.Generator().manual_seed(5)))
    key = store_module.store_key(
        store_module.agent_digest(teacher), store_module.dataset_digest(data)
    )
    assert TeacherStore.open(store_path(tmp_path, teacher, key), key) is None
    store = fill(teacher, data, tmp_path, progress=False)
    assert store.examples == 400
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]  # the abandoned one removed


def test_agora_cache_fills_once_and_reports_size_and_time(tmp_path, capsys):
    from agora.cli import main

    assert main(["cache", "tiny-transfer", "--store-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "teacher on transfer: 2048 examples" in printed and "bytes an example" in printed
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2
    stamps = [p.stat().st_mtime_ns for p in folders]
    assert main(["cache", "tiny-transfer", "--store-dir", str(tmp_path)]) == 0
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.iterdir())] == stamps
