"""Field errors: the message, the dotted key of the field at fault, and moving it under a prefix."""

import pytest

from agora.errors import FieldError, GraphError


def test_a_field_error_is_a_value_error_carrying_its_parts():
    error = FieldError("must be > 0, got -1", "lr", "FitConfig")
    assert isinstance(error, ValueError)
    assert (error.message, error.key, error.owner) == ("must be > 0, got -1", "lr", "FitConfig")


@pytest.mark.parametrize(
    "key, owner, printed",
    [
        ("lr", "FitConfig", "FitConfig.lr: must be > 0"),
        ("lr", None, "must be > 0"),  # no owner: the message alone, as the raiser wrote it
        (None, "FitConfig", "must be > 0"),  # no key: nothing to put the owner before
        (None, None, "must be > 0"),
    ],
)
def test_the_owner_and_key_are_printed_only_together(key, owner, printed):
    assert str(FieldError("must be > 0", key, owner)) == printed


@pytest.mark.parametrize(
    "key, prefix, under",
    [
        ("tutor", "edges.0", "edges.0.tutor"),
        ("weights.logit", "edges.1", "edges.1.weights.logit"),
        (None, "agents.2", "agents.2"),  # an error about the whole object: the prefix itself
        ("tutor", "", "tutor"),
    ],
)
def test_under_puts_the_key_below_a_prefix(key, prefix, under):
    error = FieldError("unknown tutor 'ghost'", key).under(prefix)
    assert error.key == under and error.message == "unknown tutor 'ghost'"


def test_under_keeps_the_class_and_leaves_the_original_alone():
    original = GraphError("Edge a->b: self-loop", "tutor")
    moved = original.under("edges.3")
    assert type(moved) is GraphError and isinstance(moved, FieldError)
    assert moved is not original and original.key == "tutor"
    assert str(moved) == "Edge a->b: self-loop"  # a graph error's message names the edge itself
