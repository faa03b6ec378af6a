"""A new user's first hour, end to end, as the README and docs/quickstart.md tell it.

usage: python first_hour.py WORK_DIR

In WORK_DIR: train the tiny config with its baseline (`agora run tiny --baseline`), read the
comparison it writes, evaluate the trained graph on the test split (`agora eval`), load it in
Python (`agora.load`, also with `agents=` built in Python), and make the one mistake a manual
loop invites (an optimizer before `graph.build`). Writes WORK_DIR/first_hour.json: what each
step returned and how long it took.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import agora
from agora.data.synthetic import regression
from agora.models.toy import mlp_agent


def agora_cli(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agora.cli", *args], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"agora {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def main(work: Path) -> None:
    report: dict = {"seconds": {}}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        report["seconds"][name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    # 1. the paper's job, here the tiny one: did talking help?
    report["run_stdout"] = agora_cli("run", "tiny", "--baseline", "--out", "runs/tiny", cwd=work)
    run = work / "runs" / "tiny"
    report["comparison"] = json.loads((run / "comparison.json").read_text())
    lap("agora run tiny --baseline")

    # 2. the trained graph on the test split, from the command line
    report["eval_test"] = json.loads(agora_cli("eval", "runs/tiny", "--split", "test", cwd=work))
    lap("agora eval --split test")

    # 3. the trained graph in Python: from the run, and with agents built in Python
    test = regression(n=640, d_in=8, seed=0, test_fraction=0.2)["test"]
    graph = agora.load(run)
    report["load"] = agora.evaluate(graph, test)
    agents = {
        "teacher": mlp_agent("teacher", 8, 32, depth=2, frozen=True),
        "student": mlp_agent("student", 8, 8),  # its talk settings are the stored edge's
    }
    report["load_agents"] = agora.evaluate(agora.load(run, agents=agents), test)
    lap("agora.load + evaluate")

    # 4. the trap: an optimizer made before build would miss the codecs
    fresh = agora.Graph([mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("student", 8, 8)])
    fresh.add_edge("student", "teacher")
    try:
        torch.optim.Adam(fresh.parameters())
        report["optimizer_before_build"] = "accepted"
    except agora.GraphError as error:
        report["optimizer_before_build"] = str(error)
    (work / "first_hour.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
