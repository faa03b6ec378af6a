"""`python -m benchmarks graphs --quick` on a slice of MovieLens 100K: the page and its three tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.harness import main

DATA_DIR = os.environ.get("AGORA_DATA_DIR", "")
HAVE_DATA = bool(DATA_DIR) and (Path(DATA_DIR) / "ml-100k" / "u.data").is_file()


@pytest.mark.skipif(
    not HAVE_DATA,
    reason="MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/",
)
def test_quick_bench_on_a_slice_writes_every_table(tmp_path, capsys):
    argv = ["graphs", "--quick", "--limit", "300", "--workers", "1", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    text = (tmp_path / "graphs-quick.md").read_text()
    for heading in ("## a. Three teachers", "## b. One teacher, eight students", "## c. Peers"):
        assert heading in text
    assert "| War (Genre 8) |" in text and "wall time of all students" in text
    assert "weight 10 (of 10)" in text  # the chosen setting and its grid
    results = json.loads((tmp_path / "graphs-quick.json").read_text())
    methods = {(r["experiment"], r["method"]) for r in results["rows"]}
    assert ("teachers", "TD 3 tutors, router") in methods and ("peers", "peers") in methods
    router = [r for r in results["rows"] if r["method"] == "TD 3 tutors, router"]
    assert sum(router[0]["weights"].values()) == pytest.approx(1)  # whom the student listens to
    (tmp_path / "graphs-quick.md").unlink()
    assert main(["graphs", "--quick", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "graphs-quick.md").read_text() == text
    # every finished run is on disk: a second run trains nothing and gives the same rows
    log = tmp_path / "graphs-quick-runs.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == len({json.loads(line)["key"] for line in lines}) > 5
    assert main([*argv, str(tmp_path)]) == 0
    assert log.read_text().splitlines() == lines
    again = json.loads((tmp_path / "graphs-quick.json").read_text())
    assert [r["test_rmse"] for r in again["rows"]] == [r["test_rmse"] for r in results["rows"]]
    assert all(r["reused"] for r in again["rows"]) and not any(
        "reused" in r for r in results["rows"]
    )
    assert "read back from the run log" in (tmp_path / "graphs-quick.md").read_text()


class _Genres:
    def dense_genres(self, n):
        return [f"g{i}" for i in range(n)]


def test_weights_replace_tds_tuning_grid_and_bad_ones_are_refused(capsys):
    from benchmarks.graphs.task import GRID, plan

    assert plan(_Genres(), False, 5, None).grid == GRID
    wide = plan(_Genres(), False, 5, None, weights=(1.0, 10.0))
    assert wide.grid == {**GRID, "weight": (1.0, 10.0)}
    for bad in ("0,1", "1,x"):
        with pytest.raises(SystemExit) as caught:
            main(["graphs", "--weights", bad])
        assert caught.value.code == 2
        assert "--weights" in capsys.readouterr().err
