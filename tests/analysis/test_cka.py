"""Linear CKA (agora.analysis.cka) and `agora cka`: the measure, the states it reads, the figure."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from agora import Agent, Graph, Talk
from agora.analysis.cka import (
    by_group,
    cka_matrix,
    classes,
    genres,
    linear_cka,
    states,
)
from agora.cli import main
from tests.helpers import token_agent

PNG = b"\x89PNG\r\n\x1a\n"


def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. (3), written out: centered columns, Frobenius norms."""
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x, "fro") ** 2
    return cross / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro"))


def numpy_hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The same measure from linear kernels: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n  # the centering matrix
    kx, ky = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h  # centered Gram matrices
    return np.trace(kx @ ky) / np.sqrt(np.trace(kx @ kx) * np.trace(ky @ ky))


def random(n: int, p: int, seed: int) -> Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def orthogonal(p: int, seed: int) -> Tensor:
    q, _ = torch.linalg.qr(random(p, p, seed))
    return q


# -- the measure --------------------------------------------------------------------------------


def test_a_hand_computed_value():
    # centered x = [-1, 0, 1], y = [-1, 1, 0]: (y.x)^2 / (|x|^2 |y|^2) = 1 / (2 * 2)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    assert linear_cka(x, y).item() == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize(("n", "p", "q"), [(5, 2, 3), (7, 4, 4), (6, 9, 2)])
def test_matches_the_formula_written_out_in_numpy(n, p, q):
    x, y = random(n, p, 0), random(n, q, 1) + random(n, p, 0)[:, :1]  # related, not equal
    expected = numpy_cka(x.numpy(), y.numpy())
    assert numpy_hsic_cka(x.numpy(), y.numpy()) == pytest.approx(expected, rel=1e-12)
    got = linear_cka(x.float(), y.float())  # float32 in, float64 inside
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert 0 < got.item() < 1


def test_a_representation_is_identical_to_itself():
    x = random(40, 6, 2)
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("side", ["x", "y"])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(side):
    x, y = random(30, 5, 3), random(30, 4, 4)
    base = linear_cka(x, y).item()
    for transform in (lambda t: t @ orthogonal(t.shape[1], 5), lambda t: 7.5 * t):
        moved = (transform(x), y) if side == "x" else (x, transform(y))
        assert linear_cka(*moved).item() == pytest.approx(base, rel=1e-10)


def test_not_invariant_to_a_general_invertible_map():
    x, y = random(30, 5, 3), random(30, 4, 4)
    stretch = torch.diag(torch.tensor([1.0, 10.0, 0.1, 1.0, 3.0], dtype=torch.float64))
    assert torch.linalg.det(stretch) != 0
    assert abs(linear_cka(x @ stretch, y).item() - linear_cka(x, y).item()) > 0.01
    assert linear_cka(x, x @ stretch).item() < 0.99  # no longer "the same" representation


def test_padding_never_counts():
    n, t, d = 6, 5, 3
    lengths = torch.tensor([5, 2, 3, 1, 4, 2])
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)  # [n, T]
    x, y = random(n * t, d, 7).reshape(n, t, d), random(n * t, 4, 8).reshape(n, t, 4)
    expected = numpy_cka(x[mask].numpy(), y[mask].numpy())  # the real tokens only
    assert linear_cka(x, y, mask).item() == pytest.approx(expected, rel=1e-10)
    garbage_x, garbage_y = x.clone(), y.clone()
    garbage_x[~mask], garbage_y[~mask] = 1e6, -3.0
    assert linear_cka(garbage_x, garbage_y, mask).item() == pytest.approx(expected, rel=1e-10)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"5 rows in x \[5, 2\] and 4 in y \[4, 2\]"):
        linear_cka(torch.randn(5, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"token states \[n, T, \.\.\.\]"):
        linear_cka(torch.randn(5, 2), torch.randn(5, 2), torch.ones(5, 3, dtype=torch.bool))


# -- states over a dataset ----------------------------------------------------------------------


def mlp(name: str, width: int, dropout: float = 0.0, **kwargs) -> Agent:
    lower = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Dropout(dropout))
    upper = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU())
    return Agent(name, lower, upper, nn.Linear(width // 2, 1), task="regression", **kwargs)


def two_node(student: Agent | None = None, dropout: float = 0.0) -> Graph:
    torch.manual_seed(0)
    teacher = mlp("teacher", 16, dropout, frozen=True)
    student = student or mlp("student", 8, dropout)
    graph = Graph([teacher, student], message_dim=6, codec_dropout=dropout)
    graph.add_edge("student", "teacher", Talk(rounds=1))
    return graph.build(torch.randn(2, 4))


def test_a_student_identical_to_its_teacher_is_aligned_on_the_diagonal():
    teacher = mlp("teacher", 16, frozen=True)
    twin = copy.deepcopy(teacher)
    twin.name, twin.frozen = "student", False
    graph = Graph([teacher, twin], message_dim=6)
    graph.add_edge("student", "teacher")
    graph.build(torch.randn(2, 4))
    data = TensorDataset(torch.randn(50, 4), torch.randn(50))
    matrix = cka_matrix(states(graph, data, batch_size=16), "teacher", "student")
    # the paper's orientation: student rows s, e, m; teacher columns s, e
    assert matrix.rows == ("student.s", "student.e", "student.m")
    assert matrix.columns == ("teacher.s", "teacher.e")
    assert matrix["student.s", "teacher.s"] == pytest.approx(1.0, abs=1e-6)
    assert matrix["student.e", "teacher.e"] == pytest.approx(1.0, abs=1e-6)
    assert matrix["student.s", "teacher.e"] < 0.99
    assert matrix.examples == 50


def test_states_run_in_eval_mode_and_put_the_graph_back():
    graph = two_node(dropout=0.5)
    graph.train()
    data = TensorDataset(torch.randn(40, 4), torch.randn(40))
    first, second = states(graph, data, batch_size=16), states(graph, data, batch_size=7)
    assert graph.training and graph.agents["student"].codec.training
    for key in ("student.s", "student.m", "teacher.e"):  # no dropout: batches do not matter
        assert torch.allclose(first[key].values, second[key].values, atol=1e-6)
    student = graph.agents["student"]
    x = data.tensors[0]
    with torch.no_grad():
        student.eval()
        out = student(x)
        m = student.codec.encode(out.s, out.e)
    assert torch.allclose(first["student.m"].values, m, atol=1e-6)


def test_token_states_give_one_row_per_real_token():
    torch.manual_seed(0)
    agents = [token_agent("teacher", 8, frozen=True), token_agent("student", 4)]
    graph = Graph(agents, message_dim=6, codec="token")
    graph.add_edge("student", "teacher")
    ids = torch.randint(1, 20, (12, 5))
    mask = torch.arange(5).unsqueeze(0) < torch.randint(1, 6, (12, 1))
    graph.build({"input_ids": ids[:2], "attention_mask": mask[:2]})

    def data(padding: Tensor) -> list:  # a list of (x, y) examples is a dataset too
        padded = torch.where(mask, ids, padding)
        return [({"input_ids": padded[i], "attention_mask": mask[i]}, 0) for i in range(12)]

    clean = states(graph, data(torch.zeros_like(ids)))
    assert clean["student.m"].values.shape == (int(mask.sum()), 6)
    noisy = states(graph, data(torch.randint(1, 20, ids.shape)))  # other tokens under padding
    assert torch.equal(
        cka_matrix(clean, "teacher", "student").values,
        cka_matrix(noisy, "teacher", "student").values,
    )


# -- per class, per genre ----------------------------------------------------------------------


GENRES = ["Comedy", "Drama", "War"]


class GenreRatings(Dataset):
    """Ratings of movies with genres: x = {"features": [8], "genres": multi-hot [3]}."""

    group_names = GENRES  # `agora cka --groups genre` names the heatmaps with these

    def __init__(self, features: Tensor, flags: Tensor, ratings: Tensor) -> None:
        self.features, self.flags, self.ratings = features, flags, ratings

    def __len__(self) -> int:
        return len(self.ratings)

    def __getitem__(self, i: int):
        return {"features": self.features[i], "genres": self.flags[i]}, self.ratings[i]


def genre_data(n: int = 300, seed: int = 0) -> dict[str, GenreRatings]:
    """A data factory for configs (``tests.analysis.test_cka:genre_data``): 80% train, 20% valid."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 8, generator=g)
    flags = (torch.rand(n, 3, generator=g) < torch.tensor([0.5, 0.6, 0.04])).float()
    ratings = features[:, :2].sum(-1) + flags @ torch.tensor([0.5, -0.5, 1.0])
    cut = int(0.8 * n)
    return {
        "train": GenreRatings(features[:cut], flags[:cut], ratings[:cut]),
        "valid": GenreRatings(features[cut:], flags[cut:], ratings[cut:]),
    }


class FeatureAgent(Agent):
    def perceive(self, x):
        return self.lower(x["features"])


def feature_agent(name: str, width: int = 8, **kwargs) -> Agent:
    """An agent factory for configs (``tests.analysis.test_cka:feature_agent``) reading x["features"]."""
    lower = nn.Sequential(nn.Linear(8, width), nn.ReLU())
    upper = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU())
    kwargs.setdefault("task", "regression")
    return FeatureAgent(name, lower, upper, nn.Linear(width // 2, 1), **kwargs)


def test_a_rating_counts_in_every_genre_of_its_movie():
    agents = [feature_agent("teacher", 16, frozen=True), feature_agent("student")]
    graph = Graph(agents, message_dim=6)
    graph.add_edge("student", "teacher")
    valid = genre_data(600)["valid"]
    x, _ = torch.utils.data.default_collate([valid[i] for i in range(2)])
    graph.build(x)
    per_genre = by_group(graph, valid, genres, names=GENRES, batch_size=32)
    flags = valid.flags.bool()
    assert flags.sum(1).max() > 1  # some movies have two genres: they count in both
    assert list(per_genre) == ["Comedy", "Drama"]  # War has fewer than 20 ratings
    for column, name in enumerate(GENRES[:2]):
        members = flags[:, column]
        assert per_genre[name].examples == int(members.sum())
        alone = GenreRatings(valid.features[members], valid.flags[members], valid.ratings[members])
        expected = cka_matrix(states(graph, alone), "teacher", "student")
        assert torch.allclose(per_genre[name].values, expected.values, atol=1e-6)
    everything = by_group(graph, valid, genres, names=GENRES, min_examples=2)
    assert list(everything) == GENRES


def test_classes_group_by_integer_labels_and_reject_ratings():
    graph = two_node()
    data = TensorDataset(torch.randn(60, 4), torch.tensor([0, 2] * 30))
    per_class = by_group(graph, data, classes)
    assert list(per_class) == ["0", "2"] and per_class["2"].examples == 30
    with pytest.raises(ValueError, match="integer class labels"):
        by_group(graph, TensorDataset(torch.randn(60, 4), torch.randn(60)), classes)


# -- agora cka ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cka") / "tiny"
    assert main(["run", "tiny", "--out", str(run_dir), "fit.epochs=1"]) == 0
    return run_dir


def test_cka_draws_the_overall_matrix_of_a_run(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "figs" / "cka.png"
    assert main(["cka", str(tiny_run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    printed = capsys.readouterr().out
    assert printed.startswith("all (n=128)\n") and "student.m" in printed
    assert printed.rstrip().endswith(f"cka: {out}")
    rows = [line.split() for line in printed.splitlines()[2:5]]
    assert [r[0] for r in rows] == ["student.s", "student.e", "student.m"]
    assert all(0 <= float(v) <= 1 for r in rows for v in r[1:])


def test_cka_per_genre_names_each_heatmap(tmp_path, capsys):
    config = tmp_path / "genres.yaml"
    config.write_text(
        """
graph:
  message_dim: 6
  codec_hidden: 16
  agents:
    - {name: teacher, factory: tests.analysis.test_cka:feature_agent, kwargs: {width: 16}, frozen: true}
    - {name: student, factory: tests.analysis.test_cka:feature_agent}
  edges:
    - {learner: student, tutor: teacher}
data: {factory: tests.analysis.test_cka:genre_data, kwargs: {n: 400}}
fit: {epochs: 1, batch_size: 64, progress: false}
"""
    )
    run_dir, out = tmp_path / "run", tmp_path / "genres.png"
    assert main(["run", str(config), "--out", str(run_dir)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the run names this test's factories: code outside agora
        main(["cka", str(run_dir), "--out", str(out), "--groups", "genre"])
    assert "is not agora's own code" in capsys.readouterr().err
    assert main(["cka", str(run_dir), "--out", str(out), "--groups", "genre", "--trust-code"]) == 0
    printed = capsys.readouterr().out
    assert "Comedy (n=" in printed and "Drama (n=" in printed and "War" not in printed
    assert out.read_bytes()[:8] == PNG
    assert main(["cka", str(run_dir), "--out", str(out), "--trust-code"]) == 0  # per genre
    assert capsys.readouterr().out == printed
    assert main(["cka", str(run_dir), "--out", str(out), "--groups", "none", "--trust-code"]) == 0
    assert capsys.readouterr().out.startswith("all (n=")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--groups", "genre"], "--groups genre: Grouping by genre needs inputs x['genres']"),
        (["--groups", "class"], "--groups class: Grouping by class needs integer class labels"),
        (["--teacher", "nobody"], "--teacher nobody: no such agent"),
        (["--split", "test", "data.kwargs.test_fraction=0"], "the data has no 'test' split"),
    ],
)
def test_cka_errors_are_one_line(tiny_run, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        main(["cka", str(tiny_run), "--out", str(tmp_path / "x.png"), *argv])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("agora: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
