"""Edges: the protocols and weights an edge ends up with, what it refuses (naming the edge and
the key at fault), and its data form."""

import json

import pytest

from agora.edge import Edge
from agora.errors import GraphError
from agora.protocols.feature import Feature
from agora.protocols.logit import Logit
from agora.protocols.talk import Talk


def test_a_bare_edge_talks_with_the_default_weights():
    edge = Edge("student", "teacher")
    assert edge.protocols == (Talk(),) and edge.names == ("talk",) and edge.active
    assert edge.weights == {"message_consistency": 1.0, "state_consistency": 1.0}
    assert edge.name == "student->teacher"


def test_protocols_are_normalised_aliases_expanded_and_each_kept_once():
    assert Edge("s", "t", "logit").protocols == (Logit(),)  # a string is one protocol
    hybrid = Edge("s", "t", ("hybrid", "logit", "talk"))
    assert hybrid.protocols == (Logit(), Feature(), Talk())
    assert Edge("s", "t", "agora.protocols.logit:Logit").names == ("logit",)  # by its path
    assert Edge("s", "t", "hybrid").protocol("talk") is None


def test_a_protocol_with_settings_is_an_instance_or_its_data_and_names_mix():
    talk = Talk(rounds=2, interact_weight=0.5)
    assert Edge("s", "t", (talk, "logit")).protocols == (talk, Logit())
    assert Edge("s", "t", talk).protocol("talk") is talk  # one instance: the edge holds it
    data = [{"talk": {"rounds": 2, "interact_weight": 0.5}}, "logit"]  # a config's form
    assert Edge("s", "t", data).protocols == (talk, Logit())
    assert Edge("s", "t", ("talk", Talk())).protocols == (Talk(),)  # the same settings: once


@pytest.mark.parametrize(
    "protocols, key, match",
    [
        (
            [{"talk": {"rounds": -1}}],
            "protocols.0.talk.rounds",
            r"^Edge s->t: Talk.rounds: must be an integer in \[0, 64\], got -1",
        ),
        (
            [{"talk": {"interact_weight": float("nan")}}],
            "protocols.0.talk.interact_weight",
            "Talk.interact_weight: must be finite and >= 0, got nan",
        ),
        (
            [{"talk": {"aggregation": "max"}}],
            "protocols.0.talk.aggregation",
            r"unknown aggregation 'max'; choose one of \['mean', 'weights', 'router'\]",
        ),
        (
            [{"talk": {"k": 2}}],
            "protocols.0.talk",
            r"protocol 'talk' takes settings \['rounds', 'interact_weight', 'aggregation'\], "
            r"got \['k'\]",
        ),
        (
            [{"talk": 2}],
            "protocols.0.talk",
            "the settings of protocol 'talk' must be a mapping, got 2",
        ),
        (
            ["talk", Talk(rounds=2)],
            "protocols.1",
            r"protocol 'talk' given twice with other settings \(Talk\(\), Talk\(rounds=2\)\)",
        ),
    ],
)
def test_bad_protocol_settings_name_the_edge_and_the_key(protocols, key, match):
    with pytest.raises(GraphError, match=match) as caught:
        Edge("s", "t", protocols)
    assert caught.value.key == key


def test_weights_given_override_the_defaults_and_become_floats():
    edge = Edge("s", "t", ("talk", "logit"), weights={"logit": 2, "state_consistency": 0})
    assert edge.weights == {"message_consistency": 1.0, "state_consistency": 0.0, "logit": 2.0}
    assert all(type(value) is float for value in edge.weights.values())


@pytest.mark.parametrize(
    "options, key, match",
    [
        ({"protocols": ()}, "protocols", r"^Edge s->t: no protocol given$"),
        (
            {"protocols": ("logit", "gossip")},
            "protocols.1",
            r"^Edge s->t: unknown protocol 'gossip'; known: \[.*'talk'",
        ),
        ({"weights": [("logit", 1.0)]}, "weights", r"weights must be a mapping of name -> number"),
        (
            {"weights": {"logit": 1.0}},
            "weights",
            r"weights \['logit'\] do not belong to protocols \['talk'\]; valid weights: "
            r"\['message_consistency', 'state_consistency'\]",
        ),
        (
            {"protocols": "logit", "weights": {"logit": True}},
            "weights.logit",
            "weight 'logit' must be a number, got True",
        ),
        (
            {"protocols": "logit", "weights": {"logit": float("inf")}},
            "weights.logit",
            "weight 'logit' must be finite and >= 0, got inf",
        ),
        (
            {"weights": {"interact": 2}},
            "weights",
            r"weights \['interact'\] do not belong .*; 'interact' is a protocol's setting: "
            r"Talk\(interact_weight=...\)",
        ),
        ({"noise": -0.1}, "noise", "noise must be a finite number >= 0, got -0.1"),
        ({"noise": "loud"}, "noise", "noise must be a finite number >= 0, got 'loud'"),
        ({"noise": float("inf")}, "noise", "noise must be a finite number >= 0, got inf"),
        ({"noise": True}, "noise", "noise must be a finite number >= 0, got True"),
        (
            {"logit_distance": "l1"},
            "logit_distance",
            r"logit_distance must be one of \('mse', 'kl'\), got 'l1'",
        ),
        ({"temperature": 0.0}, "temperature", "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": "2"}, "temperature", "temperature must be a finite number > 0, got '2'"),
        ({"temperature": float("inf")}, "temperature", "finite number > 0, got inf"),
    ],
)
def test_a_bad_field_names_the_edge_and_its_key(options, key, match):
    with pytest.raises(GraphError, match=match) as caught:
        Edge("s", "t", **options)
    assert caught.value.key == key
    assert str(caught.value).startswith("Edge s->t: ")


def test_a_keyword_that_is_no_edge_option_lists_the_options_an_edge_takes():
    with pytest.raises(GraphError, match=r"^Edge s->t: not an edge's option: 'colour'; ") as caught:
        Edge("s", "t", colour="red")
    for option in ("protocols", "weights", "noise", "logit_distance", "temperature", "active"):
        assert repr(option) in str(caught.value)


def test_misplaced_keywords_are_each_sent_home_even_with_the_ends_given_by_name():
    with pytest.raises(GraphError) as caught:
        Edge(learner="pupil", tutor="t", aggregation="mean", codec="linear")
    message = str(caught.value)
    assert message.startswith("Edge pupil->t: not an edge's option: ")
    assert "'aggregation' is a protocol's setting: Talk(aggregation=...)" in message
    assert "'codec' is the graph's: Graph(agents, codec=...)" in message


def test_to_dict_is_plain_data_that_builds_the_same_edge():
    edge = Edge("s", "t", ("hybrid",), weights={"logit": 0.5}, noise=0.1, logit_distance="kl",
                temperature=2.0, active=False)  # fmt: skip
    data = edge.to_dict()
    assert data["protocols"] == ["logit", "feature"]
    assert json.loads(json.dumps(data)) == data
    assert Edge(**data) == edge
    talking = Edge("s", "t", (Talk(rounds=3), "logit"))
    assert talking.to_dict()["protocols"] == [{"talk": {"rounds": 3}}, "logit"]  # what differs
    assert Edge(**talking.to_dict()) == talking
