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


def test_student_agent_takes_its_dropout_or_the_students_default():
    def rates(agent):
        return {m.p for m in agent.upper.modules() if isinstance(m, nn.Dropout)}

    assert rates(mlp.student_agent(META, dropout=0.3)) == {0.3}
    assert rates(mlp.student_agent(META)) == {RecommenderConfig.student(META).dropout} == {0.2}


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
    model = Recommender.student(META).eval()  # training mode drops random ids (to the OOV row)
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
    weights = [k for k in before if not k.endswith("_rows")]  # the vocabulary is no weight
    assert all(not torch.equal(before[k], after[k]) for k in weights)
    assert (model.lower.title.weight[0] == 0).all() and (model.lower.user.weight[0] == 0).all()
    assert model.lower.user.weight.abs().max() <= 0.05  # small: an untrained row says little


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


# -- users, movies and words the model never trained on ----------------------------------------


def ratings(users, movies):
    """A RatingsDataset of these (user, movie) pairs, titles of two words per movie."""
    from agora.data.movielens import RatingsDataset

    n = len(users)
    titles = torch.arange(2 * (META.n_movies + 1)).reshape(-1, 2) % (META.n_words - 1) + 1
    return RatingsDataset(torch.tensor(users), torch.tensor(movies), torch.full((n,), 4.0),
                          torch.arange(n), titles, torch.zeros(META.n_movies + 1, 19))  # fmt: skip


def test_an_unseen_users_prediction_never_reads_an_untrained_row():
    torch.manual_seed(0)
    model = Recommender.student(META).set_vocabulary(ratings([1, 2, 3], [5, 6, 7])).eval()
    x, _ = ratings([9, 2], [5, 5]).__getitems__([0, 1])  # user 9 never trained
    before = model(x)
    with torch.no_grad():
        model.lower.user.weight[9] += 100.0  # whatever its row holds
    assert torch.equal(model(x), before)
    assert torch.equal(model.lower.rows(x)[0], torch.tensor([0, 2]))  # the OOV row, and its own
    plain = Recommender.student(META, oov=False).eval()
    before = plain(x)
    with torch.no_grad():
        plain.lower.user.weight[9] += 100.0
    assert not torch.equal(plain(x)[0], before[0])  # without the OOV row it would


def test_the_oov_rows_start_at_zero_and_learn_from_id_dropout():
    torch.manual_seed(0)
    model = Recommender.student(META, id_dropout=0.5).set_vocabulary(ratings([1, 2], [5, 6]))
    assert (model.lower.user.weight[0] == 0).all() and (model.lower.title.weight[-1] == 0).all()
    x, y = ratings([1, 2] * 8, [5, 6] * 8).__getitems__(list(range(16)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model.lower.user.weight[0] != 0).any() and (model.lower.movie.weight[0] != 0).any()
    model.eval()  # no id dropout: the same answer every time
    assert torch.equal(model(x), model(x))


def test_the_vocabulary_is_saved_with_the_weights(tmp_path):
    from agora.models.recommender import teacher_agent, write_teacher

    model = Recommender.teacher(META).set_vocabulary(ratings([4], [8]))
    parts = {f"{p}.{k}": v.contiguous() for p in ("lower", "upper", "head")
             for k, v in getattr(model, p).state_dict().items()}  # fmt: skip
    write_teacher(tmp_path / "teacher.safetensors", parts, {})
    loaded = teacher_agent(META, tmp_path / "teacher.safetensors")
    assert loaded.lower.user_rows[4] == 4 and loaded.lower.user_rows[5] == 0


def test_a_cached_teacher_is_verified_against_the_digest_written_with_it(tmp_path):
    meta = MovieLensMeta(n_users=10, n_movies=12, n_words=30, n_genres=19, title_len=4)
    teacher = mlp.teacher_agent(meta)
    backbone = {f"{part}.{k}": v.contiguous() for part in ("lower", "upper", "head")
                for k, v in getattr(teacher, part).state_dict().items()}  # fmt: skip
    path = tmp_path / "teacher.safetensors"
    mlp.write_teacher(path, backbone, {"seed": 0})
    read = mlp.teacher_agent(meta, path)
    assert all(torch.equal(a, b) for a, b in zip(read.parameters(), teacher.parameters()))
    raw = bytearray(path.read_bytes())
    raw[-64:] = bytes(64)  # a zeroed region of the tensors
    path.write_bytes(bytes(raw))
    with pytest.raises(
        ValueError, match=r"teacher\.safetensors: the teacher file holds weights that changed"
    ):
        mlp.teacher_agent(meta, path)
    from safetensors.torch import save_file

    save_file(backbone, str(path))  # no digest: an older file, or one written by hand
    with pytest.raises(ValueError, match="carries no digest"):
        mlp.teacher_agent(meta, path)


def test_a_cached_teacher_of_another_seed_or_recipe_is_refused_under_this_ones_name(tmp_path):
    import os
    import shutil
    from pathlib import Path

    data = Path(os.environ.get("AGORA_DATA_DIR", "nowhere"))
    if not (data / "ml-100k" / "u.data").is_file():
        pytest.skip("MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/")
    from agora.data.movielens import MovieLens

    teacher = mlp.teacher_agent(MovieLens(data, download=False).meta)
    backbone = {f"{part}.{k}": v.contiguous() for part in ("lower", "upper", "head")
                for k, v in getattr(teacher, part).state_dict().items()}  # fmt: skip
    seed0 = mlp.teacher_file(0, tmp_path)
    seed0.parent.mkdir(parents=True)
    mlp.write_teacher(seed0, backbone, {"seed": 0, "recipe": mlp.teacher_recipe()})
    assert mlp.paper_teacher(seed=0, data_dir=str(data), cache_dir=str(tmp_path)).frozen
    shutil.copy(seed0, mlp.teacher_file(1, tmp_path))  # seed 0's teacher under seed 1's name
    with pytest.raises(
        ValueError,
        match=r"seed1\.safetensors: holds a teacher pre-trained with seed 0, but its name is the "
        r"cache's for seed 1 .* delete it",
    ):
        mlp.paper_teacher(seed=1, data_dir=str(data), cache_dir=str(tmp_path))
    short = {"seed": 0, "recipe": mlp.teacher_recipe("epochs1")}  # a 1-epoch pre-training
    mlp.write_teacher(seed0, backbone, short)
    with pytest.raises(ValueError, match=r"seed0\.safetensors: holds a teacher pre-trained with "):
        mlp.paper_teacher(seed=0, data_dir=str(data), cache_dir=str(tmp_path))
    mlp.write_teacher(seed0, backbone, {"seed": 0})  # an older agora's: no recipe, seed checked
    assert mlp.paper_teacher(seed=0, data_dir=str(data), cache_dir=str(tmp_path)).frozen
