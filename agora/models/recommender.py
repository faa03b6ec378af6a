r"""The paper's MLP recommender for MovieLens 100K (appendix 6.2).

.. math::
    s &= [E_u(user);\ E_m(movie);\ \mathrm{mean}_{w \in title} E_w(w);\ W_g\, genres + b_g]
        && \text{lower}\\
    e &= \mathrm{ReLU}(W_2\, \mathrm{Dropout}(\mathrm{ReLU}(W_1 s + b_1)) + b_2) && \text{upper}\\
    y &= w_3^\top e + b_3 && \text{head}

Teacher: 100 + 100 + 50 + 50 = 300 -> 512 -> 256 -> 1.
Student, a quarter of every width: 25 + 25 + 13 + 12 = 75 -> 128 -> 64 -> 1.
The three parts are submodules named ``lower``, ``upper`` and ``head``, which is what
``Agent.from_model(name, model, lower="lower", upper="upper", head="head")`` splits on.

:func:`teacher_agent` and :func:`student_agent` make the paper's two as agents;
:func:`pretrain_teacher` trains the teacher on every genre, and :func:`paper_teacher` /
:func:`paper_student` are the agent factories of the packaged ``paper-movielens`` config.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from agora.agent import Agent

if TYPE_CHECKING:
    from agora.data.movielens import MovieLensMeta

FEATURES = ("user", "movie", "title", "genres")


@dataclass
class RecommenderConfig:
    """Sizes of a :class:`Recommender`; the defaults are the paper's teacher.

    Args:
        n_users: largest user id; the user table has ``n_users + 1`` rows (ids are 1-based).
        n_movies: largest movie id; the movie table has ``n_movies + 1`` rows.
        n_words: title vocabulary size, padding id 0 included.
        n_genres: number of genre flags (default: ``19``).
        user_dim: width of the user embedding in ``s`` (default: ``100``).
        movie_dim: width of the movie embedding (default: ``100``).
        title_dim: width of the title's bag of words (default: ``50``).
        genre_dim: width of the genres' projection (default: ``50``).
        hidden: widths of the ReLU layers of ``upper``; the last is ``e``'s (default: ``(512, 256)``).
        dropout: dropout between the ReLU layers (default: ``0.0``).
    """

    n_users: int
    n_movies: int
    n_words: int
    n_genres: int = 19
    user_dim: int = 100
    movie_dim: int = 100
    title_dim: int = 50
    genre_dim: int = 50
    hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)  # a config read back from JSON holds a list
        sizes = {k: v for k, v in vars(self).items() if k not in ("hidden", "dropout")}
        bad = {k: v for k, v in sizes.items() if not (isinstance(v, int) and v > 0)}
        if bad or not self.hidden or min(self.hidden) < 1 or not 0 <= self.dropout < 1:
            raise ValueError(
                f"RecommenderConfig: sizes must be positive ints (bad: {bad}), hidden a non-empty "
                f"tuple of positive widths (got {self.hidden}), dropout in [0, 1) (got {self.dropout})."
            )

    @property
    def input_dim(self) -> int:
        """Width of ``s``: ``user_dim + movie_dim + title_dim + genre_dim``."""
        return self.user_dim + self.movie_dim + self.title_dim + self.genre_dim

    @classmethod
    def teacher(cls, meta: MovieLensMeta, **overrides) -> RecommenderConfig:
        """The paper's teacher for the data described by ``meta``: 300 -> 512 -> 256 -> 1."""
        sizes = dict(n_users=meta.n_users, n_movies=meta.n_movies, n_words=meta.n_words)
        return cls(**sizes, n_genres=meta.n_genres, **overrides)

    @classmethod
    def student(cls, meta: MovieLensMeta, **overrides) -> RecommenderConfig:
        """The paper's student, a quarter of every width: 75 -> 128 -> 64 -> 1."""
        quarter = dict(user_dim=25, movie_dim=25, title_dim=13, genre_dim=12, hidden=(128, 64))
        return replace(cls.teacher(meta), **{**quarter, **overrides})


class FeatureEmbedding(nn.Module):
    r"""The ``lower`` part: embed the four features of a rating and concatenate them.

    .. math::
        s = [E_u(user);\ E_m(movie);\ \tfrac{1}{|title|}\textstyle\sum_{w \in title} E_w(w);\
            W_g\, genres + b_g]

    The title is a bag of words: a mean of word embeddings that skips the padding id 0
    (a title with no words embeds to zeros).

    Args:
        config: the sizes (:class:`RecommenderConfig`).

    Shapes:
        - x: ``{"user": Long[B], "movie": Long[B], "title": Long[B, L], "genres": Float[B, G]}``
        - output s: ``[B, user_dim + movie_dim + title_dim + genre_dim]``

    >>> lower = FeatureEmbedding(RecommenderConfig(n_users=3, n_movies=4, n_words=5))
    >>> x = {"user": torch.tensor([1]), "movie": torch.tensor([2]),
    ...      "title": torch.tensor([[1, 4, 0]]), "genres": torch.zeros(1, 19)}
    >>> lower(x).shape
    torch.Size([1, 300])
    """

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        self.user = nn.Embedding(config.n_users + 1, config.user_dim)
        self.movie = nn.Embedding(config.n_movies + 1, config.movie_dim)
        self.title = nn.EmbeddingBag(config.n_words, config.title_dim, mode="mean", padding_idx=0)
        self.genres = nn.Linear(config.n_genres, config.genre_dim)
        self.out_dim = config.input_dim

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        if missing := [key for key in FEATURES if key not in x]:
            raise KeyError(
                f"FeatureEmbedding: x lacks {missing}; it needs the keys {list(FEATURES)}."
            )
        parts = [
            self.user(x["user"]),  # [B, user_dim]
            self.movie(x["movie"]),  # [B, movie_dim]
            self.title(x["title"]),  # [B, title_dim]
            self.genres(x["genres"]),  # [B, genre_dim]
        ]
        return torch.cat(parts, dim=-1)  # [B, out_dim]

    def reset_parameters(self) -> None:
        """Re-initialise the user, movie and title embeddings and the genre layer."""
        for part in (self.user, self.movie, self.title, self.genres):
            part.reset_parameters()

    def __repr__(self) -> str:
        dims = (self.user.embedding_dim, self.movie.embedding_dim)
        dims += (self.title.embedding_dim, self.genres.out_features)
        return f"FeatureEmbedding({' + '.join(map(str, dims))} = {self.out_dim})"


class RatingHead(nn.Module):
    """The ``head``: ``y = w^T e + b``, one rating per example.

    Shapes:
        - input e: ``[B, in_dim]``; output y: ``[B]``

    >>> RatingHead(4)(torch.zeros(2, 4)).shape
    torch.Size([2])
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, 1)

    def forward(self, e: Tensor) -> Tensor:
        return self.linear(e).squeeze(-1)  # [B]

    def reset_parameters(self) -> None:
        """Re-initialise the linear layer (``nn.Linear``'s default)."""
        self.linear.reset_parameters()

    def __repr__(self) -> str:
        return f"RatingHead({self.linear.in_features} -> 1)"


def relu_layers(in_dim: int, widths: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """``Linear-ReLU`` per width, ``Dropout`` between them (not after the last).

    >>> relu_layers(3, (4, 2))
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Dropout(p=0.0, inplace=False)
      (3): Linear(in_features=4, out_features=2, bias=True)
      (4): ReLU()
    )
    """
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        if i > 0:
            layers.append(nn.Dropout(dropout))  # kept at p=0 so state-dict keys never move
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class Recommender(nn.Module):
    r"""The paper's MLP rating model, ``y = head(upper(lower(x)))``.

    .. math::
        s = \mathrm{lower}(x), \quad e = \mathrm{upper}(s), \quad y = \mathrm{head}(e)

    Args:
        config: the sizes (:class:`RecommenderConfig`); :meth:`teacher` and :meth:`student`
            build the paper's two.

    Shapes:
        - x: ``{"user": Long[B], "movie": Long[B], "title": Long[B, L], "genres": Float[B, G]}``
        - s: ``[B, 300]`` (student ``[B, 75]``); e: ``[B, 256]`` (student ``[B, 64]``); y: ``[B]``

    >>> from agora.data import MovieLensMeta
    >>> meta = MovieLensMeta(n_users=943, n_movies=1682, n_words=2405, n_genres=19, title_len=15)
    >>> teacher, student = Recommender.teacher(meta), Recommender.student(meta)
    >>> teacher, student
    (Recommender(300 -> 512 -> 256 -> 1, dropout=0.0), Recommender(75 -> 128 -> 64 -> 1, dropout=0.0))
    >>> x = {"user": torch.tensor([1, 943]), "movie": torch.tensor([1, 1682]),
    ...      "title": torch.tensor([[5, 9, 0], [7, 0, 0]]), "genres": torch.zeros(2, 19)}
    >>> student(x).shape
    torch.Size([2])
    """

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        self.config = config
        self.lower = FeatureEmbedding(config)
        self.upper = relu_layers(config.input_dim, config.hidden, config.dropout)
        self.head = RatingHead(config.hidden[-1])

    @classmethod
    def teacher(cls, meta: MovieLensMeta, **overrides) -> Recommender:
        """The paper's teacher (see :meth:`RecommenderConfig.teacher`)."""
        return cls(RecommenderConfig.teacher(meta, **overrides))

    @classmethod
    def student(cls, meta: MovieLensMeta, **overrides) -> Recommender:
        """The paper's student (see :meth:`RecommenderConfig.student`)."""
        return cls(RecommenderConfig.student(meta, **overrides))

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        s = self.lower(x)  # [B, input_dim]
        e = self.upper(s)  # [B, hidden[-1]]
        return self.head(e)  # [B]

    def reset_parameters(self) -> None:
        """Re-initialise ``lower``, every ``Linear`` of ``upper``, and ``head``."""
        self.lower.reset_parameters()
        for layer in self.upper:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        self.head.reset_parameters()

    def __repr__(self) -> str:
        widths = " -> ".join(map(str, (self.config.input_dim, *self.config.hidden, 1)))
        return f"Recommender({widths}, dropout={self.config.dropout})"


# -- the paper's two agents --------------------------------------------------------------------

TEACHER_EPOCHS = 8  # pre-training epochs at most (early stopping on validation, patience 2)


def teacher_agent(
    meta: MovieLensMeta, path: str | os.PathLike | None = None, name: str = "teacher", **agent: Any
) -> Agent:
    """The paper's teacher as a frozen agent, with pre-trained weights from the safetensors
    file ``path`` (keys ``lower.*``, ``upper.*``, ``head.*``) when given."""
    model = Recommender.teacher(meta)
    teacher = Agent.from_model(name, model, "lower", "upper", "head", task="regression", **agent)
    if path is not None:
        backbone = nn.ModuleDict({"lower": model.lower, "upper": model.upper, "head": model.head})
        backbone.load_state_dict(load_file(str(path)))
    return teacher.freeze()


def student_agent(meta: MovieLensMeta, name: str = "student", **agent: Any) -> Agent:
    """The paper's student as a trainable agent, freshly initialised; ``agent`` keywords go to
    :class:`~agora.agent.Agent` (``rounds``, ``interact_weight``, ...)."""
    model = Recommender.student(meta)
    return Agent.from_model(name, model, "lower", "upper", "head", task="regression", **agent)


def pretrain_teacher(
    ml: Any, seed: int, path: str | os.PathLike, *, epochs: int = TEACHER_EPOCHS,
    batch_size: int = 256,
) -> dict[str, float]:  # fmt: skip
    """Train the teacher on every genre's training ratings, keep its best validation weights
    (patience 2), and save its backbone to ``path`` (safetensors, written atomically).

    ``ml`` is a :class:`~agora.data.movielens.MovieLens` (or anything with its ``meta`` and
    ``splits(None)``). Returns ``{"seed": seed, **best validation metrics}``.
    """
    from agora.graph import Graph
    from agora.train import FitConfig, fit

    torch.manual_seed(seed)
    agent = teacher_agent(ml.meta)
    agent.freeze(False)
    splits = ml.splits(None)
    graph = Graph([agent], message_dim=128, codec_hidden=256)
    config = FitConfig(
        epochs=epochs, patience=2, batch_size=batch_size, seed=seed, progress=False,
        log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    backbone = {f"{part}.{k}": v.contiguous() for part in ("lower", "upper", "head")
                for k, v in getattr(agent, part).state_dict().items()}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # one per writer
    os.close(fd)
    save_file(backbone, tmp, metadata={"agora": json.dumps({"seed": seed, **result.metrics})})
    os.replace(tmp, path)
    return {"seed": seed, **result.metrics}


def teacher_file(
    seed: int = 0, cache_dir: str | os.PathLike | None = None, teacher_epochs: int = TEACHER_EPOCHS
) -> Path:
    """Where :func:`paper_teacher` keeps the teacher pre-trained with ``seed``:
    ``<cache>/movielens/teacher-seed{seed}.safetensors``, the cache being ``cache_dir``, else
    ``$AGORA_CACHE_DIR``, else ``~/.cache/agora``. A shorter pre-training than the paper's
    gets its own file (``...-epochs1.safetensors``), so that it is never taken for the real one.

    >>> teacher_file(3, "/tmp/c").as_posix()
    '/tmp/c/movielens/teacher-seed3.safetensors'
    >>> teacher_file(0, "/tmp/c", teacher_epochs=1).name
    'teacher-seed0-epochs1.safetensors'
    """
    root = cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache" / "agora"
    budget = "" if teacher_epochs == TEACHER_EPOCHS else f"-epochs{teacher_epochs}"
    return Path(root).expanduser() / "movielens" / f"teacher-seed{seed}{budget}.safetensors"


def paper_teacher(
    name: str = "teacher",
    seed: int = 0,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    teacher_epochs: int = TEACHER_EPOCHS,
) -> Agent:
    """The paper's frozen teacher (300 -> 512 -> 256 -> 1), pre-trained once per seed.

    The weights come from :func:`teacher_file`; when it is missing, the teacher is first
    pre-trained there on every genre's training ratings (:func:`pretrain_teacher`, about a
    minute on a CPU). Configs name it as ``agora.models.recommender:paper_teacher``.

    Args:
        name: the agent's name in its graph (default: ``"teacher"``).
        seed: the pre-training seed (default: ``0``).
        data_dir: see :func:`~agora.data.movielens.find_data` (default: ``None``).
        cache_dir: where pre-trained teachers are kept (default: ``None``, see above).
        teacher_epochs: pre-training epochs at most (default: ``8``).

    >>> teacher = paper_teacher(cache_dir="/tmp/agora-cache")  # doctest: +SKIP
    >>> teacher.frozen, teacher.lower.out_dim  # doctest: +SKIP
    (True, 300)
    """
    from agora.data.movielens import MovieLens

    ml = MovieLens(data_dir)
    path = teacher_file(seed, cache_dir, teacher_epochs)
    if not path.exists():
        print(
            f"agora: pre-training the MovieLens teacher (seed {seed}, at most {teacher_epochs} "
            f"epoch{'s' * (teacher_epochs != 1)}) into {path}; later runs reuse it",
            file=sys.stderr,
            flush=True,
        )
        # pre-training seeds every generator; restore them so that the agents built after this
        # one start the same whether the teacher was pre-trained now or read from the cache
        states = random.getstate(), np.random.get_state()
        with torch.random.fork_rng():
            metrics = pretrain_teacher(ml, seed, path, epochs=teacher_epochs)
        random.setstate(states[0])
        np.random.set_state(states[1])
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k != "seed")
        print(f"agora: teacher pre-trained (seed {seed}: {scores})", file=sys.stderr, flush=True)
    try:
        return teacher_agent(ml.meta, path, name=name)
    except (RuntimeError, SafetensorError) as error:  # a corrupt file, or one for other data
        raise ValueError(
            f"{path} does not hold a teacher for the data in {ml.root}: {error}. Delete it to "
            "pre-train again, or pass another cache_dir"
        ) from None


def paper_student(name: str = "student", data_dir: str | None = None) -> Agent:
    """The paper's trainable student, a quarter of the teacher (75 -> 128 -> 64 -> 1).

    Configs name it as ``agora.models.recommender:paper_student``.

    >>> paper_student().lower.out_dim  # doctest: +SKIP
    75
    """
    from agora.data.movielens import MovieLens

    return student_agent(MovieLens(data_dir).meta, name=name)
