"""Checkpoints: one file per agent and part, verified, written atomically."""

import json

import pytest
import torch
from safetensors.torch import load_file

from agora import checkpoint
from agora.checkpoint import CheckpointError
from agora.models.toy import mlp_agent
from agora.train import fit
from tests.helpers import (
    assert_same,
    clone_weights,
    crash_at_step,
    fit_data,
    quick_fit,
    talk_graph,
)


def test_run_dir_holds_graph_json_and_one_file_per_agent_and_part(tmp_path):
    train, valid = fit_data()
    g = talk_graph()
    result = fit(g, train, valid, quick_fit(), out_dir=tmp_path, run_config={"name": "test"})
    model = tmp_path / "model"
    document = json.loads((model / "graph.json").read_text())
    assert {a["name"] for a in document["graph"]["agents"]} == {"teacher", "student"}
    assert document["versions"]["torch"] == torch.__version__
    assert document["config"] == {"name": "test"}
    for agent in ("teacher", "student"):
        for part in ("backbone", "codec"):
            assert (model / "agents" / agent / f"{part}.safetensors").exists()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/interact[student]" in line for line in lines)
    assert any("eval/student/rmse" in line for line in lines)
    # load rebuilds the trained graph: same predictions as the graph fit() returned
    agents = {"teacher": mlp_agent("teacher", 8, 32), "student": mlp_agent("student", 8, 8)}
    loaded = checkpoint.load(tmp_path, agents=agents)
    x = valid.tensors[0]
    g.eval()
    loaded.eval()
    assert torch.equal(loaded.agents["student"](x).y, g.agents["student"](x).y)
    assert loaded.agents["teacher"].frozen
    assert result.metrics["student/rmse"] == document["metrics"]["student/rmse"]


def test_loading_into_a_graph_that_does_not_match_names_file_and_tensor(tmp_path):
    fit(talk_graph(), *fit_data(), quick_fit(epochs=1), out_dir=tmp_path)
    other = talk_graph(width=12).build(torch.randn(2, 8))
    with pytest.raises(
        CheckpointError, match=r"student/backbone.safetensors: tensor '.*' has shape"
    ):
        checkpoint.load_weights(tmp_path / "model", other)


def test_truncated_or_corrupted_files_fail_clearly(tmp_path):
    fit(talk_graph(), *fit_data(), quick_fit(epochs=1), out_dir=tmp_path)
    target = talk_graph().build(torch.randn(2, 8))
    codec = tmp_path / "model" / "agents" / "student" / "codec.safetensors"
    raw = codec.read_bytes()
    codec.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"student/codec\.safetensors: checksum mismatch"):
        checkpoint.load_weights(tmp_path / "model", target)
    with pytest.raises(CheckpointError, match=r"student/codec\.safetensors: cannot be read"):
        checkpoint.load_weights(tmp_path / "model", target, verify=False)
    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF
    codec.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load_weights(tmp_path / "model", target)


def test_a_crash_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    g = talk_graph().build(torch.randn(2, 8))
    checkpoint.save_model(tmp_path / "model", g)
    before = clone_weights(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    calls = []

    def crash_on_third(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return load_file.__globals__["save_file"](tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", crash_on_third)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save_model(tmp_path / "model", g)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no half-written folder left
    fresh = talk_graph().build(torch.randn(2, 8))
    checkpoint.load_weights(tmp_path / "model", fresh)
    assert_same(clone_weights(fresh), before)


def _interrupted_run(tmp_path, monkeypatch):
    """A run stopped (as by a crash) after its first epoch's checkpoint (step 12); returns the
    call that resumes it."""
    train, valid = fit_data()

    def run():
        return fit(talk_graph(), train, valid, quick_fit(epochs=2, batch_size=16), out_dir=tmp_path)

    crash_at_step(monkeypatch, 12, run)
    return run


def test_a_changed_state_file_is_refused_on_resume(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    state = checkpoint.pointer(tmp_path, "latest") / "state"
    weights = state / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: checksum mismatch"):
        resume()


def test_a_missing_state_file_is_refused_on_resume(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    state = checkpoint.pointer(tmp_path, "latest") / "state"
    (state / "random_states_0.pkl").unlink()
    with pytest.raises(CheckpointError, match=r"random_states_0\.pkl: missing"):
        resume()


def test_agoras_own_resume_state_is_json_and_a_checkpoint_without_it_is_refused(
    tmp_path, monkeypatch
):
    resume = _interrupted_run(tmp_path, monkeypatch)
    latest = checkpoint.pointer(tmp_path, "latest")
    state = latest / "state"
    saved = json.loads((state / "agora.json").read_text())
    assert saved["train"]["step"] == 12 and saved["train"]["epoch"] == 1
    assert not list(state.glob("custom_checkpoint_*"))  # nothing of agora's is pickled
    (state / "agora.json").unlink()
    digests = json.loads((latest / "state.json").read_text())
    del digests["agora.json"]  # as an older agora's checkpoint: no JSON state at all
    (latest / "state.json").write_text(json.dumps(digests))
    with pytest.raises(CheckpointError, match=r"agora\.json: missing \(an older agora"):
        resume()


def test_a_pointer_to_a_missing_folder_names_the_last_complete_checkpoint(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000099\n")
    with pytest.raises(
        CheckpointError, match=r"names step-00000099, .*last complete checkpoint is step-00000012"
    ):
        resume()


def test_loading_a_run_that_names_code_outside_agora_needs_trust(tmp_path):
    g = talk_graph().build(torch.randn(2, 8))
    checkpoint.save_model(tmp_path, g)
    document = json.loads((tmp_path / "graph.json").read_text())
    document["graph"]["agents"][0]["factory"] = "subprocess:run"  # what a hostile run could say
    (tmp_path / "graph.json").write_text(json.dumps(document))
    with pytest.raises(
        CheckpointError, match=r"graph\.json: factory: 'subprocess:run' is not agora's own"
    ):
        checkpoint.load(tmp_path)
    checkpoint.save_sample(tmp_path, torch.randn(2, 8))
    given = dict(talk_graph().agents)  # agents given are not made: their factories not imported
    assert list(checkpoint.load(tmp_path, agents=given).agents) == ["teacher", "student"]


def test_a_broken_graph_json_or_sample_is_named(tmp_path):
    g = talk_graph().build(torch.randn(2, 8))
    checkpoint.save_model(tmp_path, g)
    checkpoint.save_sample(tmp_path, torch.randn(2, 8))
    agents = {name: agent for name, agent in talk_graph().agents.items()}
    sample = tmp_path / "sample.safetensors"
    sample.write_bytes(sample.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"sample\.safetensors: unreadable"):
        checkpoint.load(tmp_path, agents=agents)
    (tmp_path / "graph.json").write_text("[]")
    with pytest.raises(CheckpointError, match=r"graph\.json: not an agora graph\.json"):
        checkpoint.load(tmp_path, agents=agents)


def test_a_partial_metrics_line_and_a_changed_model_are_named_on_resume(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "lo')  # cut by the kill
    train, valid = fit_data()
    wider = talk_graph(width=16)  # same spec (a graph built in Python), other shapes
    with pytest.raises(CheckpointError, match=r"its state does not fit this graph"):
        fit(wider, train, valid, quick_fit(epochs=2, batch_size=16), out_dir=tmp_path)
    resume()  # the partial line is dropped, the run goes on
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_a_graph_json_without_checksums_and_file_modes_that_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        g = talk_graph().build(torch.randn(2, 8))
        checkpoint.save_model(tmp_path / "model", g)
    finally:
        os.umask(old)
    assert oct((tmp_path / "model").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "model" / "graph.json").stat().st_mode & 0o777) == "0o644"
    document = json.loads((tmp_path / "model" / "graph.json").read_text())
    del document["files"]  # a list removed: nothing can be verified any more
    (tmp_path / "model" / "graph.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"no checksum for agents/\w+/\w+\.safetensors"):
        checkpoint.load_weights(tmp_path / "model", talk_graph().build(torch.randn(2, 8)))


def test_a_resume_state_its_part_refuses_is_an_error_naming_the_file(tmp_path):
    from agora.losses import LossBalancer

    (tmp_path / "state").mkdir()
    # the loss-value balancer of an earlier agora saved means without a call count
    (tmp_path / "state" / "agora.json").write_text(json.dumps({"balancer": {"means": {}}}))
    with pytest.raises(CheckpointError, match=r"agora\.json: its 'balancer' state does not load"):
        checkpoint.read_training_state(tmp_path, {"balancer": LossBalancer({})})
