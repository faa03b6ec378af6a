"""Stages: switching edges and trainable agents between phases of training, in Python and YAML."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from agora import Graph, GraphError, Talk
from agora.config import ConfigError, load_config
from agora.folder import RunFolderError
from agora.models.toy import mlp_agent
from agora.stages import Stage, check_stages, fit_stages
from agora.train import FitConfig
from tests.helpers import dataset


def quick(**kwargs):
    defaults = {"epochs": 2, "batch_size": 16, "progress": False, "lr": 3e-3, "log_every": 1}
    return FitConfig(**{**defaults, **kwargs})


def chain_graph():
    torch.manual_seed(0)
    graph = Graph(
        [
            mlp_agent("teacher", 8, 32, frozen=True),
            mlp_agent("assistant", 8, 16, codec_frozen=False),
            mlp_agent("student", 8, 8),
        ],
        message_dim=8,
    )
    graph.add_edge("assistant", "teacher", Talk(rounds=2))
    graph.add_edge("student", "assistant", Talk(rounds=2))
    graph.add_edge("student", "teacher", "logit", active=False)
    return graph.build(torch.randn(2, 8))


STAGES = [
    Stage("assistant", epochs=1, edges=[("assistant", "teacher")], train=["assistant"]),
    Stage("student", epochs=2, edges=["student->assistant", "student->teacher"], train=["student"]),
]


def test_stage_switching_changes_exactly_the_declared_edges_and_flags(monkeypatch):
    import agora.stages

    graph = chain_graph()
    options = {e.name: {**e.to_dict(), "active": None} for e in graph.edges}
    codec_flags = {n: a.codec_frozen for n, a in graph.agents.items()}
    seen = []

    def recording_fit(g, *args, **kwargs):
        before = copy.deepcopy(g.state_dict())
        result = real_fit(g, *args, **kwargs)
        seen.append(
            {
                "active": {e.name: e.active for e in g.edges},
                "frozen": {n: a.frozen for n, a in g.agents.items()},
                "options": {e.name: {**e.to_dict(), "active": None} for e in g.edges},
                "codec_frozen": {n: a.codec_frozen for n, a in g.agents.items()},
                "changed": {k for k, v in g.state_dict().items() if not torch.equal(v, before[k])},
            }
        )
        return result

    real_fit = agora.stages.fit
    monkeypatch.setattr(agora.stages, "fit", recording_fit)
    fit_stages(graph, STAGES, dataset(64, 1), dataset(32, 2), quick())
    first, second = seen
    assert first["active"] == {"assistant->teacher": True, "student->assistant": False,
                               "student->teacher": False}  # fmt: skip
    assert first["frozen"] == {"teacher": True, "assistant": False, "student": True}
    assert second["active"] == {"assistant->teacher": False, "student->assistant": True,
                                "student->teacher": True}  # fmt: skip
    assert second["frozen"] == {"teacher": True, "assistant": True, "student": False}
    for stage in seen:  # nothing else changed: edge options, codec flags
        assert stage["options"] == options and stage["codec_frozen"] == codec_flags

    def owners(changed):
        return {(k.split(".")[1], k.split(".")[2] == "codec") for k in changed}

    # stage 1: the assistant's backbone and codec and the teacher's codec; no student weight
    assert owners(first["changed"]) == {
        ("assistant", False),
        ("assistant", True),
        ("teacher", True),
    }
    # stage 2: the student, and the codec of its tutor; the frozen assistant's backbone, no
    # teacher weight (its only active edge, logit, uses no codec)
    assert owners(second["changed"]) == {("student", False), ("student", True), ("assistant", True)}


def test_a_stage_naming_an_unknown_edge_or_agent_is_an_error():
    graph = chain_graph()
    with pytest.raises(GraphError, match=r"Stage 'x': unknown edge 'student->ghost'; the graph's"):
        check_stages(graph, [Stage("x", edges=["student->ghost"])])
    with pytest.raises(GraphError, match=r"Stage 'y': unknown agent 'ghost' in train"):
        check_stages(graph, [Stage("x"), Stage("y", train=["ghost"])])
    check_stages(
        graph, [Stage("z", edges=["student->assistant"], train=["assistant"])]
    )  # its codec
    graph.agents["student"].freeze(False, codec=True)  # now nothing of the student can train
    with pytest.raises(
        GraphError, match=r"Stage 'z': Edge student->assistant: learner 'student' is frozen"
    ):
        check_stages(graph, [Stage("z", edges=["student->assistant"], train=["assistant"])])
    graph.agents["student"].freeze(False, codec=False)
    with pytest.raises(GraphError, match=r"unique.*\['x'\]"):
        check_stages(graph, [Stage("x"), Stage("x")])
    assert graph.agents["student"].trainable and graph.edge("student", "assistant").active


def test_finished_stages_are_loaded_not_rerun_and_a_finished_run_is_refused(tmp_path, monkeypatch):
    import agora
    import agora.stages

    whole = chain_graph()
    fit_stages(whole, STAGES, dataset(64, 1), dataset(32, 2), quick(), out_dir=tmp_path / "whole")
    fit, ran = agora.stages.fit, []

    def killed_in_the_student_stage(graph, *args, out_dir, **kwargs):
        ran.append(out_dir.name)
        if out_dir.name == "student" and ran.count("student") == 1:
            raise KeyboardInterrupt  # as a kill would stop it
        return fit(graph, *args, out_dir=out_dir, **kwargs)

    monkeypatch.setattr(agora.stages, "fit", killed_in_the_student_stage)
    with pytest.raises(KeyboardInterrupt):
        fit_stages(chain_graph(), STAGES, dataset(64, 1), dataset(32, 2), quick(), out_dir=tmp_path)
    again = chain_graph()
    results = fit_stages(again, STAGES, dataset(64, 1), dataset(32, 2), quick(), out_dir=tmp_path)
    assert ran == ["assistant", "student", "student"]  # the finished stage was not rerun
    assert list(results) == ["assistant", "student"] and results["student"].metrics
    for key, value in whole.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    agents = {name: copy.deepcopy(agent) for name, agent in chain_graph().agents.items()}
    loaded = agora.load(tmp_path, agents=agents)  # <out>/model: the graph after the last stage
    assert not loaded.edge("assistant", "teacher").active and loaded.agents["assistant"].frozen
    with pytest.raises(RunFolderError, match="holds a finished run of this configuration"):
        fit_stages(chain_graph(), STAGES, dataset(64, 1), dataset(32, 2), quick(), out_dir=tmp_path)


def test_yaml_stages_are_validated_at_load_time(tmp_path):
    chain = load_config("tiny-chain")
    assert [(s.name, s.edges, s.train) for s in chain.stages] == [
        ("assistant", ["assistant->teacher"], ["assistant"]),
        ("student", ["student->assistant"], ["student"]),
    ]
    data = chain.to_dict()
    for override, key, message in [
        ({"edges": ["student->teacher"]}, "stages.1.edges.0", "unknown edge 'student->teacher'"),
        ({"train": ["student", "ghost"]}, "stages.1.train.1", "unknown agent 'ghost'"),
        ({"epochs": 0}, "stages.1.epochs", "must be >= 1"),
        ({"edge": []}, "stages.1.edge", "unknown key (did you mean 'edges'?)"),
    ]:
        broken = copy.deepcopy(data)
        broken["stages"][1].update(override)
        path = tmp_path / "chain.yaml"
        path.write_text(yaml.safe_dump(broken))
        with pytest.raises(ConfigError) as error:
            load_config(path)
        assert str(error.value).startswith(f"{path}: {key}: ") and message in str(error.value)


def test_agora_run_trains_a_staged_config(tmp_path, capsys):
    import agora
    from agora.cli import main

    out = tmp_path / "chain"
    assert main(["run", "tiny-chain", "--out", str(out), "stages.0.epochs=1", "fit.epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "stage assistant:" in printed and "stage student:" in printed
    for stage in ("assistant", "student"):
        assert (out / "stages" / stage / "model" / "graph.json").exists()
    graph = agora.load(out)  # the graph after the last stage, rebuilt from the stored specs
    assert graph.agents["assistant"].frozen and not graph.agents["student"].frozen
    assert [e.name for e in graph.active_edges] == ["student->assistant"]


def test_codecs_can_train_alone_between_the_student_alone_and_everything_together():
    """The paper's Table 8 "train encoders/decoders separately", as three stages."""
    torch.manual_seed(0)
    graph = Graph([mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("student", 8, 8)],
                  message_dim=8)  # fmt: skip
    graph.add_edge("student", "teacher")
    graph.build(torch.randn(2, 8))
    student = graph.agents["student"]

    def parts():
        return {name: {k: v.clone() for k, v in module.state_dict().items()}
                for name, module in (("backbone", student.upper), ("codec", student.codec))}  # fmt: skip

    stages = [
        Stage("alone", steps=4, edges=[]),
        Stage("codecs", steps=4, edges=["student->teacher"], train=[]),
        Stage("together", epochs=1, edges=["student->teacher"], train=["student"]),
    ]
    seen = {}
    import agora.stages

    real_fit = agora.stages.fit

    def recording_fit(g, *args, **kwargs):
        before = parts()
        result = real_fit(g, *args, **kwargs)
        after = parts()
        seen[len(seen)] = {
            name: any(not torch.equal(before[name][k], after[name][k]) for k in before[name])
            for name in before
        } | {"steps": result.steps}
        return result

    agora.stages.fit = recording_fit
    try:
        fit_stages(graph, stages, dataset(64, 0), dataset(32, 1), quick(batch_size=16))
    finally:
        agora.stages.fit = real_fit
    assert seen[0] == {"backbone": True, "codec": False, "steps": 4}  # no edge: the task alone
    assert seen[1] == {"backbone": False, "codec": True, "steps": 4}  # the codecs alone
    assert seen[2]["backbone"] and seen[2]["codec"]
    assert not student.frozen  # every flag back as the last stage set it


@pytest.mark.parametrize("train", [[], ["teacher"]])
def test_a_stage_that_trains_codecs_alone_runs_into_a_run_folder(tmp_path, train):
    from torch.utils.data import TensorDataset

    from agora import FitConfig

    torch.manual_seed(0)
    graph = Graph([mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("student", 8, 8)],
                  message_dim=8)  # fmt: skip
    graph.add_edge("student", "teacher")
    graph.build(torch.randn(2, 8))
    data = TensorDataset(torch.randn(32, 8), torch.randn(32))
    stages = [Stage("codecs", train=train), Stage("all", train=["student"])]
    config = FitConfig(epochs=1, batch_size=16, progress=False)
    results = fit_stages(graph, stages, data, data, config, out_dir=tmp_path)
    assert list(results) == ["codecs", "all"]
    stage = json.loads(next((tmp_path / "stages" / "codecs").rglob("graph.json")).read_text())
    spec = {agent["name"]: agent for agent in stage["graph"]["agents"]}
    assert spec["student"]["frozen"] and not spec["student"]["codec_frozen"]
    assert (tmp_path / "model").is_dir()
