"""`python -m benchmarks speed --quick` runs end to end, shows its progress and writes its page
(a smoke test)."""

import json
import re
import time

import pytest

from benchmarks.harness import main
from tests.benchmarks.helpers import benchmark


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``python -m benchmarks speed --quick`` run as a user starts it: the finished
    process, its wall time as seen from outside, and its folder."""
    out = tmp_path_factory.mktemp("speed")
    started = time.perf_counter()
    done = benchmark("speed", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return done, time.perf_counter() - started, out


def test_quick_speed_benchmark_writes_its_page(quick):
    done, _, out = quick
    results = json.loads((out / "speed-quick.json").read_text())
    page = (out / "speed-quick.md").read_text()
    assert results["command"].startswith("python -m benchmarks speed --quick")
    assert results["td_vs_hand"]["a_ms"] > 0 and results["td_vs_hand"]["b_ms"] > 0
    assert [p["value"] for p in results["rounds"]] == [0, 2]
    assert results["balancer"]["a_ms"] > 0 and "## The loss balancer's cost" in page
    phases = results["where"]["phases"]  # each phase of both steps, and agora's forward profiled
    assert sorted(phases) == ["agora", "hand-written"]
    assert all(sorted(p) == ["backward", "forward", "optimizer"] for p in phases.values())
    assert all(ms > 0 for p in phases.values() for ms in p.values())
    profile = results["where"]["profile"]
    assert profile["operators"] > 0 and profile["agora's Python"] > 0
    assert "## Where the time goes" in page and "| agora's Python |" in page
    assert "smoke test" in page and "hand-written" in page and "Threads: 1" in page
    assert {m["kind"] for m in results["memory"]} == {"agora", "hand"}
    assert done.stdout.strip().endswith("speed-quick.md")
    assert all(m["step_peak_mib"] > 0 for m in results["memory"])
    (out / "speed-quick.md").unlink()
    assert main(["speed", "--quick", "--report-only", "--out", str(out)]) == 0
    assert (out / "speed-quick.md").read_text() == page


def test_the_speed_benchmark_shows_its_progress_and_its_whole_wall_time(quick):
    done, seen_from_outside, out = quick
    timings = json.loads((out / "speed-quick.json").read_text())["timings"]
    parts = [name for name in timings if name != "total"]
    # a line on stderr as each part starts: which, i of n, the time so far, then what is left
    lines = re.findall(r"^speed \[(\d+)/(\d+)\] (.+): (.+) so far(.*)$", done.stderr, re.M)
    assert [(int(i), int(n), name) for i, n, name, _, _ in lines] == [
        (i, len(parts), name) for i, name in enumerate(parts, 1)
    ], done.stderr
    assert lines[0][4] == "" and all(left.startswith(", about ") for *_, left in lines[1:])
    assert f"speed: {len(parts)} parts done in" in done.stderr
    assert "so far" not in done.stdout
    # the total is the whole command's: at least its parts, and all but Python's start and exit
    # (seconds on a quiet machine, more on a busy one: the check is of what is counted)
    assert timings["total"] >= sum(timings[name] for name in parts)
    assert 0.75 * seen_from_outside < timings["total"] < seen_from_outside
    page = (out / "speed-quick.md").read_text()
    assert (
        "## Wall time" in page and "| **total** |" in page and " in all, the whole command" in page
    )


def test_without_data_the_speed_models_run_on_random_ids_of_the_same_shapes(tmp_path):
    from benchmarks.speed.task import _meta_and_batch, agora_step, paper_graph

    meta, x, y = _meta_and_batch(str(tmp_path / "no-data-here"), 16)
    assert int(x["title"].max()) < meta.n_words and x["genres"].shape == (16, meta.n_genres)
    agora_step(paper_graph(meta, x, rounds=1), x, y)()  # one step, nothing out of range


def test_the_hand_written_step_computes_agoras_loss(tmp_path):
    """The comparison is fair: without dropout, the hand-written forward pass gives the loss
    agora's Orchestrator gives on the same graph."""
    import torch

    from agora.orchestrator import Orchestrator
    from benchmarks.speed.task import _meta_and_batch, hand_written_loss, paper_graph

    meta, x, y = _meta_and_batch(str(tmp_path / "no-data-here"), 16)
    graph = paper_graph(meta, x, rounds=2).eval()
    ours = Orchestrator(graph).eval()(x, y).loss
    theirs = hand_written_loss(graph, x, y, rounds=2, weight=0.1)()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
