"""`agora bench speed --quick` runs end to end and writes its page (a smoke test)."""

import json

from agora.cli import main


def test_quick_speed_benchmark_writes_its_page(tmp_path, capsys):
    assert main(["bench", "speed", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "speed.json").read_text())
    page = (tmp_path / "speed.md").read_text()
    assert results["command"].startswith("agora bench speed --quick")
    assert results["td_vs_hand"]["a_ms"] > 0 and results["td_vs_hand"]["b_ms"] > 0
    assert [p["value"] for p in results["rounds"]] == [0, 2]
    assert "smoke test" in page and "hand-written" in page and "Threads: 1" in page
    assert {m["kind"] for m in results["memory"]} == {"agora", "hand"}
    assert capsys.readouterr().out.strip().endswith("speed.md")
