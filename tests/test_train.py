"""fit() on Accelerate: exact resume, DDP, NaN stops and early stopping."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from agora import Graph, GraphError, checkpoint
from agora.data.download import DataError
from agora.errors import FieldError
from agora.folder import RunFolderError
from agora.models.toy import mlp_agent
from agora.train import NonFiniteLossError, fit
from tests.helpers import assert_same, crash_at_step, fit_data, quick_fit, talk_graph

ROOT = Path(__file__).resolve().parent.parent


PATIENCE = 600


SCRIPT = ROOT / "tests" / "scripts" / "train_tiny.py"


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def assert_ddp_equal(ddp, one):
    """DDP's weights equal one process's up to float32 summation order, as Adam amplifies it:
    all within 1e-3 and 99.9 % within 1e-5 (a wrong sharding is 5e-2 away)."""
    assert ddp.keys() == one.keys()
    diffs = torch.cat([(ddp[k] - one[k]).abs().flatten() for k in ddp])
    assert diffs.max() < 1e-3, f"largest difference {diffs.max():.2e}"
    assert torch.quantile(diffs, 0.999) < 1e-5, (
        f"99.9th percentile {torch.quantile(diffs, 0.999):.2e}"
    )


def run_script(out, *args, **popen):
    cmd = [sys.executable, str(SCRIPT), str(out), "--checkpoint-every", "5", *args]
    return subprocess.Popen(cmd, env=ENV, cwd=ROOT, stderr=subprocess.PIPE, **popen)


def test_a_frozen_agent_is_evaluated_once_and_its_metrics_repeated(monkeypatch, tmp_path):
    train, valid = fit_data()
    g = talk_graph().build(torch.randn(2, 8))
    calls = []
    teacher = g.agents["teacher"]
    original = teacher.forward
    monkeypatch.setattr(teacher, "forward", lambda x: calls.append(len(x)) or original(x))
    fit(g, train, valid, quick_fit(epochs=3, cache_frozen=True), out_dir=tmp_path)
    assert sum(calls) == len(train) + len(valid)  # the cache's pass, one evaluation
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    evals = [json.loads(line) for line in lines if "eval/teacher/rmse" in line]
    assert len(evals) == 3 and all("eval/student/rmse" in e for e in evals)
    from agora.train import evaluate

    assert {e["eval/teacher/rmse"] for e in evals} == {evaluate(g, valid)["teacher/rmse"]}
    assert len({e["eval/student/rmse"] for e in evals}) == 3  # the student's change


def test_a_frozen_agent_sharing_a_trainable_part_is_evaluated_every_time(tmp_path):
    train, valid = fit_data()
    g = Graph([mlp_agent("teacher", 8, 8, frozen=True), mlp_agent("student", 8, 8)], message_dim=8)
    g.agents["teacher"].head = g.agents["student"].head  # trains with the student
    g.add_edge("student", "teacher", "logit")
    fit(g, train, valid, quick_fit(epochs=3), out_dir=tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    evals = [json.loads(line)["eval/teacher/rmse"] for line in lines if "eval/" in line]
    assert len(set(evals)) == 3


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The plain run (3 epochs of 12 steps) the interrupted ones are compared with."""
    out = tmp_path_factory.mktemp("uninterrupted")
    reference = run_script(out)
    assert reference.wait(timeout=PATIENCE) == 0, reference.stderr.read().decode()
    return load_file(str(out / "final.safetensors"))


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_stopped_mid_epoch_and_resumed_ends_with_the_same_weights(tmp_path, uninterrupted, stop):
    """kill -9 leaves the lock for the resumed run to take over; SIGTERM unwinds the run, which
    releases it and says so."""
    interrupted = run_script(tmp_path / "interrupted", "--slow", "0.1")
    latest = tmp_path / "interrupted" / "checkpoints" / "latest"
    deadline = time.time() + PATIENCE
    while time.time() < deadline:  # 12 batches an epoch: step 15 or 20 is mid-epoch
        if latest.exists() and latest.read_text().strip() >= "step-00000015":
            break
        assert interrupted.poll() is None, interrupted.stderr.read().decode()
        time.sleep(0.02)
    interrupted.send_signal(stop)
    code = interrupted.wait(timeout=30)
    lock = tmp_path / "interrupted" / ".lock"
    if stop == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM and not lock.exists()
        assert "SIGTERM: the run writing" in interrupted.stderr.read().decode()
    else:
        assert code == -signal.SIGKILL and lock.exists()
    killed_at = int(latest.read_text().strip().split("-")[1])
    assert killed_at % 12 != 0, f"checkpoint {killed_at} is at an epoch's end, not mid-epoch"
    assert not (tmp_path / "interrupted" / "final.safetensors").exists()

    resumed = run_script(tmp_path / "interrupted")
    assert resumed.wait(timeout=PATIENCE) == 0, resumed.stderr.read().decode()
    assert_same(uninterrupted, load_file(str(tmp_path / "interrupted" / "final.safetensors")))
    records = [json.loads(line) for line in (tmp_path / "interrupted" / "metrics.jsonl").open()]
    steps = [record["step"] for record in records if "lr" in record]  # training lines
    assert steps == sorted(set(steps))  # nothing logged twice across the kill


def two_processes(out: Path, *args: str) -> subprocess.CompletedProcess:
    """The tiny training script under ``accelerate launch`` on two CPU processes (gloo), on a
    free port (tests running side by side each launch their own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port), str(SCRIPT), str(out), *args,
    ]  # fmt: skip
    return subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, timeout=PATIENCE)


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    common = ["--epochs", "1", "--dropout", "0"]  # dropout masks would differ per process
    single = run_script(tmp_path / "single", "--batch-size", "16", *common)
    assert single.wait(timeout=PATIENCE) == 0, single.stderr.read().decode()
    ddp = two_processes(tmp_path / "ddp", "--batch-size", "8", "--checkpoint-every", "5", *common)
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    rank0 = load_file(str(tmp_path / "ddp" / "final-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "final-rank1.safetensors"))
    assert_same(rank0, rank1)  # all-reduced gradients: both ranks hold identical weights
    one = load_file(str(tmp_path / "single" / "final.safetensors"))
    # Same data, same order, same global batch of 16. The loss is a mean over examples, so the
    # mean of the two ranks' 8-example gradients is the 16-example gradient up to float32
    # summation order. Adam divides by sqrt(v): where a gradient is near zero, that rounding
    # can move a weight by a sizeable part of lr. Measured after these 12 Adam steps: 8 of
    # 40,990 weights differ by more than 1e-5, the largest by 1.6e-4; the 99.9th percentile is
    # 1.2e-7. A wrong sharding (one process stepping on batches of 8) ends 5e-2 away.
    assert_ddp_equal(rank0, one)


def test_the_balancer_measures_its_gradient_norms_under_ddp(tmp_path):
    ddp = two_processes(tmp_path / "ddp", "--batch-size", "8", "--epochs", "1", "--balance")
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    rank0 = load_file(str(tmp_path / "ddp" / "final-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "final-rank1.safetensors"))
    assert_same(rank0, rank1)
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").open()]
    assert any(line.get("scale/interact[student]", 1.0) != 1.0 for line in logged)


def test_two_process_ddp_with_per_learner_data_matches_one_process(tmp_path):
    """Two students, each on its own data, under DDP: each rank takes whole steps (a batch of
    every learner), so two ranks of 8 per learner make one process's step of 16."""
    common = ["--epochs", "1", "--dropout", "0", "--per-learner"]
    single = run_script(tmp_path / "single", "--batch-size", "16", *common)
    assert single.wait(timeout=PATIENCE) == 0, single.stderr.read().decode()
    ddp = two_processes(tmp_path / "ddp", "--batch-size", "8", *common)
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    rank0 = load_file(str(tmp_path / "ddp" / "final-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "final-rank1.safetensors"))
    assert_same(rank0, rank1)
    one = load_file(str(tmp_path / "single" / "final.safetensors"))
    assert any(k.startswith("agents.b.") for k in one)  # both students trained and were saved
    assert_ddp_equal(rank0, one)  # the tolerance of the shared-data test above


def test_nan_stops_training_naming_the_term_and_keeps_the_last_checkpoint(tmp_path):
    train, _ = fit_data()
    x, y = train.tensors
    y = y.clone()
    y[150] = float("nan")  # first seen in some batch of the first epoch
    with pytest.raises(NonFiniteLossError, match=r"task\[student\].*last good checkpoint: .*step-"):
        fit(talk_graph(), TensorDataset(x, y), None, quick_fit(batch_size=16, checkpoint_every=1, cache_frozen=False),
            out_dir=tmp_path)  # fmt: skip
    latest = checkpoint.pointer(tmp_path, "latest")
    assert latest is not None
    agents = {"teacher": mlp_agent("teacher", 8, 32), "student": mlp_agent("student", 8, 8)}
    loaded = checkpoint.load(latest, agents=agents)
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_nan_in_an_edge_term_names_the_edge(monkeypatch):
    from agora.protocols import logit

    def broken(*args, **kwargs):
        return torch.tensor(float("inf"))

    monkeypatch.setattr(logit, "logit_distance", broken)
    with pytest.raises(NonFiniteLossError, match=r"logit\[student->teacher\]"):
        fit(talk_graph(), fit_data()[0], None, quick_fit(epochs=1))


def test_best_validation_weights_are_kept(tmp_path):
    train, valid = fit_data()
    g = talk_graph()
    result = fit(g, train, valid, quick_fit(epochs=6, lr=3e-2, patience=2), out_dir=tmp_path)
    evals = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if "eval/student/rmse" in line
    ]
    best = min(evals, key=lambda e: e["eval/student/rmse"])
    assert result.metrics["student/rmse"] == best["eval/student/rmse"]
    assert result.best_step == best["step"]
    from agora.train import evaluate

    assert evaluate(g, valid)["student/rmse"] == pytest.approx(best["eval/student/rmse"], rel=1e-6)


@pytest.mark.parametrize("process", [0, 1])
def test_a_resumed_ddp_rank_replays_its_epochs_batches(process):
    """Under DDP, a rank resumed part-way through epoch 3 sees the rest of epoch 3's batches
    (a skipping loader does not pass the epoch on to agora's sampler by itself)."""
    from accelerate.data_loader import prepare_data_loader

    from agora.loaders import epoch_batches, make_loader

    def shard():
        loader, sampler = make_loader(TensorDataset(torch.arange(40.0)), 4, seed=0, shuffle=True)
        kwargs = {"num_processes": 2, "process_index": process, "put_on_device": False}
        return prepare_data_loader(loader, **kwargs), sampler

    whole = [item[0][0].tolist() for item in epoch_batches(*shard(), epoch=3)]
    resumed = [item[0][0].tolist() for item in epoch_batches(*shard(), epoch=3, skip=2)]
    assert len(whole) == 5 and resumed == whole[2:]
    first = [item[0][0].tolist() for item in epoch_batches(*shard(), epoch=0)]
    assert first != whole  # epochs differ, so replaying epoch 0 would fail the check above


def _eval_steps(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines if any(k.startswith("eval/") for k in line)]


def test_evals_per_epoch_evaluates_evenly_and_once_at_the_epochs_end(tmp_path):
    train, valid = fit_data()  # 192 examples: 12 batches of 16 per epoch
    fit(talk_graph(), train, valid, quick_fit(epochs=2, batch_size=16, evals_per_epoch=4),
        out_dir=tmp_path)  # fmt: skip
    assert _eval_steps(tmp_path) == [3, 6, 9, 12, 15, 18, 21, 24]


def test_max_steps_stops_within_an_epoch_evaluates_and_a_rerun_is_refused(tmp_path):
    train, valid = fit_data()
    config = quick_fit(epochs=5, batch_size=16, max_steps=20)
    result = fit(talk_graph(), train, valid, config, out_dir=tmp_path)
    assert result.steps == 20 and _eval_steps(tmp_path) == [12, 20]
    with pytest.raises(RunFolderError, match="holds a finished run"):
        fit(talk_graph(), train, valid, config, out_dir=tmp_path)
    assert _eval_steps(tmp_path) == [12, 20]  # untouched


def test_the_balancer_is_off_by_default_and_then_never_touches_the_loss(monkeypatch):
    import agora.prepare

    def refuse(*args, **kwargs):
        raise AssertionError("a balancer was made")

    monkeypatch.setattr(agora.prepare, "LossBalancer", refuse)
    train, valid = fit_data()
    fit(talk_graph(), train, valid, quick_fit(epochs=1))  # runs: no balancer was asked for


def test_a_balanced_run_logs_its_scales_and_resumes_them(tmp_path, monkeypatch):
    train, valid = fit_data()
    config = quick_fit(
        epochs=2, batch_size=32, balance_losses=True, balance_every=4, checkpoint_every=4
    )
    fit(talk_graph(), train, valid, config, out_dir=tmp_path / "whole")
    logged = [
        json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    ]
    scales = [line for line in logged if "scale/interact[student]" in line]
    assert scales and all(line["scale/interact[student]"] > 1 for line in scales)
    whole = load_file(
        str(tmp_path / "whole" / "model" / "agents" / "student" / "backbone.safetensors")
    )

    # the same run crashing after its first epoch (6 steps, checkpointed), then resumed: the
    # balancer's means and call count come back too (it measures again at call 8, not 6)
    def split_run():
        return fit(talk_graph(), train, valid, config, out_dir=tmp_path / "split")

    crash_at_step(monkeypatch, 6, split_run)
    fit(talk_graph(), train, valid, config, out_dir=tmp_path / "split")
    split = load_file(
        str(tmp_path / "split" / "model" / "agents" / "student" / "backbone.safetensors")
    )
    assert_same(whole, split)


# -- bad data and settings fail before (or as soon as) they would train a wrong answer --------


def test_a_metric_typo_fails_before_the_first_step(tmp_path):
    train, valid = fit_data()
    with pytest.raises(FieldError, match=r"'student/rmes' is not among this graph's metrics"):
        fit(talk_graph(), train, valid, quick_fit(metric="student/rmes"), out_dir=tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_a_nan_validation_target_stops_the_run_naming_the_agent():
    train, valid = fit_data()
    x, y = valid.tensors
    y = y.clone()
    y[3] = float("nan")
    with pytest.raises(DataError, match=rf"1 of {len(y)} targets of agent '\w+' are NaN"):
        fit(talk_graph(), train, TensorDataset(x, y), quick_fit(epochs=1))


def test_kl_on_a_one_output_head_is_an_error_not_a_zero_loss():
    train, valid = fit_data()
    graph = Graph([mlp_agent("teacher", 8, 16, frozen=True), mlp_agent("student", 8, 8)])
    graph.add_edge("student", "teacher", "logit", logit_distance="kl")
    with pytest.raises(GraphError, match=r"logit_distance 'kl' needs class logits"):
        fit(graph, train, valid, quick_fit(epochs=1))


def test_empty_data_is_named():
    train, valid = fit_data()
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0))
    with pytest.raises(ValueError, match=r"fit: train_data is empty"):
        fit(talk_graph(), empty, valid, quick_fit(epochs=1))
    with pytest.raises(ValueError, match=r"fit: eval_data is empty"):
        fit(talk_graph(), train, empty, quick_fit(epochs=1))


# patience 1 at lr 0.02 stops this run after 3 of its 8 epochs
EARLY_STOPPED = ("--epochs", "8", "--patience", "1", "--dropout", "0.0", "--lr", "0.02")


@pytest.fixture(scope="module")
def early_stopped(tmp_path_factory):
    """The uninterrupted run every killed one is compared with."""
    out = tmp_path_factory.mktemp("reference")
    reference = run_script(out, *EARLY_STOPPED)
    assert reference.wait(timeout=PATIENCE) == 0, reference.stderr.read().decode()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert lines[-1]["step"] < 8 * 12  # it stopped early
    return load_file(str(out / "final.safetensors")), [line["step"] for line in lines]


def checkpoints_up_to(step: int) -> int:
    """How many checkpoints ``EARLY_STOPPED`` writes up to ``step``: every 5 steps and at each
    epoch's end (12 steps), once when both fall on a step."""
    return sum(1 for s in range(1, step + 1) if s % 5 == 0 or s % 12 == 0)


@pytest.mark.parametrize(
    "phase, k",
    [("model", 3), ("state", 3), ("sealed", 3), ("named", 3), ("pointer", 3),
     ("model", 1), ("pointer", "stop")],
    ids=["model", "state", "sealed", "named", "pointer", "before-the-first", "after-the-stop"],
)  # fmt: skip
def test_killed_at_any_checkpoint_phase_resumes_to_the_same_early_stopped_run(
    tmp_path, phase, k, early_stopped
):
    """The kill comes in the 3rd checkpoint, at the end of the first epoch (evaluated, best);
    in the 1st, before any checkpoint is whole (every line logged is logged again); or right
    after the checkpoint of the epoch's end where early stopping said stop."""
    weights, steps = early_stopped
    if k == "stop":
        assert steps[-1] % 12 == 0  # the reference stopped at an epoch's end
        k = checkpoints_up_to(steps[-1])
    killed = run_script(tmp_path / "killed", *EARLY_STOPPED, "--crash", f"{phase}@{k}")
    assert killed.wait(timeout=PATIENCE) == 9, killed.stderr.read().decode()
    assert not (tmp_path / "killed" / "final.safetensors").exists()
    resumed = run_script(tmp_path / "killed", *EARLY_STOPPED)
    assert resumed.wait(timeout=PATIENCE) == 0, resumed.stderr.read().decode()
    assert_same(weights, load_file(str(tmp_path / "killed" / "final.safetensors")))
    lines = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").open()]
    assert [line["step"] for line in lines] == steps
