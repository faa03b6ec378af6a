"""MovieLens 100K, the paper's recommendation task (appendix 6.2).

One rating is one example ``(x, y)``; a batch of ``B`` ratings is::

    x = {"user": Long[B], "movie": Long[B], "title": Long[B, L], "genres": Float[B, 19]}
    y = Float[B]                                                  # the rating, 1..5

``title`` holds the word ids of the movie's title (0 = padding, for a masked mean of word
embeddings); ``genres`` is the multi-hot of the 19 GroupLens genres.

Protocol: every rating sorted by time (ties broken by user, then movie). The latest 10% are
``test``; the latest 10% of the rest are ``valid`` (early stopping and tuning, never test);
the remainder is ``train``. Pre-training uses every genre; a downstream task keeps the
ratings of the movies of one genre *inside the same time boundaries*, so no task's valid or
test rating can have been seen by a teacher pre-trained on ``train``.

Ids are GroupLens' own and 1-based: embeddings need ``n_users + 1`` and ``n_movies + 1``
rows; row 0 is never used by the data (free for padding or an unknown user at serving time).
Since the largest id sizes a table, an id above :data:`MAX_ID` is an error naming its line,
even with ``verify=False`` (ML-100K's largest are 943 and 1682).

The license forbids redistribution: agora reads ``$AGORA_DATA_DIR/ml-100k/`` or downloads
GroupLens' zip into a cache on first use, checking its size, md5 and sha256.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from agora.data.download import Archive, DataError, Source, locate, read_verified

Batch = tuple[dict[str, Tensor], Tensor]
SPLITS = ("train", "valid", "test")
# the largest user or movie id read: each id up to the largest is an embedding row
MAX_ID = 1_000_000

ML_100K = Source(
    name="MovieLens 100K",
    folder="ml-100k",
    files={  # sha256 of the extracted files agora reads (GroupLens' release of 1998)
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    },
    archive=Archive(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        size=4_924_029,
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        folder="ml-100k",
    ),
)


@dataclass(frozen=True)
class MovieLensMeta:
    """The sizes a model needs. Ids are 1-based: tables need ``n + 1`` rows.

    Args:
        n_users: largest user id (943).
        n_movies: largest movie id (1682).
        n_words: title vocabulary size, padding id 0 included.
        n_genres: number of genre flags (19).
        title_len: ``L``, the padded length of ``x["title"]``.
    """

    n_users: int
    n_movies: int
    n_words: int
    n_genres: int
    title_len: int


def find_data(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Return the folder holding MovieLens 100K's files, downloading them on first use.

    Looks, in order, at ``data_dir`` (the ``ml-100k`` folder itself or its parent), then
    ``$AGORA_DATA_DIR/ml-100k/``, then the cache ``$AGORA_CACHE_DIR/ml-100k/`` (default
    ``~/.cache/agora/ml-100k/``), which is filled from GroupLens when ``download`` is true
    (:func:`agora.data.download.locate`).

    With the data in ``$AGORA_DATA_DIR/ml-100k/`` (skipped by ``--doctest-modules``, run by
    ``tests/data/test_movielens.py`` when the data is there):

    >>> find_data().name  # doctest: +SKIP
    'ml-100k'
    """
    return locate(ML_100K, data_dir, download=download)


# ---------------------------------------------------------------------------------------------
# Reading and parsing


def _parse_genres(raw: bytes, path: Path) -> list[str]:
    names: list[str] = []
    for number, line in enumerate(raw.decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        name, _, index = line.rpartition("|")
        if not name or index != str(len(names)):
            raise DataError(
                f"{path}: unparsable line {number} {line!r}, expected 'name|{len(names)}'."
            )
        names.append(name)
    if not names:
        raise DataError(f"{path}: no genres.")
    return names


def _parse_items(raw: bytes, path: Path, n_genres: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Return movie ids ``[M]``, titles, and genre flags ``[M, n_genres]``."""
    ids, titles, flags = [], [], []
    n_fields = 5 + n_genres
    for number, line in enumerate(raw.decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        try:
            if len(fields) != n_fields or not set(fields[5:]) <= {"0", "1"}:
                raise ValueError
            movie = int(fields[0])
            if movie < 1:
                raise ValueError
        except ValueError:
            raise DataError(
                f"{path}: unparsable line {number} {line[:60]!r}..., expected {n_fields} '|'-"
                f"separated fields: id|title|release date|video date|IMDb URL|{n_genres} flags 0/1."
            ) from None
        if movie > MAX_ID:
            raise DataError(
                f"{path}: line {number} {line[:60]!r}...: " + _too_large("movie", movie)
            )
        ids.append(movie)
        titles.append(fields[1])
        flags.append([flag == "1" for flag in fields[5:]])
    ids_array = np.array(ids, dtype=np.int64)
    if len(ids) == 0 or len(np.unique(ids_array)) != len(ids):
        raise DataError(f"{path}: no movies, or a movie id appears twice.")
    return ids_array, titles, np.array(flags, dtype=np.float32).reshape(-1, n_genres)


def _first_bad_rating(raw: bytes, known_movie: np.ndarray) -> str:
    for number, line in enumerate(raw.decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            user, movie, rating, _ = (int(field) for field in fields)
        except ValueError:
            return f"unparsable line {number} {line!r}, expected 4 tab-separated integers"
        if user < 1 or not 1 <= rating <= 5:
            return f"line {number} {line!r}: user must be >= 1 and rating in 1..5"
        if user > MAX_ID:
            return f"line {number} {line!r}: " + _too_large("user", user)
        if not 0 < movie < len(known_movie) or not known_movie[movie]:
            return f"line {number} {line!r}: movie {movie} is not in u.item"
    return "no ratings"


def _too_large(kind: str, value: int) -> str:
    return (
        f"{kind} id {value} is above {MAX_ID:,}; ids size the embedding tables (one row per id "
        f"up to the largest), so renumber the {kind}s from 1"
    )


def _parse_ratings(raw: bytes, path: Path, movie_ids: np.ndarray) -> np.ndarray:
    """Return ``[N, 4]`` int64 rows ``user, movie, rating, timestamp``."""
    known_movie = np.zeros(movie_ids.max() + 1, dtype=bool)
    known_movie[movie_ids] = True
    try:
        table = np.loadtxt(io.BytesIO(raw), dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError:
        table = np.zeros((0, 0), dtype=np.int64)
    ok = table.ndim == 2 and table.shape[1] == 4 and len(table) > 0
    if ok:
        user, movie, rating = table[:, 0], table[:, 1], table[:, 2]
        ok = user.min() >= 1 and user.max() <= MAX_ID and rating.min() >= 1 and rating.max() <= 5
        ok = ok and movie.min() >= 1 and movie.max() < len(known_movie) and known_movie[movie].all()
    if not ok:
        raise DataError(f"{path}: {_first_bad_rating(raw, known_movie)}.")
    return table


_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_WORD = re.compile(r"[^\W_]+")


def title_tokens(title: str) -> list[str]:
    """Lowercase words of a title, its trailing ``(year)`` and apostrophes removed.

    >>> title_tokens("Shawshank Redemption, The (1994)")
    ['shawshank', 'redemption', 'the']
    >>> title_tokens("C'est arrivé près de chez vous (1992)")
    ['cest', 'arrivé', 'près', 'de', 'chez', 'vous']
    """
    return _WORD.findall(_YEAR.sub("", title).lower().replace("'", ""))


def _title_table(ids: np.ndarray, titles: list[str], rows: int) -> tuple[list[str], Tensor]:
    """Return the vocabulary (``vocab[0] = ""`` is padding) and word ids ``[rows, L]``."""
    tokens = [title_tokens(title) for title in titles]
    vocab = ["", *sorted({word for words in tokens for word in words})]
    index = {word: i for i, word in enumerate(vocab)}
    table = np.zeros((rows, max([1, *map(len, tokens)])), dtype=np.int64)
    for movie, words in zip(ids, tokens):
        table[movie, : len(words)] = [index[word] for word in words]
    return vocab, torch.from_numpy(table)


# ---------------------------------------------------------------------------------------------
# Datasets


def collate(batch: Batch | list[Batch]) -> Batch:
    """The ``collate_fn`` for :class:`RatingsDataset`: a gathered batch passes through.

    ``DataLoader`` hands ``collate`` what ``dataset.__getitems__(indices)`` returned, already
    a batch. Datasets without ``__getitems__`` (e.g. ``ConcatDataset``) hand it a list of
    examples, which are stacked as ``default_collate`` would.

    >>> x, y = collate([({"user": torch.tensor(3)}, torch.tensor(4.0))] * 2)
    >>> x["user"], y
    (tensor([3, 3]), tensor([4., 4.]))
    """
    if isinstance(batch, tuple):
        return batch
    x, y = default_collate(batch)
    return x, y


class RatingsDataset(Dataset):
    r"""Ratings held as tensors; a batch is one gather per field.

    .. math::
        x = \{user_i,\ movie_i,\ T[movie_i],\ G[movie_i]\}_{i \in batch},\quad y = r_i

    where ``T`` holds the title word ids and ``G`` the genre flags of every movie, computed
    once and shared by every split. Use it with ``collate_fn=collate`` (or :meth:`loader`)::

        DataLoader(ds, batch_size=256, shuffle=True, collate_fn=collate)

    Args:
        user: the user of each rating, in time order.
        movie: the movie of each rating.
        rating: the rating, 1 to 5.
        timestamp: when it was given (seconds).
        titles: word ids of each movie's title, row = movie id.
        genres: genre flags of each movie, row = movie id.
        name: shown by ``repr``, e.g. ``"test/War"``.
        group_names: the name of each genre flag (``x["genres"]``'s columns), for analyses
            by genre (``agora cka --groups genre``).

    Shapes:
        - user, movie, timestamp: ``Long[N]``; rating: ``Float[N]``
        - titles: ``Long[n_movies + 1, L]``; genres: ``Float[n_movies + 1, G]``
        - ``ds[i]``: ``({"user": Long[], "movie": Long[], "title": Long[L], "genres": Float[G]}, Float[])``
        - ``ds.__getitems__(idx)``: the same with a leading ``B``.

    >>> ds = RatingsDataset(torch.tensor([1, 2]), torch.tensor([1, 1]), torch.tensor([4.0, 5.0]),
    ...                     torch.tensor([10, 20]), torch.tensor([[0], [7]]), torch.eye(2))
    >>> x, y = ds.__getitems__([1, 0])
    >>> x["user"], x["title"].shape, x["genres"].shape, y
    (tensor([2, 1]), torch.Size([2, 1]), torch.Size([2, 2]), tensor([5., 4.]))
    """

    def __init__(
        self,
        user: Tensor,
        movie: Tensor,
        rating: Tensor,
        timestamp: Tensor,
        titles: Tensor,
        genres: Tensor,
        name: str = "ratings",
        group_names: Sequence[str] | None = None,
    ) -> None:
        if not user.shape == movie.shape == rating.shape == timestamp.shape == (len(user),):
            raise ValueError(
                f"RatingsDataset {name!r}: user, movie, rating and timestamp must be 1-D of one "
                f"length, got {[tuple(t.shape) for t in (user, movie, rating, timestamp)]}."
            )
        self.user, self.movie, self.rating, self.timestamp = user, movie, rating, timestamp
        self.titles, self.genres, self.name = titles, genres, name
        self.group_names = list(group_names) if group_names is not None else None

    collate_fn = staticmethod(collate)  # agora's loaders use a dataset's own collate_fn

    def __len__(self) -> int:
        return len(self.user)

    def __getitems__(self, indices: Sequence[int] | Tensor) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)  # [B]
        movie = self.movie[index]  # [B]
        x = {
            "user": self.user[index],  # [B]
            "movie": movie,
            "title": self.titles[movie],  # [B, L]
            "genres": self.genres[movie],  # [B, G]
        }
        return x, self.rating[index]

    def __getitem__(self, index: int) -> Batch:
        index = range(len(self))[index]  # IndexError out of range, negative indices allowed
        x, y = self.__getitems__([index])
        return {key: value[0] for key, value in x.items()}, y[0]

    def head(self, n: int | None) -> RatingsDataset:
        """The first ``n`` ratings (the earliest: splits are in time order); ``None``: all.

        A slice for smoke tests and examples (``--limit N``).

        >>> ds = RatingsDataset(torch.tensor([1, 2]), torch.tensor([1, 1]),
        ...                     torch.tensor([4.0, 5.0]), torch.tensor([10, 20]),
        ...                     torch.tensor([[0], [7]]), torch.eye(2), name="train")
        >>> ds.head(1), ds.head(None) is ds
        (RatingsDataset('train', n=1), True)
        """
        if n is None:
            return self
        fields = (self.user[:n], self.movie[:n], self.rating[:n], self.timestamp[:n])
        return RatingsDataset(
            *fields, self.titles, self.genres, name=self.name, group_names=self.group_names
        )

    def split_in_time(self, fraction: float) -> tuple[RatingsDataset, RatingsDataset]:
        """The earlier ``1 - fraction`` of these ratings and the later ``fraction`` (the
        ratings are in time order): a held-out split carved from a training split.

        Example:
            >>> ds = RatingsDataset(torch.arange(10), torch.zeros(10, dtype=torch.long),
            ...                     torch.ones(10), torch.arange(10), torch.zeros(1, 1), torch.eye(1))
            >>> [len(part) for part in ds.split_in_time(0.2)]
            [8, 2]
        """
        cut = len(self) - round(len(self) * fraction)
        if not 0 < cut < len(self):
            raise ValueError(f"{self!r}: cannot hold out {fraction} of {len(self)} ratings")
        parts = []
        for part, index in (("earlier", slice(0, cut)), ("later", slice(cut, len(self)))):
            fields = (
                self.user[index],
                self.movie[index],
                self.rating[index],
                self.timestamp[index],
            )
            parts.append(RatingsDataset(
                *fields, self.titles, self.genres, name=f"{self.name}/{part}",
                group_names=self.group_names,
            ))  # fmt: skip
        return parts[0], parts[1]

    def vocabulary(self) -> tuple[Tensor, Tensor, Tensor]:
        """The users, movies and title words these ratings hold (what a model trained on them
        has seen), each id once.

        Example:
            >>> ds = RatingsDataset(torch.tensor([3, 3]), torch.tensor([1, 0]),
            ...                     torch.tensor([4.0, 5.0]), torch.tensor([10, 20]),
            ...                     torch.tensor([[5, 0], [7, 2]]), torch.eye(2))
            >>> [ids.tolist() for ids in ds.vocabulary()]
            [[3], [0, 1], [0, 2, 5, 7]]
        """
        movies = self.movie.unique()
        return self.user.unique(), movies, self.titles[movies].unique()

    def full_batch(self) -> Batch:
        """Every rating as one batch, for evaluating a small split in one pass."""
        return self.__getitems__(torch.arange(len(self)))

    def loader(self, batch_size: int = 256, shuffle: bool = False, **kwargs) -> DataLoader:
        """A ``DataLoader`` over this dataset with :func:`collate`; kwargs go to ``DataLoader``."""
        return DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, **kwargs
        )

    def __repr__(self) -> str:
        return f"RatingsDataset({self.name!r}, n={len(self)})"


class MovieLens:
    """MovieLens 100K with the paper's time split and genre tasks.

    Args:
        data_dir: see :func:`find_data` (default: ``None``).
        download: allow downloading into the cache (default: ``True``).
        verify: check each file's sha256 (default: ``True``; ``False`` to load edited files).
        valid_fraction: latest part of the non-test ratings kept for validation (default: ``0.1``).
        test_fraction: latest part of all ratings kept for test (default: ``0.1``).

    Attributes:
        root: the folder read; genres: the 19 genre names, in u.genre's order;
        vocab: title words, ``vocab[0] = ""`` the padding; titles ``Long[n_movies + 1, L]``
        and genre_flags ``Float[n_movies + 1, G]``: the per-movie features; user, movie,
        rating, timestamp: all ratings in time order; bounds: ``split -> (start, stop)``.

    With the data in ``$AGORA_DATA_DIR/ml-100k/`` (skipped by ``--doctest-modules``, run by
    ``tests/test_movielens.py`` when the data is there):

    >>> ml = MovieLens()  # doctest: +SKIP
    >>> ml.meta  # doctest: +SKIP
    MovieLensMeta(n_users=943, n_movies=1682, n_words=2405, n_genres=19, title_len=15)
    >>> {name: len(ds) for name, ds in ml.splits().items()}  # doctest: +SKIP
    {'train': 81000, 'valid': 9000, 'test': 10000}
    >>> ml.dense_genres(3)  # doctest: +SKIP
    ['Drama', 'Comedy', 'Action']
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        *,
        download: bool = True,
        verify: bool = True,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ) -> None:
        self.root = root = find_data(data_dir, download=download)
        self.genres = _parse_genres(
            read_verified(ML_100K, root, "u.genre", verify), root / "u.genre"
        )
        ids, titles, flags = _parse_items(
            read_verified(ML_100K, root, "u.item", verify), root / "u.item", len(self.genres)
        )
        table = _parse_ratings(read_verified(ML_100K, root, "u.data", verify), root / "u.data", ids)
        rows = int(ids.max()) + 1
        self.movie_titles = dict(zip(ids.tolist(), titles))
        self.vocab, self.titles = _title_table(ids, titles, rows)
        self.genre_flags = torch.zeros(rows, len(self.genres))
        self.genre_flags[torch.from_numpy(ids)] = torch.from_numpy(flags)

        user, movie, rating, timestamp = table.T
        order = np.lexsort((movie, user, timestamp))  # by time, then user, then movie
        self.user = torch.from_numpy(user[order])  # [N]
        self.movie = torch.from_numpy(movie[order])  # [N]
        self.rating = torch.from_numpy(rating[order]).float()  # [N]
        self.timestamp = torch.from_numpy(timestamp[order])  # [N]
        self.bounds = _split_bounds(len(order), valid_fraction, test_fraction, root / "u.data")

    @property
    def meta(self) -> MovieLensMeta:
        """Sizes for the model: see :class:`MovieLensMeta`."""
        return MovieLensMeta(
            n_users=int(self.user.max()),
            n_movies=len(self.genre_flags) - 1,
            n_words=len(self.vocab),
            n_genres=len(self.genres),
            title_len=self.titles.shape[1],
        )

    def genre_index(self, genre: str) -> int:
        """Index of a genre name (case-insensitive) in :attr:`genres`."""
        folded = [name.casefold() for name in self.genres]
        if genre.casefold() not in folded:
            raise ValueError(
                f"Unknown MovieLens genre {genre!r}; valid names: {', '.join(self.genres)}."
            )
        return folded.index(genre.casefold())

    def dataset(self, split: str, genre: str | Sequence[str] | None = None) -> RatingsDataset:
        """The ratings of one split: all genres, the movies of ``genre``, or of any genre of a
        list (a genre group, e.g. a specialist teacher's).

        >>> len(MovieLens().dataset("test", genre="War"))  # doctest: +SKIP
        939
        >>> MovieLens().dataset("test", genre=["War", "Western"])  # doctest: +SKIP
        RatingsDataset('test/War+Western', n=1109)
        """
        if split not in self.bounds:
            raise ValueError(f"Unknown split {split!r}; valid splits: {', '.join(SPLITS)}.")
        start, stop = self.bounds[split]
        index = torch.arange(start, stop)  # [n]
        name = split
        if genre is not None:
            group = [genre] if isinstance(genre, str) else list(genre)
            columns = [self.genre_index(g) for g in group]
            keep = self.genre_flags[self.movie[index]][:, columns].sum(-1) > 0  # [n]
            index = index[keep]
            name = f"{split}/{'+'.join(self.genres[c] for c in columns)}"
        fields = (self.user[index], self.movie[index], self.rating[index], self.timestamp[index])
        return RatingsDataset(
            *fields, self.titles, self.genre_flags, name=name, group_names=self.genres
        )

    def splits(self, genre: str | Sequence[str] | None = None) -> dict[str, RatingsDataset]:
        """``{"train", "valid", "test"}`` datasets: pre-training (``genre=None``), a genre task,
        or a genre group's."""
        return {split: self.dataset(split, genre) for split in SPLITS}

    def genre_ranking(self) -> list[tuple[str, int]]:
        """Every genre with its number of test ratings, densest first (ties: u.genre order)."""
        start, stop = self.bounds["test"]
        counts = self.genre_flags[self.movie[start:stop]].sum(0).long().tolist()  # [G]
        order = sorted(range(len(counts)), key=lambda g: (-counts[g], g))
        return [(self.genres[g], counts[g]) for g in order]

    def dense_genres(self, n: int = 8, min_test: int = 500) -> list[str]:
        """The ``n`` genres with most test ratings ("Genre 1..n"), each needing ``> min_test``."""
        ranking = self.genre_ranking()[:n]
        sparse = [f"{name} ({count})" for name, count in ranking if count <= min_test]
        if len(ranking) < n or sparse:
            raise DataError(
                f"{self.root}: the {n} densest genres must each have more than {min_test} test "
                f"ratings (paper, appendix 6.2); too sparse: {', '.join(sparse) or 'too few genres'}."
            )
        return [name for name, _ in ranking]

    def __repr__(self) -> str:
        sizes = "/".join(str(stop - start) for start, stop in self.bounds.values())
        return f"MovieLens({str(self.root)!r}, ratings={len(self.user)}, train/valid/test={sizes})"


def _split_bounds(n: int, valid_fraction: float, test_fraction: float, path: Path) -> dict:
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError(
            f"valid_fraction and test_fraction must lie in (0, 1), got {valid_fraction}, {test_fraction}."
        )
    n_test = round(n * test_fraction)
    n_valid = round((n - n_test) * valid_fraction)
    n_train = n - n_test - n_valid
    if min(n_train, n_valid, n_test) < 1:
        raise DataError(f"{path}: {n} ratings are too few to split {n_train}/{n_valid}/{n_test}.")
    return {"train": (0, n_train), "valid": (n_train, n - n_test), "test": (n - n_test, n)}


def genre_task(
    genre: str | None = None, data_dir: str | os.PathLike | None = None
) -> dict[str, RatingsDataset]:
    """The data factory of the paper's configs: one genre's ``{"train", "valid", "test"}``.

    ``genre=None`` gives every rating (the teacher's pre-training data). Configs name it as
    ``agora.data.movielens:genre_task``; ``agora run paper-movielens --genre War`` sets
    ``data.kwargs.genre``.

    Args:
        genre: a name of :attr:`MovieLens.genres`, case-insensitive (default: ``None``, all).
        data_dir: see :func:`find_data` (default: ``None``).

    Raises:
        ValueError: an unknown genre, listing the valid names.
        DataError: the data is missing or corrupt, saying where to put it.

    >>> len(genre_task("War")["test"])  # doctest: +SKIP
    939
    """
    return MovieLens(data_dir).splits(genre)
