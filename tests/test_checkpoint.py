"""Checkpoints: one file per agent and part, verified, written atomically."""

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from agora import checkpoint
from agora.checkpoint import CheckpointError
from agora.folder import file_sha256, with_digest
from agora.models.toy import mlp_agent
from agora.protocols.talk import Talk
from agora.train import fit
from tests.helpers import (
    assert_same,
    clone_weights,
    crash_at_step,
    fit_data,
    quick_fit,
    talk_graph,
    tutors_graph,
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
    digests = json.loads((latest / "state.json").read_text())["files"]
    del digests["agora.json"]  # as an older agora's checkpoint: no JSON state, a flat list
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
    checkpoint.write_document(tmp_path, document)  # its digest made to match
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
    checkpoint.write_document(tmp_path / "model", document)
    with pytest.raises(CheckpointError, match=r"no checksum for agents/\w+/\w+\.safetensors"):
        checkpoint.load_weights(tmp_path / "model", talk_graph().build(torch.randn(2, 8)))


def test_a_resume_state_its_part_refuses_is_an_error_naming_the_file(tmp_path):
    from agora.losses import LossBalancer

    (tmp_path / "state").mkdir()
    # the loss-value balancer of an earlier agora saved means without a call count
    (tmp_path / "state" / "agora.json").write_text(json.dumps({"balancer": {"means": {}}}))
    with pytest.raises(CheckpointError, match=r"agora\.json: its 'balancer' state does not load"):
        checkpoint.read_training_state(tmp_path, {"balancer": LossBalancer({})})


def _flip(path, pattern: bytes, group: int = 1, bit: int = 0) -> None:
    """Flip one bit of the byte that ``pattern``'s ``group`` matches in ``path``."""
    import re

    raw = bytearray(path.read_bytes())
    where = re.search(pattern, bytes(raw), re.S).start(group)
    raw[where] ^= 1 << bit
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (rb'"n": (6)40,\s*"d_in": 8,\s*"seed"', "data.kwargs.n 640 -> 740"),
        (rb'"n": 640,\s*"d_in": 8,\s*"seed": (0)', "data.kwargs.seed 0 -> 1"),
    ],
)
def test_a_bit_flipped_in_graph_json_is_named_not_scored_on_other_data(
    tmp_path, capsys, pattern, what
):
    from agora.cli import main

    run = tmp_path / "run"
    assert main(["run", "tiny", "--out", str(run), "fit.epochs=1"]) == 0
    capsys.readouterr()
    _flip(run / "model" / "graph.json", pattern)
    with pytest.raises(SystemExit):
        main(["eval", str(run)])
    said = capsys.readouterr()
    assert said.out == "", what  # no metrics of other data
    assert f"{run / 'model' / 'graph.json'}: checksum mismatch" in said.err, what
    with pytest.raises(CheckpointError, match=r"model/graph\.json: checksum mismatch"):
        checkpoint.load(run)


def test_a_graph_json_of_an_older_agora_loads_and_an_unknown_format_is_named(tmp_path):
    g = talk_graph().build(torch.randn(2, 8))
    checkpoint.save_model(tmp_path, g)
    checkpoint.save_sample(tmp_path, torch.randn(2, 8))
    agents = dict(talk_graph().agents)
    document = json.loads((tmp_path / "graph.json").read_text())
    assert document["format"] == 3 and len(document.pop("digest")) == 64
    (tmp_path / "graph.json").write_text(json.dumps({**document, "format": 1}))  # no digest
    checkpoint.load(tmp_path, agents=agents)
    (tmp_path / "graph.json").write_text(json.dumps({**document, "format": 4}))
    with pytest.raises(CheckpointError, match=r"graph\.json: format 4 without a digest is not"):
        checkpoint.load(tmp_path, agents=agents)


def test_a_model_folder_of_format_2_loads_its_learners_talk_settings_and_aggregator(tmp_path):
    graph = tutors_graph("weights", tutors=2)
    aggregator = graph.learner_module("talk", "student").aggregator
    with torch.no_grad():
        aggregator.logits.copy_(torch.tensor([0.3, -0.2]))
    checkpoint.save_model(tmp_path, graph, sample=torch.randn(2, 6))
    # as format 2 wrote it: the learner's talk settings on the agent, its aggregator a file
    new = tmp_path / "agents" / "student" / "talk.safetensors"
    old = new.with_name("aggregator.safetensors")
    save_file({k.removeprefix("aggregator."): v for k, v in load_file(new).items()}, old)
    new.unlink()
    document = json.loads((tmp_path / "graph.json").read_text())
    files = document["files"]
    files.pop("agents/student/talk.safetensors")
    files["agents/student/aggregator.safetensors"] = file_sha256(old)
    for entry in document["graph"]["agents"]:
        if entry["name"] == "student":
            entry.update(rounds=2, interact_weight=1.0, aggregation="weights")
    for entry in document["graph"]["edges"]:
        entry["protocols"] = ["talk"]
    (tmp_path / "graph.json").write_text(json.dumps(with_digest({**document, "format": 2})))
    loaded = checkpoint.load(tmp_path, agents=copy.deepcopy(dict(graph.agents)))
    assert [edge.protocols for edge in loaded.edges] == [
        (Talk(rounds=2, aggregation="weights"),)
    ] * 2
    assert torch.equal(
        loaded.learner_module("talk", "student").aggregator.logits, aggregator.logits
    )


def test_a_bit_flipped_in_state_json_names_state_json_not_the_file_it_lists(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    listing = checkpoint.pointer(tmp_path, "latest") / "state.json"
    _flip(listing, rb'"optimizer\.bin": "(.)')  # a byte of optimizer.bin's digest
    with pytest.raises(CheckpointError, match=r"/state\.json: checksum mismatch") as caught:
        resume()
    assert "optimizer.bin" not in str(caught.value)


@pytest.mark.parametrize("name", ["graph.json", "state.json", "latest", "metrics.jsonl"])
def test_a_byte_that_is_not_utf8_names_the_file(tmp_path, monkeypatch, name):
    resume = _interrupted_run(tmp_path, monkeypatch)
    latest = checkpoint.pointer(tmp_path, "latest")
    path = {
        "graph.json": latest / "graph.json",
        "state.json": latest / "state.json",
        "latest": tmp_path / "checkpoints" / "latest",
        "metrics.jsonl": tmp_path / "metrics.jsonl",
    }[name]
    path.write_bytes(path.read_bytes()[:3] + b"\xff" + path.read_bytes()[3:])
    message = rf"{path}: not UTF-8 text \(byte 0xff on line \d\): the file is corrupted; "
    with pytest.raises(CheckpointError, match=message):
        if name == "graph.json":
            checkpoint.load(latest, agents=dict(talk_graph().agents))
        else:
            resume()


def test_the_sample_is_written_with_the_model_and_verified(tmp_path):
    g = talk_graph().build(torch.randn(2, 8))
    checkpoint.save_model(tmp_path / "model", g, sample=torch.randn(4, 8))
    document = json.loads((tmp_path / "model" / "graph.json").read_text())
    assert "sample.safetensors" in document["files"]
    _flip(tmp_path / "model" / "sample.safetensors", rb".*(.)", bit=3)  # its last byte
    with pytest.raises(CheckpointError, match=r"sample\.safetensors: checksum mismatch"):
        checkpoint.load(tmp_path / "model", agents=dict(talk_graph().agents))


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ({"random_state": "not a state"}, r"Accelerate cannot restore the random numbers"),
        (None, r"missing, so process 0 cannot resume its random numbers"),
    ],
)
def test_an_rng_state_accelerate_cannot_load_is_an_error_not_a_skip(
    tmp_path, monkeypatch, state, said
):
    resume = _interrupted_run(tmp_path, monkeypatch)
    latest = checkpoint.pointer(tmp_path, "latest")
    rng = latest / "state" / "random_states_0.pkl"
    if state is None:
        rng.unlink()
    else:
        torch.save(state, rng)
    checkpoint.seal_state(latest)  # its digests made to match: only the content is wrong
    with pytest.raises(CheckpointError, match=rf"random_states_0\.pkl: {said}"):
        resume()


@pytest.mark.parametrize("mean", [-1.0, 0.0, float("nan"), "1.0"])
def test_a_balancer_state_with_a_norm_no_gradient_has_is_refused_naming_the_file(tmp_path, mean):
    from agora.losses import LossBalancer

    (tmp_path / "state").mkdir()
    state = {"balancer": {"means": {"interact[student]": mean}, "calls": 10}}
    (tmp_path / "state" / "agora.json").write_text(json.dumps(state))
    with pytest.raises(
        CheckpointError, match=r"agora\.json: its 'balancer' state does not load: .*'interact"
    ):
        checkpoint.read_training_state(tmp_path, {"balancer": LossBalancer({})})


class _Runs:
    """Pickled, it calls ``os.system`` when loaded by a loader that runs code."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_malicious_optimizer_bin_is_refused_naming_the_file(tmp_path, monkeypatch):
    resume = _interrupted_run(tmp_path, monkeypatch)
    latest = checkpoint.pointer(tmp_path, "latest")
    marker = tmp_path / "ran"
    torch.save({"state": _Runs(f"touch {marker}")}, latest / "state" / "optimizer.bin")
    checkpoint.seal_state(latest)  # a hostile folder makes its digests match
    with pytest.raises(
        CheckpointError,
        match=r"state/optimizer\.bin: refused: it holds Python objects that torch's weights-only "
        r"loader will not run, .*--overwrite",
    ):
        resume()
    assert not marker.exists()
    (latest / "state" / "optimizer.bin").write_bytes(b"PK\x03\x04 cut short")
    checkpoint.seal_state(latest)
    with pytest.raises(CheckpointError, match=r"state/optimizer\.bin: cannot be loaded \("):
        resume()


def test_a_full_disk_names_the_file_and_the_space_left(tmp_path, monkeypatch):
    import errno

    import accelerate.utils.other

    real_save = torch.save

    def full_at_optimizer(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.bin"):
            Path(f).write_bytes(b"PK\x03\x04")  # a part written, then no more room
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054"
            )
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_optimizer)
    monkeypatch.setattr(accelerate.utils.other.torch, "save", full_at_optimizer)
    with pytest.raises(
        CheckpointError,
        match=r"checkpoints/step-00000012/state/optimizer\.bin: could not be written \(\[enforce "
        r"fail at inline_container\.cc:672\].*\); [\d.]+ (bytes|[KMGT]iB) free on its disk, so "
        r"most likely it filled up: free some space",
    ):
        fit(talk_graph(), *fit_data(), quick_fit(epochs=2, batch_size=16), out_dir=tmp_path / "a")
    monkeypatch.undo()

    def no_room(tensors, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 8)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", no_room)
    g = talk_graph().build(torch.randn(2, 8))
    with pytest.raises(
        CheckpointError,
        match=rf"{tmp_path / 'b' / 'model'}/agents/\w+/\w+\.safetensors: could not be written "
        r"\(\[Errno 28\] No space left on device\)",
    ):
        checkpoint.save_model(tmp_path / "b" / "model", g)
    assert not (tmp_path / "b" / "model").exists()
