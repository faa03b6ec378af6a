"""MovieLens 100K: locating, verifying, parsing, the paper's time split and genre tasks.

Tests that read the real files need ``AGORA_DATA_DIR`` (a folder holding ``ml-100k/``);
none of them touches the network.
"""

import doctest
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from agora.data import download, movielens
from agora.data.download import (
    Archive,
    ChecksumError,
    DataError,
    DataMissingError,
    download_archive,
)
from agora.data.movielens import ML_100K, MovieLens, collate, find_data, title_tokens

FILES = ML_100K.files

DATA_DIR = os.environ.get("AGORA_DATA_DIR", "")
HAVE_DATA = bool(DATA_DIR) and (Path(DATA_DIR) / "ml-100k" / "u.data").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason="MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/ "
    "(e.g. AGORA_DATA_DIR=../shared/data) to run this test",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any URL but file:// fails the test instead of reaching GroupLens."""
    real_urlopen = download.urlopen

    def guarded(url, *args, **kwargs):
        assert str(url).startswith("file:"), f"test tried the network: {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(download, "urlopen", guarded)


@pytest.fixture(scope="module")
def ml():
    if not HAVE_DATA:
        pytest.skip("MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/")
    return MovieLens(DATA_DIR, download=False)


def copy_data(tmp_path: Path, names=tuple(FILES)) -> Path:
    root = tmp_path / "ml-100k"
    root.mkdir()
    for name in names:
        shutil.copy(Path(DATA_DIR) / "ml-100k" / name, root / name)
        (root / name).chmod(0o644)
    return root


def make_zip(path: Path, files: dict[str, bytes]) -> Archive:
    """A zip at ``path`` and the :class:`Archive` that matches it exactly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, content in files.items():
            zipped.writestr(name, content)
    raw = buffer.getvalue()
    path.write_bytes(raw)
    return Archive(
        url=path.as_uri(),
        size=len(raw),
        md5=hashlib.md5(raw).hexdigest(),
        sha256=hashlib.sha256(raw).hexdigest(),
        folder="ml-100k",
    )


def reference_test_ratings() -> list[tuple[int, int, int, int]]:
    """The test split recomputed the plain way, independently of the loader."""
    lines = (Path(DATA_DIR) / "ml-100k" / "u.data").read_text().split("\n")
    rows = [tuple(int(v) for v in line.split("\t")) for line in lines if line]
    rows.sort(key=lambda r: (r[3], r[0], r[1]))  # time, user, movie
    return rows[-len(rows) // 10 :]


# ---------------------------------------------------------------------------------------------
# The split and the tasks


@needs_data
def test_split_is_by_time_and_sizes_follow_the_paper(ml):
    train, valid, test = ml.splits().values()
    assert (len(train), len(valid), len(test)) == (81_000, 9_000, 10_000)
    assert train.timestamp.max() <= valid.timestamp.min()  # valid = the latest part of train
    assert valid.timestamp.max() <= test.timestamp.min()  # no test rating older than train
    for split in (train, valid, test):
        assert (split.timestamp.diff() >= 0).all()
    pairs = {(u, m) for u, m in zip(test.user.tolist(), test.movie.tolist())}
    assert pairs == {(r[0], r[1]) for r in reference_test_ratings()}


@needs_data
def test_split_is_deterministic_across_loads(ml):
    again = MovieLens(DATA_DIR, download=False)
    for name, split in ml.splits("Comedy").items():
        other = again.splits("Comedy")[name]
        for field in ("user", "movie", "rating", "timestamp"):
            assert torch.equal(getattr(split, field), getattr(other, field)), (name, field)


@needs_data
def test_genre_task_filters_inside_the_global_time_boundaries(ml):
    war = ml.genre_index("War")
    everything, task = ml.splits(), ml.splits("war")  # names are case-insensitive
    for name in ("train", "valid", "test"):
        assert (ml.genre_flags[task[name].movie, war] == 1).all()
        expected = int(ml.genre_flags[everything[name].movie, war].sum())
        assert len(task[name]) == expected
    assert task["train"].timestamp.max() <= everything["valid"].timestamp.min()
    assert repr(task["test"]) == f"RatingsDataset('test/War', n={len(task['test'])})"


@needs_data
def test_genre_ranking_is_computed_from_test_ratings(ml):
    flags = {}
    for line in (Path(DATA_DIR) / "ml-100k" / "u.item").read_text("latin-1").splitlines():
        fields = line.split("|")
        flags[int(fields[0])] = [int(flag) for flag in fields[5:]]
    counts = [0] * len(ml.genres)
    for _, movie, _, _ in reference_test_ratings():
        counts = [c + f for c, f in zip(counts, flags[movie])]
    expected = sorted(zip(ml.genres, counts), key=lambda pair: -pair[1])
    assert ml.genre_ranking() == expected  # stable sort: ties in u.genre order, as documented

    dense = ml.dense_genres()
    assert dense == [name for name, _ in expected[:8]]
    assert all(count > 500 for _, count in expected[:8])
    assert all(len(ml.dataset("test", genre)) > 500 for genre in dense)


@needs_data
def test_dense_genres_refuses_sparse_genres(ml):
    sparse = next(name for name, count in ml.genre_ranking() if count <= 500)
    n = [name for name, _ in ml.genre_ranking()].index(sparse) + 1
    with pytest.raises(DataError, match=f"more than 500 test ratings.*{sparse}"):
        ml.dense_genres(n)


@needs_data
def test_unknown_genre_and_split_list_the_valid_names(ml):
    with pytest.raises(ValueError, match=r"'Westerns'.*Action, Adventure.*Western"):
        ml.splits("Westerns")
    with pytest.raises(ValueError, match=r"'validation'.*train, valid, test"):
        ml.dataset("validation")


# ---------------------------------------------------------------------------------------------
# Features and batching


@needs_data
def test_batch_features_have_the_documented_shapes(ml):
    meta = ml.meta
    assert (meta.n_users, meta.n_movies, meta.n_genres) == (943, 1682, 19)
    loader = DataLoader(ml.dataset("train"), batch_size=256, shuffle=True, collate_fn=collate)
    x, y = next(iter(loader))
    assert set(x) == {"user", "movie", "title", "genres"}
    assert x["user"].shape == x["movie"].shape == y.shape == (256,)
    assert x["title"].shape == (256, meta.title_len) and x["title"].dtype == torch.long
    assert x["genres"].shape == (256, 19) and x["genres"].dtype == torch.float32
    assert y.dtype == torch.float32 and y.min() >= 1 and y.max() <= 5
    assert int(x["user"].max()) <= meta.n_users and int(x["title"].max()) < meta.n_words


@needs_data
def test_title_and_genres_describe_the_movie(ml):
    x, y = ml.dataset("test")[-1]  # plain indexing gives one example
    assert x["title"].shape == (ml.meta.title_len,) and y.shape == ()
    movie = int(x["movie"])
    words = [ml.vocab[i] for i in x["title"].tolist() if i != 0]
    assert words == title_tokens(ml.movie_titles[movie])
    assert (x["title"][len(words) :] == 0).all()  # padding only at the end
    assert torch.equal(x["genres"], ml.genre_flags[movie])
    toy_story = ml.genre_flags[1].nonzero().flatten().tolist()
    assert [ml.genres[g] for g in toy_story] == ["Animation", "Children's", "Comedy"]


@needs_data
def test_getitems_and_getitem_agree_and_collate_stacks_plain_examples(ml):
    ds = ml.dataset("valid")
    x, y = ds.__getitems__([3, 0, 3])
    for i, index in enumerate([3, 0, 3]):
        xi, yi = ds[index]
        assert all(torch.equal(x[key][i], xi[key]) for key in x) and y[i] == yi
    concat = DataLoader(ConcatDataset([ds, ds]), batch_size=4, collate_fn=collate)
    xc, yc = next(iter(concat))  # ConcatDataset fetches one by one: collate stacks them
    assert xc["title"].shape == (4, ml.meta.title_len) and torch.equal(yc, ds.rating[:4])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_title_tokens_drop_year_case_and_apostrophes():
    assert title_tokens("Shawshank Redemption, The (1994)") == ["shawshank", "redemption", "the"]
    assert title_tokens("Schindler's List (1993)") == ["schindlers", "list"]
    assert title_tokens("unknown") == ["unknown"]
    assert title_tokens("1-900 (1994)") == ["1", "900"]


# ---------------------------------------------------------------------------------------------
# Corrupt and missing files


@needs_data
def test_corrupt_u_data_fails_its_checksum(tmp_path):
    root = copy_data(tmp_path)
    (root / "u.data").write_bytes((root / "u.data").read_bytes().replace(b"\t3\t", b"\t4\t", 1))
    with pytest.raises(ChecksumError, match=r"u\.data: checksum mismatch.*verify=False"):
        MovieLens(tmp_path)


@needs_data
def test_unparsable_u_data_names_the_line(tmp_path):
    root = copy_data(tmp_path)
    lines = (root / "u.data").read_bytes().split(b"\n")
    lines[2] = b"22\t377\tone\t878887116"
    (root / "u.data").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"u\.data: unparsable line 3 '22\\t377\\tone"):
        MovieLens(tmp_path, verify=False)
    lines[2] = b"22\t9999\t1\t878887116"
    (root / "u.data").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"u\.data: line 3 .*movie 9999 is not in u\.item"):
        MovieLens(tmp_path, verify=False)


@needs_data
def test_an_id_that_would_size_a_huge_table_is_refused_even_unverified(tmp_path):
    root = copy_data(tmp_path)
    lines = (root / "u.data").read_bytes().split(b"\n")
    lines[2] = b"100000000\t377\t1\t878887116"  # a 1e8-row user table: 2.5e9 parameters
    (root / "u.data").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"u\.data: line 3 .*user id 100000000 is above 1,000,000"):
        MovieLens(tmp_path, verify=False)
    shutil.copy(Path(DATA_DIR) / "ml-100k" / "u.data", root / "u.data")
    items = (root / "u.item").read_bytes().replace(b"1682|", b"100000000|", 1)
    (root / "u.item").write_bytes(items)
    with pytest.raises(DataError, match=r"u\.item: line 1682 .*movie id 100000000 is above"):
        MovieLens(tmp_path, verify=False)


@needs_data
@pytest.mark.parametrize("missing", ["u.data", "u.item", "u.genre"])
def test_missing_file_is_named_with_where_to_put_it(tmp_path, missing):
    copy_data(tmp_path, [name for name in FILES if name != missing])
    with pytest.raises(DataMissingError, match=rf"{missing}: missing.*AGORA_DATA_DIR/ml-100k/"):
        MovieLens(tmp_path)
    with pytest.raises(FileNotFoundError):  # catchable as either base
        MovieLens(tmp_path)


def test_wrong_data_dir_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataMissingError, match=r"data_dir=.*none of .*u\.data.* in .*ml-100k"):
        find_data(tmp_path / "nowhere")
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path))
    with pytest.raises(DataMissingError, match="AGORA_DATA_DIR="):
        find_data()
    assert not (tmp_path / "cache").exists()


def test_find_data_order_argument_then_environment_then_cache(tmp_path, monkeypatch):
    for place in ("arg", "env", "cache"):
        (tmp_path / place / "ml-100k").mkdir(parents=True)
        for name in FILES:
            (tmp_path / place / "ml-100k" / name).touch()
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "env"))
    assert find_data(tmp_path / "arg") == tmp_path / "arg" / "ml-100k"
    assert find_data(tmp_path / "arg" / "ml-100k") == tmp_path / "arg" / "ml-100k"
    assert find_data() == tmp_path / "env" / "ml-100k"
    monkeypatch.delenv("AGORA_DATA_DIR")
    assert find_data() == tmp_path / "cache" / "ml-100k"
    (tmp_path / "cache" / "ml-100k" / "u.item").unlink()
    with pytest.raises(DataMissingError, match="download=False"):
        find_data(download=False)


# ---------------------------------------------------------------------------------------------
# Downloading (file:// URLs and a fake opener: never the network)


def test_download_rejects_a_zip_with_the_wrong_checksums(tmp_path):
    fake = make_zip(tmp_path / "fake.zip", {"ml-100k/u.data": b"1\t1\t5\t0\n"})
    wrong = Archive(fake.url, fake.size, ML_100K.archive.md5, fake.sha256, "ml-100k")
    with pytest.raises(ChecksumError, match="failed verification: md5") as error:
        download_archive(wrong, tmp_path / "cache")
    assert "sha256" not in str(error.value)  # only what is wrong is reported
    wrong = Archive(fake.url, fake.size, fake.md5, ML_100K.archive.sha256, "ml-100k")
    with pytest.raises(ChecksumError, match="failed verification: sha256"):
        download_archive(wrong, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing extracted, no partial file


def test_download_extracts_a_verified_zip_in_place(tmp_path):
    files = {"ml-100k/u.data": b"1\t1\t5\t0\n", "ml-100k/README": b"hi", "other/x": b"no"}
    archive = make_zip(tmp_path / "good.zip", files)
    root = download_archive(archive, tmp_path / "cache")
    assert root == tmp_path / "cache" / "ml-100k"
    names = sorted(path.name for path in (tmp_path / "cache").rglob("*"))
    assert names == ["README", "ml-100k", "u.data"]  # no other folder, no partial files
    assert (root / "u.data").read_bytes() == b"1\t1\t5\t0\n"


def test_find_data_downloads_into_the_cache_and_verifies(tmp_path, monkeypatch):
    requested = []
    fake = make_zip(tmp_path / "fake.zip", {"ml-100k/u.data": b"not the real data"})

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return io.BytesIO(Path(fake.url.removeprefix("file://")).read_bytes())

    monkeypatch.setattr(download, "urlopen", fake_urlopen)
    monkeypatch.delenv("AGORA_DATA_DIR", raising=False)
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ChecksumError, match=r"size .*md5 .*sha256 .*Nothing was extracted"):
        find_data()
    assert requested == [ML_100K.archive.url]
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Documentation


@needs_data
def test_docstring_examples_run_including_those_that_need_the_data(monkeypatch):
    monkeypatch.setenv("AGORA_DATA_DIR", DATA_DIR)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = unskipped = 0
    for test in doctest.DocTestFinder().find(movielens):
        for example in test.examples:
            examples += 1  # +SKIP marks only the examples that need the data, absent in some CI
            unskipped += example.options.pop(doctest.SKIP, False)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert unskipped >= 6 and result.attempted == examples and result.failed == 0
