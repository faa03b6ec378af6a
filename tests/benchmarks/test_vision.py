"""`python -m benchmarks vision --quick`: every method on a tiny random ViT, generated images."""

from __future__ import annotations

import json

from tests.needs import skip_module_without

skip_module_without("vision")


def test_quick_bench_runs_every_method_and_writes_its_page(tmp_path):
    from benchmarks.harness import main

    argv = ["vision", "--quick", "--workers", "1", "--out", str(tmp_path)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    results = json.loads((tmp_path / "vision-quick.json").read_text())
    assert [row["method"] for row in results["rows"]] == [
        "Scratch", "LD", "FD", "FitNet", "Hybrid", "TD k=0", "TD k=1", "TD k=2", "TD no SC",
        "TD noise",
    ]  # fmt: skip
    page = (tmp_path / "vision-quick.md").read_text()
    assert "## CIFAR-10 (test accuracy, %)" in page and "| TD k=2 |" in page
    assert "| 94.10 |" in page  # the paper's Table 4 beside it
    assert "tiny random ViT" in page and "ImageNet-21k" not in page  # it says what it ran
    (tmp_path / "vision-quick.md").unlink()
    assert main(["vision", "--quick", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "vision-quick.md").read_text() == page
