"""Finding, downloading and verifying a data set's files, for any :class:`Source` (never the
network: file:// URLs and fake openers). MovieLens' and CIFAR's own paths are in
tests/data/test_movielens.py and tests/data/test_images.py."""

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from agora.data import download
from agora.data.download import (
    Archive,
    ChecksumError,
    DataError,
    DataMissingError,
    Source,
    cache_dir,
    download_archive,
    locate,
    read_verified,
)

RATINGS, NOTES = b"1,2,5\n2,1,3\n", b"made up\n"


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def zipped(path: Path, files: dict[str, bytes]) -> Archive:
    """A zip of ``files`` at ``path``, and the archive that matches it exactly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    raw = buffer.getvalue()
    path.write_bytes(raw)
    md5 = hashlib.md5(raw).hexdigest()
    return Archive(path.as_uri(), len(raw), md5, sha256(raw), "toy-v1")


def source(archive: Archive | None = None) -> Source:
    archive = archive or Archive("https://example.org/toy.zip", None, None, None, "toy-v1")
    files = {"ratings.csv": sha256(RATINGS), "notes.txt": sha256(NOTES)}
    return Source("Toy Ratings", "toy", files, archive, aliases=("toy-ratings",))


def folder(path: Path, files=(("ratings.csv", RATINGS), ("notes.txt", NOTES))) -> Path:
    path.mkdir(parents=True)
    for name, content in files:
        (path / name).write_bytes(content)
    return path


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No URL but file:// is opened; no data folder or cache is shared with the machine."""
    real_urlopen = download.urlopen

    def guarded(url, *args, **kwargs):
        assert str(url).startswith("file:"), f"test tried the network: {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(download, "urlopen", guarded)
    monkeypatch.delenv("AGORA_DATA_DIR", raising=False)
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------
# Reading a file against its published checksum


def test_reading_checks_the_published_sha256(tmp_path):
    root = folder(tmp_path / "toy")
    assert read_verified(source(), root, "ratings.csv") == RATINGS
    (root / "ratings.csv").write_bytes(RATINGS.replace(b"5", b"4"))
    with pytest.raises(ChecksumError) as caught:
        read_verified(source(), root, "ratings.csv")
    message = str(caught.value)
    assert message.startswith(f"{root / 'ratings.csv'}: checksum mismatch, sha256 ")
    assert f"published Toy Ratings ratings.csv ({sha256(RATINGS)})" in message
    assert f"delete {root}/ to re-download" in message and "verify=False" in message
    assert read_verified(source(), root, "ratings.csv", verify=False) == RATINGS.replace(b"5", b"4")


def test_a_file_without_a_published_checksum_is_read_as_it_is(tmp_path):
    root = folder(tmp_path / "toy", [("extra.txt", b"anything")])
    assert read_verified(source(), root, "extra.txt") == b"anything"


def test_a_missing_file_is_named_with_where_to_put_it(tmp_path):
    root = folder(tmp_path / "toy", [("ratings.csv", RATINGS)])
    with pytest.raises(DataMissingError) as caught:
        read_verified(source(), root, "notes.txt")
    assert isinstance(caught.value, FileNotFoundError)
    assert str(caught.value).startswith(f"{root / 'notes.txt'}: missing. Put the Toy Ratings files")


def test_where_to_put_names_the_files_the_folder_the_url_and_the_cache(tmp_path):
    sentence = source().where_to_put()
    assert "Toy Ratings files (ratings.csv, notes.txt) in $AGORA_DATA_DIR/toy/" in sentence
    assert f"https://example.org/toy.zip into {tmp_path / 'cache' / 'toy-v1'}/" in sentence


def test_the_cache_is_agora_cache_dir_or_under_home(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("AGORA_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "agora"


# ---------------------------------------------------------------------------------------------
# Locating the folder


@pytest.mark.parametrize("name", ["toy", "toy-v1", "toy-ratings"])
def test_a_data_dir_is_the_folder_or_holds_it_by_any_of_its_names(tmp_path, name):
    root = folder(tmp_path / "data" / name)
    assert locate(source(), tmp_path / "data") == root
    assert locate(source(), root) == root


def test_the_environment_comes_after_the_argument_and_before_the_cache(tmp_path, monkeypatch):
    folder(tmp_path / "env" / "toy")
    folder(tmp_path / "arg" / "toy")
    folder(tmp_path / "cache" / "toy-v1")
    assert locate(source()) == tmp_path / "cache" / "toy-v1"  # whole in the cache: no download
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "env"))
    assert locate(source()) == tmp_path / "env" / "toy"
    assert locate(source(), tmp_path / "arg") == tmp_path / "arg" / "toy"


def test_a_folder_given_without_the_files_is_an_error_not_a_download(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataMissingError) as caught:
        locate(source(), tmp_path / "empty")
    assert str(caught.value).startswith(
        f"data_dir={tmp_path / 'empty'}: none of ['ratings.csv', 'notes.txt'] in "
        f"{tmp_path / 'empty'}/ or {tmp_path / 'empty' / 'toy'}/, so no Toy Ratings there."
    )
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataMissingError, match=r"^AGORA_DATA_DIR=\S+empty: none of"):
        locate(source())
    assert leftovers(tmp_path / "cache") == []


def test_without_download_an_empty_cache_says_where_to_put_the_files(tmp_path):
    folder(tmp_path / "cache" / "toy-v1", [("ratings.csv", RATINGS)])  # one file short
    with pytest.raises(DataMissingError, match=r"Toy Ratings is not in \S+toy-v1/ and download="):
        locate(source(), download=False)


# ---------------------------------------------------------------------------------------------
# Downloading


def test_a_first_use_downloads_verifies_and_extracts_into_the_cache(tmp_path):
    archive = zipped(
        tmp_path / "toy.zip",
        {"toy-v1/ratings.csv": RATINGS, "toy-v1/notes.txt": NOTES, "elsewhere/x": b""},
    )
    root = locate(source(archive))
    assert root == tmp_path / "cache" / "toy-v1"
    assert read_verified(source(archive), root, "ratings.csv") == RATINGS
    assert leftovers(tmp_path / "cache") == ["notes.txt", "ratings.csv", "toy-v1"]


@pytest.mark.parametrize("wrong", ["size", "md5", "sha256"])
def test_a_download_with_a_wrong_checksum_names_the_file_and_extracts_nothing(tmp_path, wrong):
    good = zipped(tmp_path / "toy.zip", {"toy-v1/ratings.csv": RATINGS})
    expected = {"size": good.size + 1, "md5": "0" * 32, "sha256": "0" * 64}[wrong]
    bad = dataclasses.replace(good, **{wrong: expected})
    with pytest.raises(ChecksumError) as caught:
        download_archive(bad, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(f"Download of {good.url} failed verification: {wrong} ")
    assert "toy.zip" in message and f"(expected {expected})" in message
    assert "Nothing was extracted" in message
    assert leftovers(tmp_path / "cache") == []  # no partial download, no extracted file


def test_a_checksum_the_publisher_did_not_give_is_not_checked(tmp_path):
    good = zipped(tmp_path / "toy.zip", {"toy-v1/ratings.csv": RATINGS})
    root = download_archive(Archive(good.url, None, good.md5, None, "toy-v1"), tmp_path / "new")
    assert (root / "ratings.csv").read_bytes() == RATINGS


def test_a_download_cut_off_leaves_no_partial_file_and_says_where_to_put_the_files(
    tmp_path, monkeypatch
):
    class CutOff(io.BytesIO):
        def read(self, size=-1):
            if self.tell():
                raise ConnectionResetError("Connection reset by peer")
            return super().read(size)

    archive = zipped(tmp_path / "toy.zip", {"toy-v1/ratings.csv": RATINGS * 10_000})
    raw = (tmp_path / "toy.zip").read_bytes()
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: CutOff(raw))
    with pytest.raises(DataMissingError) as caught:
        locate(source(archive))
    message = str(caught.value)
    assert f"could not be downloaded from {archive.url} (Connection reset by peer)" in message
    assert "Put the Toy Ratings files" in message
    assert leftovers(tmp_path / "cache") == []


def test_an_archive_without_the_folder_is_refused_and_leaves_nothing(tmp_path):
    archive = zipped(tmp_path / "toy.zip", {"toy-v2/ratings.csv": RATINGS})
    with pytest.raises(DataError, match=r"has no folder toy-v1/ of files") as caught:
        download_archive(archive, tmp_path / "cache")
    assert str(caught.value).startswith(f"{archive.url}: ")  # the source, not a deleted .part
    assert leftovers(tmp_path / "cache") == []


def test_a_new_download_replaces_old_files_whole(tmp_path):
    old = folder(tmp_path / "cache" / "toy-v1", [("ratings.csv", b"old"), ("keep.txt", b"k")])
    archive = zipped(tmp_path / "toy.zip", {"toy-v1/ratings.csv": RATINGS})
    assert download_archive(archive, tmp_path / "cache") == old
    assert (old / "ratings.csv").read_bytes() == RATINGS and (old / "keep.txt").read_bytes() == b"k"
    assert leftovers(tmp_path / "cache") == ["keep.txt", "ratings.csv", "toy-v1"]
