"""`python -m benchmarks gradients --quick` on a slice of MovieLens 100K."""

from __future__ import annotations

import json

import pytest

from benchmarks.harness import main
from tests.benchmarks.helpers import needs_data


@needs_data
def test_quick_bench_on_a_slice_writes_both_tables(tmp_path):
    argv = ["gradients", "--quick", "--limit", "300", "--workers", "1", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    text = (tmp_path / "gradients-quick.md").read_text()
    assert "## The pull of each term" in text and "## Best validation RMSE" in text
    assert "| War | TD, w = 10 |" in text
    assert "## With the loss balancer" in text and "| War | TD balanced, w = 0.3 |" in text
    assert "- War: the lowest mean validation RMSE is at w = " in text
    every = json.loads((tmp_path / "gradients-quick.json").read_text())["rows"]
    rows = [r for r in every if not r["balance"]]
    assert {r["weight"] for r in rows} == {0.0, 0.1, 10.0}
    assert {r["weight"] for r in every if r["balance"] and not r["solo"]} == {0.3, 1.0}
    assert {r["solo"] for r in every if r["solo"]} == {
        "interact",
        "message_consistency",
        "state_consistency",
    }
    assert "| War | state_consistency |" in text
    low, high = (next(r for r in rows if r["weight"] == w) for w in (0.1, 10.0))
    # same student, same batches, same random numbers at the start: only the weight differs
    assert high["before"]["interact"] == pytest.approx(100 * low["before"]["interact"], rel=1e-4)
    # the balancer measured once (2 steps), on the same batch and student: its scales do not
    # depend on the weight, and they lift the tiny raw terms
    third, one = (next(r for r in every if r["balance"] and r["weight"] == w) for w in (0.3, 1.0))
    assert third["scales"] == pytest.approx(one["scales"], rel=1e-4)
    assert all(scale > 1 for scale in one["scales"].values())
    (tmp_path / "gradients-quick.md").unlink()
    assert main(["gradients", "--quick", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "gradients-quick.md").read_text() == text
