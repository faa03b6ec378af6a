"""`python -m benchmarks text --quick` writes its page."""

from __future__ import annotations

from tests.needs import needs, needs_sst2


@needs_sst2
@needs("text")
def test_bench_text_quick_writes_its_page(tmp_path):
    import json

    from benchmarks.harness import main

    assert main(["text", "--quick", "--workers", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "text-quick.json").read_text())
    page = (tmp_path / "text-quick.md").read_text()
    assert "pre-trained + linear probe" in page and "TD k=1" in page and "cache on" in page
    assert "## Results, fine-tuned teacher" in page and "TD balanced" in page
    for track in ("probe", "fine-tuned"):
        methods = {row["method"] for row in results["rows"] if row["track"] == track}
        assert methods >= {"LD", "TD k=0", "TD k=1", "TD balanced"}, track
    assert [row["method"] for row in results["rows"] if row["track"] == ""] == ["Scratch"]
    assert all(0 <= row["test_accuracy"] <= 1 for row in results["rows"])
    assert {s["track"] for s in results["searches"]} == {"both", "probe", "fine-tuned"}
    assert "| fine-tuned | TD balanced | weight |" in page
    assert 0 <= results["teachers"]["fine-tuned"]["test"] <= 1
    assert "read back from its run log" not in page

    # a second invocation trains nothing new: its page says which runs it read back
    assert main(["text", "--quick", "--workers", "1", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "text-quick.json").read_text())
    assert all(row.get("reused") for row in again["rows"])
    assert "runs were finished by an earlier invocation" in (tmp_path / "text-quick.md").read_text()
