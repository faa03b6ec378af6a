"""The paper's MLP recommender: shapes, the lower / upper / head split, sizes, config."""

import dataclasses
import doctest
import json

import pytest
import torch
from torch import nn

from agora.data.movielens import MovieLensMeta
from agora.models import recommender as mlp
from agora.models.recommender import Recommender, RecommenderConfig

META = MovieLensMeta(n_users=943, n_movies=1682, n_words=2405, n_genres=19, title_len=15)


def random_batch(batch_size: int = 8, meta: MovieLensMeta = META) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    title = torch.randint(1, meta.n_words, (batch_size, meta.title_len), generator=generator)
    title[:, 3:] = 0  # three words, then padding
    return {
        "user": torch.randint(1, meta.n_users + 1, (batch_size,), generator=generator),
        "movie": torch.randint(1, meta.n_movies + 1, (batch_size,), generator=generator),
        "title": title,
        "genres": (torch.rand(batch_size, meta.n_genres, generator=generator) < 0.2).float(),
    }


@pytest.mark.parametrize(
    "role, s_dim, e_dim", [("teacher", 300, 256), ("student", 75, 64)], ids=["teacher", "student"]
)
def test_states_and_output_shapes(role, s_dim, e_dim):
    torch.manual_seed(0)
    model = getattr(Recommender, role)(META)
    x = random_batch(8)
    s = model.lower(x)
    e = model.upper(s)
    y = model.head(e)
    assert s.shape == (8, s_dim) and e.shape == (8, e_dim) and y.shape == (8,)
    assert (e >= 0).all()  # the last hidden layer is a ReLU's output


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_lower_upper_head_reproduce_forward_exactly(dropout):
    torch.manual_seed(0)
    model = Recommender.teacher(META, dropout=dropout).eval()
    x = random_batch(16)
    assert torch.equal(model.head(model.upper(model.lower(x))), model(x))
    assert [name for name, _ in model.named_children()] == ["lower", "upper", "head"]


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = Recommender.teacher(META, dropout=0.5)
    x = random_batch(16)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_student_is_a_quarter_of_the_teacher_per_layer():
    teacher, student = Recommender.teacher(META), Recommender.student(META)
    assert (teacher.config.input_dim, student.config.input_dim) == (300, 75)
    for part in ("user", "movie", "title", "genres"):
        ratio = n_params(getattr(student.lower, part)) / n_params(getattr(teacher.lower, part))
        assert ratio == pytest.approx(0.25, abs=0.02), part  # 13 / 50 and 12 / 50 for words
    big_layers = [m for m in teacher.upper if isinstance(m, nn.Linear)]
    small_layers = [m for m in student.upper if isinstance(m, nn.Linear)]
    assert [m.out_features for m in big_layers] == [512, 256]
    assert [4 * m.out_features for m in small_layers] == [512, 256]
    for big, small in zip(big_layers, small_layers):  # both widths quartered: ~1/16 weights
        assert n_params(small) / n_params(big) == pytest.approx(1 / 16, rel=0.05)


def test_title_is_a_mean_over_words_that_ignores_padding():
    model = Recommender.student(META)
    x = random_batch(2)
    words = model.lower.title.weight[x["title"][0, :3]]  # [3, 13]
    title_part = model.lower(x)[0, 50:63]  # after user 25 + movie 25
    assert torch.allclose(title_part, words.mean(0), atol=1e-6)
    longer = dict(x, title=torch.cat([x["title"], torch.zeros(2, 5, dtype=torch.long)], 1))
    assert torch.allclose(model.lower(longer), model.lower(x))  # more padding changes nothing
    x["title"][1] = 0
    assert (model.lower(x)[1, 50:63] == 0).all()  # a title with no words embeds to zeros


def test_every_parameter_gets_a_gradient():
    model = Recommender.student(META)
    model(random_batch(32)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_reset_parameters_reinitialises_and_keeps_padding_zero():
    torch.manual_seed(0)
    model = Recommender.teacher(META)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters()
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert (model.lower.title.weight[0] == 0).all()


def test_config_survives_json_and_rejects_bad_sizes():
    config = RecommenderConfig.student(META, dropout=0.1)
    restored = RecommenderConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert restored == config and restored.hidden == (128, 64)
    with pytest.raises(ValueError, match="dropout in"):
        RecommenderConfig.teacher(META, dropout=1.5)
    with pytest.raises(ValueError, match="n_users"):
        RecommenderConfig(n_users=0, n_movies=1, n_words=1)
    with pytest.raises(ValueError, match="hidden"):
        RecommenderConfig(n_users=1, n_movies=1, n_words=1, hidden=())


def test_missing_feature_is_named():
    x = random_batch(2)
    del x["genres"]
    with pytest.raises(KeyError, match="genres"):
        Recommender.student(META)(x)


def test_repr_is_short():
    assert repr(Recommender.teacher(META)) == "Recommender(300 -> 512 -> 256 -> 1, dropout=0.0)"
    assert repr(Recommender.student(META).lower) == "FeatureEmbedding(25 + 25 + 13 + 12 = 75)"


def test_docstring_examples_run():
    result = doctest.testmod(mlp)
    assert result.attempted > 0 and result.failed == 0
