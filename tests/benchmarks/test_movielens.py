"""`python -m benchmarks movielens --quick`, run as a user runs it (needs ``AGORA_DATA_DIR``)."""

from __future__ import annotations

import json

from benchmarks.harness import main
from tests.benchmarks.helpers import benchmark, needs_data


@needs_data
def test_quick_run_writes_the_results_page(tmp_path, capsys):
    """The CI smoke test of the whole benchmark: about a minute on two cores."""
    out = tmp_path / "results"
    done = benchmark("movielens", "--quick", "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"results: {out / 'movielens-quick.md'}")
    for suffix in ("json", "md", "csv", "png"):
        assert (out / f"movielens-quick.{suffix}").stat().st_size > 0, suffix
    results = json.loads((out / "movielens-quick.json").read_text())
    assert results["command"] == f"python -m benchmarks movielens --quick --out {out} --workers 2"
    assert results["quick"] and {row["method"] for row in results["rows"]} >= {"Scratch", "TD"}
    page = (out / "movielens-quick.md").read_text()
    assert "smoke test, not a result" in page

    # --report-only rewrites the page from movielens-quick.json, without training
    (out / "movielens-quick.md").unlink()
    assert main(["movielens", "--quick", "--report-only", "--out", str(out)]) == 0
    assert (out / "movielens-quick.md").read_text() == page
    assert capsys.readouterr().out.strip() == f"results: {out / 'movielens-quick.md'}"
