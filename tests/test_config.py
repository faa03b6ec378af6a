"""Run configs: loading, overrides, errors that name the key and the file, building."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from agora.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    build_data,
    build_graph,
    config_from_dict,
    load_config,
    packaged_configs,
)
from agora.data.synthetic import _target, regression
from agora.graph import Graph
from agora.models.toy import mlp_agent
from agora.protocols.talk import Talk

TINY = load_config("tiny")


def write(tmp_path, data, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def tiny_data():
    return TINY.to_dict()


def test_tiny_is_packaged_and_two_node_talk():
    assert "tiny" in packaged_configs()
    assert [(a.name, a.frozen) for a in TINY.graph.agents] == [
        ("teacher", True),
        ("student", False),
    ]
    (edge,) = TINY.graph.edges
    assert (edge.learner, edge.tutor, edge.names) == ("student", "teacher", ("talk",))
    assert edge.protocols == (Talk(rounds=2, interact_weight=0.5),)
    assert TINY.source.endswith("tiny.yaml")


def test_a_file_path_loads_and_to_dict_round_trips(tmp_path):
    path = write(tmp_path, tiny_data())
    config = load_config(path)
    assert config.source == str(path)
    assert config_from_dict(config.to_dict()) == config == TINY


def test_overrides_apply_before_validation():
    config = load_config(
        "tiny",
        [
            "fit.epochs=5",
            "graph.edges.0.protocols.0.talk.rounds=3",
            "graph.edges.0.protocols.0.talk.interact_weight=0.25",
            "fit.lr=1e-2",  # PyYAML reads 1e-2 as a string; a float field accepts it
            "fit.max_grad_norm=1",
            "graph.agents.1.kwargs.depth=2",
            "fit.metric=student/rmse",
        ],
    )
    assert config.fit.epochs == 5 and config.fit.lr == 0.01
    assert config.fit.max_grad_norm == 1.0 and isinstance(config.fit.max_grad_norm, float)
    assert config.graph.edges[0].protocols == (Talk(rounds=3, interact_weight=0.25),)
    assert config.graph.agents[1].kwargs == {"d_in": 8, "width": 8, "depth": 2}
    assert config.fit.metric == "student/rmse"
    assert TINY.fit.epochs == 2  # the packaged file itself is untouched


def test_apply_overrides_appends_to_a_list_and_creates_mappings():
    data = apply_overrides({"a": [1]}, ["a.1={x: 2}", "b.c.d=[1, 2]"])
    assert data == {"a": [1, {"x": 2}], "b": {"c": {"d": [1, 2]}}}


def test_top_level_seed_seeds_fit_unless_fit_sets_it():
    assert load_config("tiny", ["seed=7"]).fit.seed == 7
    assert load_config("tiny", ["seed=7", "fit.seed=3"]).fit.seed == 3


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["fit.epoch=3"], "fit.epoch", "did you mean 'epochs'"),
        (["colour=red"], "colour", "unknown key"),
        (["graph.agents.0.widht=3"], "graph.agents.0.widht", "unknown key"),
        (["fit.epochs=three"], "fit.epochs", "must be an integer"),
        (["fit.lr=.inf"], "fit.lr", "finite"),
        (["graph.edges.0.weights.state_consistency=high"], "graph.edges.0.weights", "number"),
        (["graph.edges.0.weights.interact=1"], "graph.edges.0.weights", "interact_weight"),
        (
            ["graph.edges.0.protocols.0.talk.interact_weight=-1"],
            "graph.edges.0.protocols.0.talk.interact_weight",
            ">= 0",
        ),
        (["stages=[{name: a, edges: [student->ghost]}]"], "stages.0.edges.0", "unknown edge"),
        (["stages=[{name: a}, {name: a}]"], "stages.1.name", "unique"),
        (["fit.epochs=2.5"], "fit.epochs", "must be an integer"),
        (["fit.progress=3"], "fit.progress", "true or false"),
        (["fit.trackers=[1]"], "fit.trackers.0", "must be a string"),
        (["fit.patience=[1]"], "fit.patience", "or null"),
        (["graph.edges.0.weights=[1]"], "graph.edges.0.weights", "mapping"),
        (["fit=3"], "fit", "must be a mapping"),
        (["fit.epochs=-1"], "fit.epochs", ">= 1"),
        (["fit.lr=0"], "fit.lr", "> 0"),
        (["fit.mixed_precision=fp8"], "fit.mixed_precision", "'bf16'"),
        (["fit.scheduler=step"], "fit.scheduler", "'cosine'"),
        (["fit.metric=teachr/rmse"], "fit.metric", "'student/rmse'"),
        (["graph.message_dim=0"], "graph.message_dim", "[1, 65536]"),
        (["graph.message_dim=100000000000"], "graph.message_dim", "[1, 65536]"),
        (["graph.codec_hidden=100000000000"], "graph.codec_hidden", "[1, 65536]"),
        (["graph.codec=lstm"], "graph.codec", "'token-linear'"),
        (["graph.codec_dropout=1.0"], "graph.codec_dropout", "[0, 1)"),
        (["graph.agents.0.factory=nowhere:agent"], "graph.agents.0.factory", "Cannot import"),
        (["graph.agents.1.task=ranking"], "graph.agents.1.task", "'regression'"),
        (["graph.agents.1.name=teacher"], "graph.agents.1.name", "duplicate"),
        (["graph.agents.1.frozen=true"], "graph.agents", "every agent"),
        (
            ["graph.edges.0.protocols.0.talk.aggregation=max"],
            "graph.edges.0.protocols.0.talk.aggregation",
            "'router'",
        ),
        (
            ["graph.edges.0.protocols.0.talk.rounds=-1"],
            "graph.edges.0.protocols.0.talk.rounds",
            "[0, 64]",
        ),
        (
            ["graph.edges.0.protocols.0.talk.rounds=1000000000"],
            "graph.edges.0.protocols.0.talk.rounds",
            "[0, 64]",
        ),
        (
            ["graph.edges.0.protocols.0.talk.aggregation=weights"],
            "graph.edges.0.protocols",
            "talks to 1",
        ),
        (["graph.agents.1.rounds=2"], "graph.agents.1.rounds", "moved to the learner's talk"),
        (["graph.agents.1.aggregation=mean"], "graph.agents.1.aggregation", "Talk(aggregation="),
        (["graph.edges.0.rounds=1"], "graph.edges.0.rounds", "unknown key"),
        (["graph.edges.0.protocols=[tlk]"], "graph.edges.0.protocols.0", "unknown protocol"),
        (["graph.edges.0.weights.logit=1"], "graph.edges.0.weights", "do not belong"),
        (["graph.edges.0.tutor=teachr"], "graph.edges.0.tutor", "unknown tutor 'teachr'"),
        (["graph.edges.0.learner=teacher"], "graph.edges.0", "itself"),
        (["graph.distance=l1"], "graph.distance", "'cosine'"),
        (['stages=[{name: "..", epochs: 1}]'], "stages.0.name", "without '/'"),
        (["data.factory=agora.data.synthetic:nothing"], "data.factory", "Cannot import"),
    ],
)
def test_every_config_error_names_the_key_and_the_file(tmp_path, overrides, key, words):
    path = write(tmp_path, tiny_data())
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}"), message
    assert words in message
    assert caught.value.key.startswith(key) and caught.value.source == str(path)


def test_a_missing_required_key_is_named(tmp_path):
    data = tiny_data()
    del data["graph"]["agents"][1]["factory"]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=rf"^{path}: graph\.agents\.1\.factory: missing"):
        load_config(path)


def test_a_wrong_type_in_the_file_is_named(tmp_path):
    path = write(tmp_path, tiny_data() | {"seed": "zero"})
    with pytest.raises(ConfigError, match=rf"^{path}: seed: must be an integer, got 'zero'"):
        load_config(path)


def test_yaml_syntax_errors_name_the_file(tmp_path):
    path = write(tmp_path, "graph: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read YAML"):
        load_config(path)


def test_an_unknown_packaged_name_lists_the_packaged_configs():
    with pytest.raises(
        ConfigError, match=r"^tinny: no config file 'tinny'.*packaged configs: \[.*'tiny'"
    ):
        load_config("tinny")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("fit.epochs", "fit.epochs"),
        ("fit..epochs=3", "fit..epochs"),
        ("fit.epochs 3=4", "fit.epochs 3"),
        ("graph.edges.4.rounds=1", "graph.edges.4"),
        ("graph.edges.x.rounds=1", "graph.edges.x"),
        ("seed.x=1", "seed.x"),
        ("fit.epochs=[1", "fit.epochs"),
    ],
)
def test_a_bad_override_names_the_key_and_the_file(override, key):
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", [override])
    assert str(caught.value).startswith(f"{TINY.source}: {key}"), str(caught.value)


def test_a_bad_override_without_a_key_still_names_the_file():
    with pytest.raises(ConfigError, match=rf"^{TINY.source}: bad override '=3'"):
        load_config("tiny", ["=3"])


# -- building ------------------------------------------------------------------------------


def test_build_graph_makes_agents_with_specs_seeded():
    graph = build_graph(TINY)
    assert repr(graph) == "Graph(student -> teacher [talk, k=2])"
    teacher, student = graph.agents["teacher"], graph.agents["student"]
    assert teacher.frozen and not student.frozen and student.task == "regression"
    assert student.spec == {
        "factory": "agora.models.toy:mlp_agent",
        "kwargs": {"d_in": 8, "width": 8},
    }
    assert graph.learner_module("talk", "student") is None  # made by graph.build(sample)
    assert graph.edge("student", "teacher").protocol("talk").interact_weight == 0.5
    again = build_graph(TINY)
    assert torch.equal(teacher.lower[0].weight, again.agents["teacher"].lower[0].weight)
    other = build_graph(load_config("tiny", ["seed=1"]))
    assert not torch.equal(teacher.lower[0].weight, other.agents["teacher"].lower[0].weight)


def test_task_set_in_the_config_overrides_the_factory():
    graph = build_graph(load_config("tiny", ["graph.agents.1.task=classification"]))
    assert graph.agents["student"].task == "classification"


def backbone_file(path, agent):
    parts = nn.ModuleDict({"lower": agent.lower, "upper": agent.upper, "head": agent.head})
    save_file({k: v.contiguous() for k, v in parts.state_dict().items()}, str(path))
    return path


def test_pretrained_backbone_is_loaded(tmp_path):
    source = mlp_agent("teacher", d_in=8, width=32, depth=2)
    path = backbone_file(tmp_path / "teacher.safetensors", source)
    graph = build_graph(load_config("tiny", [f"graph.agents.0.pretrained={path}"]))
    teacher = graph.agents["teacher"]
    for mine, theirs in zip(teacher.backbone_parameters(), source.backbone_parameters()):
        assert torch.equal(mine, theirs)
    assert teacher.frozen and not any(p.requires_grad for p in teacher.backbone_parameters())


def test_a_pretrained_file_that_does_not_fit_is_named(tmp_path):
    path = backbone_file(tmp_path / "small.safetensors", mlp_agent("x", d_in=8, width=16))
    config = load_config("tiny", [f"graph.agents.0.pretrained={path}"])
    with pytest.raises(
        ConfigError, match=r"tiny\.yaml: graph\.agents\.0\.pretrained: .*wrong shapes"
    ):
        build_graph(config)
    missing = load_config("tiny", [f"graph.agents.0.pretrained={tmp_path}/none.safetensors"])
    with pytest.raises(
        ConfigError, match=r"graph\.agents\.0\.pretrained: Agent 'teacher': cannot read"
    ):
        build_graph(missing)


def test_a_factory_keyword_typo_is_named_at_build_time():
    config = load_config("tiny", ["graph.agents.1.kwargs.widht=8"])
    with pytest.raises(ConfigError, match=r"tiny\.yaml: graph\.agents\.1\.kwargs: .*'widht'"):
        build_graph(config)


def test_build_data_checks_what_the_factory_returns():
    splits = build_data(TINY)
    assert sorted(splits) == ["test", "train", "valid"]
    x, y = splits["train"][0]
    assert x.shape == (8,) and y.shape == ()
    with pytest.raises(ConfigError, match=r"tiny\.yaml: data\.factory: .*'train' and 'valid'"):
        build_data(load_config("tiny", ["data.factory=builtins:dict"]))
    with pytest.raises(ConfigError, match=r"tiny\.yaml: data\.kwargs: .*'rows'"):
        build_data(load_config("tiny", ["data.kwargs.rows=3"]))


def test_config_from_dict_without_a_file():
    config = config_from_dict(tiny_data(), ["fit.epochs=1"])
    assert isinstance(config, RunConfig) and config.fit.epochs == 1 and config.source is None
    with pytest.raises(ConfigError, match=r"^fit\.epochs: must be an integer >= 1"):
        config_from_dict(tiny_data(), ["fit.epochs=0"])


# -- the toy model and the synthetic data ----------------------------------------------------


def test_toy_agent_depth_and_widths():
    agent = mlp_agent("a", d_in=5, width=12, depth=3, out=4, task="classification")
    out = agent(torch.randn(2, 5))
    assert out.s.shape == (2, 12) and out.e.shape == (2, 6) and out.y.shape == (2, 4)
    assert sum(isinstance(m, nn.Linear) for m in agent.upper) == 3
    assert agent.task == "classification"


def test_synthetic_regression_is_deterministic_with_a_fixed_target():
    a, b = regression(n=50, d_in=3, seed=0), regression(n=50, d_in=3, seed=0)
    assert torch.equal(a["train"].tensors[0], b["train"].tensors[0])
    assert len(a["train"]) == 40 and len(a["valid"]) == 10
    for seed in (0, 1):  # another seed samples other inputs of the same function
        x, y = regression(n=50, d_in=3, seed=seed, noise=0.0)["train"].tensors
        assert torch.allclose(y, _target(x)) and y.std() > 0.1
    with pytest.raises(ValueError, match="valid_fraction"):
        regression(n=10, valid_fraction=0.0)
    assert "test" not in a
    splits = regression(n=50, d_in=3, seed=0, test_fraction=0.2)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [30, 10, 10]
    everything = torch.cat([splits[k].tensors[0] for k in ("train", "valid", "test")])
    assert torch.equal(everything, torch.cat([a["train"].tensors[0], a["valid"].tensors[0]]))
    with pytest.raises(ValueError, match="test_fraction"):
        regression(n=10, test_fraction=1.0)


def test_graph_from_spec_and_the_config_give_the_same_graph_pretrained_included(tmp_path):
    source = mlp_agent("teacher", d_in=8, width=32, depth=2)
    path = backbone_file(tmp_path / "teacher.safetensors", source)
    config = load_config("tiny", [f"graph.agents.0.pretrained={path}"])
    from_config = build_graph(config)
    torch.manual_seed(config.seed)
    from_spec = Graph.from_spec(config.graph)
    assert repr(from_spec) == repr(from_config)
    state, other = from_config.state_dict(), from_spec.state_dict()
    assert state.keys() == other.keys()
    assert all(torch.equal(state[k], other[k]) for k in state)
    loaded = from_spec.agents["teacher"].backbone_parameters()
    assert all(torch.equal(a, b) for a, b in zip(loaded, source.backbone_parameters()))


def test_the_spec_is_applied_once_and_each_edge_checked_once(monkeypatch):
    import agora.graph

    config = load_config("tiny")
    calls = {"apply_spec": 0, "check_edge_ends": 0}
    for name in calls:
        original = getattr(agora.graph, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(agora.graph, name, counted)
    graph = build_graph(config)
    assert calls == {"apply_spec": len(config.graph.agents), "check_edge_ends": 0}
    assert [e.name for e in graph.edges] == [e.name for e in config.graph.edges]
    assert graph.edges[0] is not config.graph.edges[0]  # the graph's own copy
