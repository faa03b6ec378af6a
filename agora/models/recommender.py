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

import hashlib
import json
import os
import random
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from agora.agent import Agent
from agora.folder import written_in_place

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
        init_scale: user, movie and word embeddings start uniform in
            ``[-init_scale, init_scale]`` (what Keras, the paper's framework, does); ``None``
            keeps ``nn.Embedding``'s N(0, 1) (default: ``0.05``).
        oov: ids outside the model's vocabulary (:meth:`FeatureEmbedding.set_vocabulary`: the
            ids of its training data) read an out-of-vocabulary row, which starts at zero
            (default: ``True``).
        id_dropout: in training, each user, movie and title word is replaced by the OOV row
            with this probability, so that the OOV row learns "a user never seen"
            (default: ``0.05``).

    The new-user handling was chosen on validation (MovieLens 100K's time split, where about
    90 % of validation and test ratings come from users absent from training; seeds 0-2,
    Drama, Adventure and War). Validation RMSE of the frozen all-genre teacher / of the
    student trained alone on Drama:

    ======================================================  =========  ==========
    new ids                                                  teacher    student
    ======================================================  =========  ==========
    ``nn.Embedding``'s N(0, 1), no OOV row                   1.0682     1.0424
    uniform ±0.05, no OOV row                                1.0152     1.0285
    N(0, 1), OOV row trained by id dropout 0.05              1.0312     1.0053
    uniform ±0.05, OOV row at zero, never trained            1.0124     1.0198
    **uniform ±0.05, OOV row trained by id dropout 0.05**    **1.0098** **0.9920**
    ======================================================  =========  ==========

    An OOV row that never trains is worse than none (the upper layers never see it); id
    dropout of 0.02-0.1 ties, 0.2-0.3 is worse. The student's seed-to-seed spread shrinks
    about tenfold (Drama test RMSE 0.9985 ± 0.0006 over 5 seeds). Reproduce with
    ``python -m benchmarks movielens``, whose page reports the teacher and Scratch.
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
    init_scale: float | None = 0.05
    oov: bool = True
    id_dropout: float = 0.05

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)  # a config read back from JSON holds a list
        sizes = {k: getattr(self, k) for k in ("n_users", "n_movies", "n_words", "n_genres",
                 "user_dim", "movie_dim", "title_dim", "genre_dim")}  # fmt: skip
        bad = {k: v for k, v in sizes.items() if not (isinstance(v, int) and v > 0)}
        rates = (self.dropout, self.id_dropout)
        if bad or not self.hidden or min(self.hidden) < 1 or not all(0 <= r < 1 for r in rates):
            raise ValueError(
                f"RecommenderConfig: sizes must be positive ints (bad: {bad}), hidden a non-empty "
                f"tuple of positive widths (got {self.hidden}), dropout and id_dropout in [0, 1) "
                f"(got {self.dropout}, {self.id_dropout})."
            )
        if self.init_scale is not None and not self.init_scale > 0:
            raise ValueError(
                f"RecommenderConfig: init_scale must be > 0 or None, got {self.init_scale}"
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
        """The paper's student, a quarter of every width: 75 -> 128 -> 64 -> 1, with dropout
        0.2 between its ReLU layers (the teacher's best is 0). ``python -m benchmarks
        movielens`` searches the student's learning rate at this dropout, then the dropout, and
        chose 0.3, which the packaged ``paper-movielens`` config sets; the default stays 0.2
        because the benchmark's run keys name the dropout of its learning-rate search."""
        quarter = dict(user_dim=25, movie_dim=25, title_dim=13, genre_dim=12, hidden=(128, 64))
        return replace(cls.teacher(meta), **{**quarter, "dropout": 0.2, **overrides})


class FeatureEmbedding(nn.Module):
    r"""The ``lower`` part: embed the four features of a rating and concatenate them.

    .. math::
        s = [E_u(user);\ E_m(movie);\ \tfrac{1}{|title|}\textstyle\sum_{w \in title} E_w(w);\
            W_g\, genres + b_g]

    The title is a bag of words: a mean of word embeddings that skips the padding id 0
    (a title with no words embeds to zeros).

    New ids: with ``config.oov``, a user or movie outside the vocabulary reads row 0 and a
    word outside it the last row of the word table, rows that start at zero; in training,
    ``config.id_dropout`` of the ids are replaced by them, so that they learn what an unseen
    id should say. The vocabulary is every id until :meth:`set_vocabulary` gives the ids of
    the training data; it is kept in buffers, so a saved model keeps it.

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
        self.config = config
        self.user = nn.Embedding(config.n_users + 1, config.user_dim)
        self.movie = nn.Embedding(config.n_movies + 1, config.movie_dim)
        words = config.n_words + int(config.oov)  # the last row: the OOV word
        self.title = nn.EmbeddingBag(words, config.title_dim, mode="mean", padding_idx=0)
        self.genres = nn.Linear(config.n_genres, config.genre_dim)
        self.out_dim = config.input_dim
        if config.oov:  # id -> row; an id outside the vocabulary -> the OOV row
            self.register_buffer("user_rows", torch.arange(config.n_users + 1))
            self.register_buffer("movie_rows", torch.arange(config.n_movies + 1))
            self.register_buffer("word_rows", torch.arange(config.n_words))
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        config = self.config
        with torch.no_grad():
            if config.init_scale is not None:
                for table in (self.user, self.movie, self.title):
                    table.weight.uniform_(-config.init_scale, config.init_scale)
            self.title.weight[0] = 0  # padding
            if config.oov:
                self.user.weight[0], self.movie.weight[0], self.title.weight[-1] = 0, 0, 0

    def set_vocabulary(self, users: Tensor, movies: Tensor, words: Tensor) -> None:
        """Keep rows for these ids only (those of the training data); every other id reads the
        OOV row. Needs ``config.oov``."""
        if not self.config.oov:
            raise ValueError("FeatureEmbedding.set_vocabulary needs RecommenderConfig(oov=True)")
        for rows, ids, oov in (
            (self.user_rows, users, 0),
            (self.movie_rows, movies, 0),
            (self.word_rows, words, self.config.n_words),
        ):
            keep = torch.zeros(len(rows), dtype=torch.bool)
            keep[torch.as_tensor(ids, dtype=torch.long)] = True
            keep[0] = True  # row 0: the OOV user and movie, and the padding word
            rows.copy_(torch.where(keep, torch.arange(len(rows)), oov))

    def rows(self, x: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The table rows the user, movie and title words of ``x`` read (ids outside the
        vocabulary: the OOV rows; in training, ``id_dropout`` of them too)."""
        user, movie, title = x["user"], x["movie"], x["title"]
        if not self.config.oov:
            return user, movie, title
        user, movie, title = self.user_rows[user], self.movie_rows[movie], self.word_rows[title]
        p = self.config.id_dropout
        if self.training and p > 0:
            user = user.masked_fill(torch.rand(user.shape, device=user.device) < p, 0)
            movie = movie.masked_fill(torch.rand(movie.shape, device=movie.device) < p, 0)
            dropped = (torch.rand(title.shape, device=title.device) < p) & (title != 0)
            title = title.masked_fill(dropped, self.config.n_words)
        return user, movie, title

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        if missing := [key for key in FEATURES if key not in x]:
            raise KeyError(
                f"FeatureEmbedding: x lacks {missing}; it needs the keys {list(FEATURES)}."
            )
        user, movie, title = self.rows(x)
        parts = [
            self.user(user),  # [B, user_dim]
            self.movie(movie),  # [B, movie_dim]
            self.title(title),  # [B, title_dim]
            self.genres(x["genres"]),  # [B, genre_dim]
        ]
        return torch.cat(parts, dim=-1)  # [B, out_dim]

    def reset_parameters(self) -> None:
        """Re-initialise the user, movie and title embeddings and the genre layer."""
        for part in (self.user, self.movie, self.title, self.genres):
            part.reset_parameters()
        self._init_embeddings()

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
    (Recommender(300 -> 512 -> 256 -> 1, dropout=0.0), Recommender(75 -> 128 -> 64 -> 1, dropout=0.2))
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

    def set_vocabulary(self, train: Any) -> Recommender:
        """Keep embedding rows for the users, movies and title words of ``train`` (a
        :class:`~agora.data.movielens.RatingsDataset`, the model's training data) only: every
        other id reads the OOV row (see :class:`FeatureEmbedding`)."""
        self.lower.set_vocabulary(*train.vocabulary())
        return self

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


@dataclass(frozen=True)
class Recipe:
    """How one of the paper's models trains: AdamW at ``lr``, batches of ``batch_size``,
    ``evals_per_epoch`` validations per epoch (dense genres peak within an epoch), early
    stopping after ``patience`` of them without improvement, at most ``epochs`` epochs; the
    best validation weights are kept.

    Chosen on validation (seed 0; the spread over seeds 0-4 for the ties): the student's
    learning rate from 3e-4, 1e-3, 3e-3 (1e-3 and 3e-3 tie; 3e-3 doubles the test spread), the
    teacher's from the same (3e-4 best over 3 seeds). Batch 1024 left sparse genres unlearnt.
    """

    lr: float
    epochs: int = 20
    evals_per_epoch: int = 4
    patience: int = 8
    batch_size: int = 256

    def fit_config(self, seed: int = 0, **overrides: Any) -> Any:
        """This recipe as a :class:`~agora.train.FitConfig` (``overrides`` replace fields)."""
        from agora.train import FitConfig

        fields = {
            "lr": self.lr, "epochs": self.epochs, "evals_per_epoch": self.evals_per_epoch,
            "patience": self.patience, "batch_size": self.batch_size, "seed": seed,
            "progress": False, "log_every": 10**9,
        }  # fmt: skip
        return FitConfig(**{**fields, **overrides})


STUDENT = Recipe(lr=1e-3)
TEACHER = Recipe(lr=3e-4)
HOLDOUT = 0.1  # the teacher's steps are chosen on the latest tenth of its own training ratings


def teacher_agent(
    meta: MovieLensMeta, path: str | os.PathLike | None = None, name: str = "teacher", **agent: Any
) -> Agent:
    """The paper's teacher as a frozen agent, with pre-trained weights (and vocabulary) from
    the safetensors file ``path`` (keys ``lower.*``, ``upper.*``, ``head.*``) when given."""
    model = Recommender.teacher(meta)
    teacher = Agent.from_model(name, model, "lower", "upper", "head", task="regression", **agent)
    if path is not None:
        backbone = nn.ModuleDict({"lower": model.lower, "upper": model.upper, "head": model.head})
        backbone.load_state_dict(read_teacher(path))
    return teacher.freeze()


def tensors_digest(tensors: dict[str, Tensor]) -> str:
    """The sha256 of named tensors' names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_teacher(path: str | os.PathLike) -> dict[str, Tensor]:
    """A pre-trained teacher's backbone, verified against the digest written with it.

    Raises:
        ValueError: naming the file, when it is unreadable or its tensors changed since
            :func:`pretrain_teacher` wrote them (delete it: it is trained again).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            written = json.loads((f.metadata() or {}).get("agora", "{}")).get("sha256")
        tensors = load_file(str(path))
    except (OSError, SafetensorError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable teacher file ({error}); delete it") from None
    if written != tensors_digest(tensors):
        what = (
            "carries no digest of its weights (an older agora wrote it)"
            if written is None
            else "holds weights that changed since it was written"
        )
        raise ValueError(f"{path}: the teacher file {what}; delete it to train it again")
    return tensors


def student_agent(
    meta: MovieLensMeta,
    train: Any = None,
    name: str = "student",
    dropout: float | None = None,
    **agent: Any,
) -> Agent:
    """The paper's student as a trainable agent, freshly initialised, its vocabulary that of
    ``train`` (its training ratings) when given, its ``dropout`` between the ReLU layers
    (``None``: :meth:`RecommenderConfig.student`'s); ``agent`` keywords go to
    :class:`~agora.agent.Agent` (``frozen``, ``task_weight``, ...)."""
    model = Recommender.student(meta, **({} if dropout is None else {"dropout": dropout}))
    if train is not None:
        model.set_vocabulary(train)
    return Agent.from_model(name, model, "lower", "upper", "head", task="regression", **agent)


def pretrain_teacher(
    ml: Any, seed: int, path: str | os.PathLike, *, recipe: Recipe = TEACHER,
    holdout: float | None = HOLDOUT, info: dict[str, Any] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Train the teacher on every genre's training ratings and save its backbone (its
    vocabulary included) to ``path`` (safetensors, written atomically).

    With ``holdout``, the number of steps is chosen by early stopping on the latest
    ``holdout`` of the training ratings (a first run that does not train on them); the teacher
    then trains afresh, with the same seed, on all of them for that many steps. So neither the
    students' validation nor their test period ever shapes the teacher, and no training rating
    is left out. ``None`` stops early on the validation split instead. ``ml`` is a
    :class:`~agora.data.movielens.MovieLens` (or anything with its ``meta`` and
    ``splits(None)``). Returns ``{"seed": seed, "steps": ..., **metrics}``: the held-out (or
    validation) metrics at the chosen step, which the file's metadata holds with ``info``
    (:func:`paper_teacher` adds the ``recipe`` its cache is keyed by).
    """
    from agora.graph import Graph
    from agora.train import fit

    def train(data: Any, stop: Any, config: Any) -> tuple[Agent, Any]:
        torch.manual_seed(seed)
        agent = teacher_agent(ml.meta)
        agent.lower.set_vocabulary(*data.vocabulary())
        agent.freeze(False)
        return agent, fit(Graph([agent], message_dim=128, codec_hidden=256), data, stop, config)

    splits = ml.splits(None)
    if holdout:
        earlier, later = splits["train"].split_in_time(holdout)
        _, chosen = train(earlier, later, recipe.fit_config(seed))
        steps = chosen.best_step or chosen.steps
        agent, _ = train(splits["train"], None, recipe.fit_config(seed, max_steps=steps))
    else:
        agent, chosen = train(splits["train"], splits["valid"], recipe.fit_config(seed))
        steps = chosen.best_step or chosen.steps
    metrics = {"seed": seed, "steps": steps, **chosen.metrics}
    backbone = {f"{part}.{k}": v.contiguous() for part in ("lower", "upper", "head")
                for k, v in getattr(agent, part).state_dict().items()}  # fmt: skip
    write_teacher(path, backbone, {**metrics, **(info or {})})
    return metrics


def write_teacher(path: str | os.PathLike, backbone: dict[str, Tensor], info: dict) -> None:
    """Save a teacher's backbone atomically, with ``info`` and the digest of its tensors in
    the file's metadata (what :func:`read_teacher` verifies)."""
    metadata = {"agora": json.dumps({**info, "sha256": tensors_digest(backbone)})}
    with written_in_place(path) as tmp:
        save_file(backbone, str(tmp), metadata=metadata)


def teacher_file(seed: int = 0, cache_dir: str | os.PathLike | None = None, tag: str = "") -> Path:
    """Where :func:`paper_teacher` keeps the teacher pre-trained with ``seed``:
    ``<cache>/movielens/teacher-<recipe>-seed{seed}.safetensors``, the cache being
    ``cache_dir``, else ``$AGORA_CACHE_DIR``, else ``~/.cache/agora``. ``<recipe>`` is a short
    digest of the model and its pre-training (with ``tag``, e.g. a shorter budget), so that a
    teacher pre-trained another way is never taken for this one.

    >>> teacher_file(3, "/tmp/c").parent.as_posix(), teacher_file(3, "/tmp/c").name[-18:]
    ('/tmp/c/movielens', '-seed3.safetensors')
    >>> teacher_file(0, "/tmp/c") != teacher_file(0, "/tmp/c", tag="epochs1")
    True
    """
    root = cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache" / "agora"
    name = f"teacher-{teacher_recipe(tag)}-seed{seed}.safetensors"
    return Path(root).expanduser() / "movielens" / name


def teacher_recipe(tag: str = "") -> str:
    """The short digest of the teacher's model and pre-training (with ``tag``) that
    :func:`teacher_file` names the file by, and its metadata holds (``"recipe"``)."""
    recipe = json.dumps(
        [asdict(TEACHER), "steps from a held-out", HOLDOUT, asdict(RecommenderConfig(1, 1, 1)), tag]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:8]


def check_cached_teacher(path: str | os.PathLike, seed: int, recipe: str) -> None:
    """Check a cached teacher's metadata against the key its name stands for: the ``seed`` it
    was pre-trained with and its ``recipe`` (:func:`teacher_recipe`; a file of an older agora
    does not record it, and only its seed is checked).

    Raises:
        ValueError: naming the file and what differs (a file copied or renamed into the name
            of another seed or recipe): delete it, and it is pre-trained again.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            info = json.loads((f.metadata() or {}).get("agora", "{}"))
    except (OSError, SafetensorError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable teacher file ({error}); delete it") from None
    expected = {"seed": seed, **({"recipe": recipe} if "recipe" in info else {})}
    for key, value in expected.items():
        if info.get(key) != value:
            raise ValueError(
                f"{path}: holds a teacher pre-trained with {key} {info.get(key)!r}, but its name "
                f"is the cache's for {key} {value!r} (a file copied or renamed into it); delete "
                "it, and it is pre-trained again"
            )


def paper_teacher(
    name: str = "teacher",
    seed: int = 0,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    teacher_epochs: int | None = None,
) -> Agent:
    """The paper's frozen teacher (300 -> 512 -> 256 -> 1), pre-trained once per seed.

    The weights come from :func:`teacher_file`; when it is missing, the teacher is first
    pre-trained there on every genre's training ratings (:func:`pretrain_teacher`, about half
    a minute on a CPU). Configs name it as ``agora.models.recommender:paper_teacher``.

    Args:
        name: the agent's name in its graph (default: ``"teacher"``).
        seed: the pre-training seed (default: ``0``).
        data_dir: see :func:`~agora.data.movielens.find_data` (default: ``None``).
        cache_dir: where pre-trained teachers are kept (default: ``None``, see above).
        teacher_epochs: pre-training epochs at most (default: the recipe's, 20); a shorter
            pre-training is kept in a file of its own.

    >>> teacher = paper_teacher(cache_dir="/tmp/agora-cache")  # doctest: +SKIP
    >>> teacher.frozen, teacher.lower.out_dim  # doctest: +SKIP
    (True, 300)
    """
    from agora.data.movielens import MovieLens

    ml = MovieLens(data_dir)
    recipe = TEACHER if teacher_epochs is None else replace(TEACHER, epochs=teacher_epochs)
    tag = "" if teacher_epochs is None else f"epochs{teacher_epochs}"
    path = teacher_file(seed, cache_dir, tag)
    if not path.exists():
        print(
            f"agora: pre-training the MovieLens teacher (seed {seed}, at most {recipe.epochs} "
            f"epoch{'s' * (recipe.epochs != 1)}) into {path}; later runs reuse it",
            file=sys.stderr,
            flush=True,
        )
        # pre-training seeds every generator; restore them so that the agents built after this
        # one start the same whether the teacher was pre-trained now or read from the cache
        states = random.getstate(), np.random.get_state()
        with torch.random.fork_rng():
            metrics = pretrain_teacher(
                ml, seed, path, recipe=recipe, info={"recipe": teacher_recipe(tag)}
            )
        random.setstate(states[0])
        np.random.set_state(states[1])
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if "/" in k)
        print(f"agora: teacher pre-trained (seed {seed}: {scores})", file=sys.stderr, flush=True)
    check_cached_teacher(path, seed, teacher_recipe(tag))
    try:
        return teacher_agent(ml.meta, path, name=name)
    except (RuntimeError, SafetensorError) as error:  # a corrupt file, or one for other data
        raise ValueError(
            f"{path} does not hold a teacher for the data in {ml.root}: {error}. Delete it to "
            "pre-train again, or pass another cache_dir"
        ) from None


def paper_student(
    name: str = "student",
    genre: str | None = None,
    data_dir: str | None = None,
    dropout: float | None = None,
) -> Agent:
    """The paper's trainable student, a quarter of the teacher (75 -> 128 -> 64 -> 1), its
    vocabulary that of ``genre``'s training ratings (every genre's for ``None``), its
    ``dropout`` between the ReLU layers (``None``: :meth:`RecommenderConfig.student`'s).
    Configs name it as ``agora.models.recommender:paper_student``; ``agora run paper-movielens
    --genre War`` sets ``genre`` here and in the data.

    >>> paper_student(genre="War").lower.out_dim  # doctest: +SKIP
    75
    """
    from agora.data.movielens import MovieLens

    ml = MovieLens(data_dir)
    return student_agent(ml.meta, ml.dataset("train", genre), name=name, dropout=dropout)
