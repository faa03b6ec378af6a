"""`python -m benchmarks speed --quick` runs end to end and writes its page (a smoke test)."""

import json

from benchmarks.harness import main


def test_quick_speed_benchmark_writes_its_page(tmp_path, capsys):
    assert main(["speed", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "speed-quick.json").read_text())
    page = (tmp_path / "speed-quick.md").read_text()
    assert results["command"].startswith("python -m benchmarks speed --quick")
    assert results["td_vs_hand"]["a_ms"] > 0 and results["td_vs_hand"]["b_ms"] > 0
    assert [p["value"] for p in results["rounds"]] == [0, 2]
    assert results["balancer"]["a_ms"] > 0 and "## The loss balancer's cost" in page
    assert "smoke test" in page and "hand-written" in page and "Threads: 1" in page
    assert {m["kind"] for m in results["memory"]} == {"agora", "hand"}
    assert capsys.readouterr().out.strip().endswith("speed-quick.md")
    assert all(m["step_peak_mib"] > 0 for m in results["memory"])
    (tmp_path / "speed-quick.md").unlink()
    assert main(["speed", "--quick", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "speed-quick.md").read_text() == page


def test_without_data_the_speed_models_run_on_random_ids_of_the_same_shapes(tmp_path):
    from benchmarks.speed.task import _meta_and_batch, agora_step, paper_graph

    meta, x, y = _meta_and_batch(str(tmp_path / "no-data-here"), 16)
    assert int(x["title"].max()) < meta.n_words and x["genres"].shape == (16, meta.n_genres)
    agora_step(paper_graph(meta, x, rounds=1), x, y)()  # one step, nothing out of range
