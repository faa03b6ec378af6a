"""SST-2: the splits, the tokenisation, a corrupted file."""

from __future__ import annotations

import pytest
import torch

from tests.needs import needs, needs_sst2


@needs_sst2
@needs("text")  # the teacher's tokenizer
def test_sst2_splits_are_carved_and_tokenised():
    from agora.data.sst2 import sst2_task

    task = sst2_task(train_size=40, valid_size=20, max_length=12, test_size=10)
    assert {k: len(v) for k, v in task.items()} == {"train": 40, "valid": 20, "test": 10}
    again = sst2_task(train_size=60, valid_size=20, max_length=12, test_size=10)
    assert all(torch.equal(a, b) for a, b in zip(task["valid"].ids, again["valid"].ids))
    assert all(torch.equal(a, b) for a, b in zip(task["train"].ids, again["train"].ids[:40]))
    x, _ = task["train"].__getitems__([0, 1, 2])
    assert x["input_ids"].shape[1] == max(task["train"].lengths[:3]) <= 12
    assert x["attention_mask"].sum(1).tolist() == task["train"].lengths[:3]
    assert x["input_ids"][:, 0].eq(101).all()  # [CLS] from the teacher's tokenizer


@needs_sst2
def test_a_corrupted_sst2_file_is_named(tmp_path):
    from agora.data.sst2 import DataError, read_tsv

    bad = tmp_path / "dev.tsv"
    bad.write_text("sentence\tlabel\nfine .\t1\n")
    with pytest.raises(DataError, match=r"dev\.tsv: checksum mismatch"):
        read_tsv(bad)
    bad.write_text("sentence\tlabel\nno label here\n")
    with pytest.raises(DataError, match="line 2"):
        read_tsv(bad, verify=False)
