"""Finding, downloading and verifying a dataset's files: one home for every data set.

A :class:`Source` says what a data set is made of: the files agora reads with their sha256,
the folder it is looked for under ``$AGORA_DATA_DIR``, and the published archive to download
it from. :func:`locate` finds its folder in one order for every data set:

1. ``data_dir``, when given (the folder itself, or its ``<folder>/``);
2. ``$AGORA_DATA_DIR/<folder>/``, when the variable is set;
3. the cache ``$AGORA_CACHE_DIR/<archive folder>/`` (default ``~/.cache/agora/``), which is
   filled from the archive on first use, verified by size and sha256 (and md5 where the
   publisher gave one) before anything is extracted.

A folder that is given but wrong is an error, never a silent download elsewhere. Files are
checked against their sha256 when read (:func:`read_verified`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.request import urlopen

from agora.folder import umask_mode


class DataError(ValueError):
    """A dataset file is missing, corrupt or unparsable; the message says which and what to do."""


class DataMissingError(DataError, FileNotFoundError):
    """A dataset folder or file does not exist."""


class ChecksumError(DataError):
    """A downloaded archive or a dataset file does not have the published checksum."""


@dataclass(frozen=True)
class Archive:
    """A published archive (``.zip`` or ``.tar.gz``): where to get it, what it must hash to,
    and its top folder. Every checksum given is checked; ``None`` where it is not known (CIFAR's
    publisher gives an md5 only)."""

    url: str
    size: int | None
    md5: str | None
    sha256: str | None
    folder: str


@dataclass(frozen=True)
class Source:
    """A data set's files and where they come from.

    Args:
        name (str): how messages name it (``"MovieLens 100K"``).
        folder (str): its folder under ``$AGORA_DATA_DIR`` (``"ml-100k"``).
        files (dict[str, str]): the files agora reads, each with its sha256; the first is the
            one whose presence marks the folder.
        archive (Archive): the published zip, downloaded into the cache on first use.
        aliases (tuple[str, ...]): other names the folder may have. (default: ``()``)
    """

    name: str
    folder: str
    files: dict[str, str]
    archive: Archive
    aliases: tuple[str, ...] = field(default=())

    def where_to_put(self) -> str:
        """The sentence every "not found" error ends with."""
        return (
            f"Put the {self.name} files ({', '.join(self.files)}) in "
            f"$AGORA_DATA_DIR/{self.folder}/, or unset AGORA_DATA_DIR and let agora download "
            f"{self.archive.url} into {cache_dir() / self.archive.folder}/ on first use "
            "(download=True)."
        )


def cache_dir() -> Path:
    """``$AGORA_CACHE_DIR``, else ``~/.cache/agora``: downloads and pre-trained teachers."""
    return Path(os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache" / "agora")


def _resolve(source: Source, path: Path, origin: str) -> Path:
    names = (source.folder, source.archive.folder, *source.aliases)
    for candidate in (path, *(path / name for name in names)):
        if any((candidate / file).is_file() for file in source.files):
            return candidate  # a missing file of the set is named when it is read
    raise DataMissingError(
        f"{origin}: none of {list(source.files)} in {path}/ or {path / source.folder}/, so no "
        f"{source.name} there. " + source.where_to_put()
    )


def locate(
    source: Source, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> Path:
    """The folder holding ``source``'s files, downloading them into the cache on first use
    (see the module's lookup order).

    Raises:
        DataMissingError: a given folder without the files, no files and ``download``
            false, or a download that failed (no network); the message says where to put them.
        ChecksumError: a download that fails verification (nothing is extracted).
    """
    if data_dir is not None:
        return _resolve(source, Path(data_dir).expanduser(), f"data_dir={data_dir}")
    if env := os.environ.get("AGORA_DATA_DIR"):
        return _resolve(source, Path(env).expanduser(), f"AGORA_DATA_DIR={env}")
    root = cache_dir() / source.archive.folder
    if all((root / name).is_file() for name in source.files):
        return root
    if not download:
        raise DataMissingError(
            f"{source.name} is not in {root}/ and download=False. " + source.where_to_put()
        )
    try:
        return download_archive(source.archive, root.parent)
    except DataError:
        raise
    except OSError as error:  # no network, or the publisher's server is down
        reason = getattr(error, "reason", None) or error
        raise DataMissingError(
            f"{source.name} is not in {root}/ and could not be downloaded from "
            f"{source.archive.url} ({reason}). " + source.where_to_put()
        ) from None


def read_verified(source: Source, root: Path, name: str, verify: bool = True) -> bytes:
    """The bytes of ``root / name``, checked against ``source``'s sha256 when ``verify``.

    Raises:
        DataMissingError: the file is missing.
        ChecksumError: its sha256 differs, naming the file and what to do.
    """
    path = root / name
    if not path.is_file():
        raise DataMissingError(f"{path}: missing. " + source.where_to_put())
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if verify and source.files.get(name) and digest != source.files[name]:
        raise ChecksumError(
            f"{path}: checksum mismatch, sha256 {digest} is not the published {source.name} "
            f"{name} ({source.files[name]}); the file is corrupt, truncated or from another "
            f"release. Replace it with the original (delete {root}/ to re-download into the "
            "cache), or pass verify=False to load edited data."
        )
    return raw


def _fetch(url: str, file: io.BufferedWriter, timeout: float) -> tuple[int, str, str]:
    size, md5, sha256 = 0, hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with urlopen(url, timeout=timeout) as response:
        while chunk := response.read(1 << 16):
            file.write(chunk)
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha256.hexdigest()


def _verify_archive(archive: Archive, size: int, md5: str, sha256: str) -> None:
    wrong = [
        f"{what} {got} (expected {want})"
        for what, got, want in [
            ("size", size, archive.size),
            ("md5", md5, archive.md5),
            ("sha256", sha256, archive.sha256),
        ]
        if want is not None and got != want
    ]
    if wrong:
        raise ChecksumError(
            f"Download of {archive.url} failed verification: {'; '.join(wrong)}. Nothing was "
            "extracted. Retry later, or download and unzip it yourself and set AGORA_DATA_DIR "
            f"to the folder holding {archive.folder}/."
        )


def _extract_tar(tar_path: Path, dest_dir: Path, folder: str, name: str) -> Path:
    """The regular files directly under ``folder/`` of a tar.gz, each renamed into place
    (``name``: where the archive came from, for the error)."""
    import tarfile

    root = dest_dir / folder
    with tarfile.open(tar_path, "r:gz") as archive:
        members = [
            m for m in archive.getmembers()
            if m.isfile() and PurePosixPath(m.name).parts[:-1] == (folder,)
        ]  # fmt: skip
        if not members:
            raise DataError(f"{name}: the archive has no folder {folder}/ of files.")
        root.mkdir(parents=True, exist_ok=True)
        for member in members:
            with archive.extractfile(member) as src:  # type: ignore[union-attr]
                _write_whole(src, root / PurePosixPath(member.name).name)
    return root


def _write_whole(src: Any, target: Path) -> None:
    """Copy a stream to ``target`` under a temporary name, then rename it into place: readers
    see the old file or the whole new one."""
    fd, part = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".part", dir=target.parent)
    os.chmod(part, umask_mode(0o666))
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(part, target)
    finally:
        Path(part).unlink(missing_ok=True)


def _extract(zip_path: Path, dest_dir: Path, folder: str, name: str) -> Path:
    if zipfile.is_zipfile(zip_path):
        return _extract_zip(zip_path, dest_dir, folder, name)
    return _extract_tar(zip_path, dest_dir, folder, name)


def _extract_zip(zip_path: Path, dest_dir: Path, folder: str, name: str) -> Path:
    root = dest_dir / folder
    with zipfile.ZipFile(zip_path) as zipped:
        members = [
            info
            for info in zipped.infolist()
            if not info.is_dir() and PurePosixPath(info.filename).parts[:-1] == (folder,)
        ]
        if not members:
            raise DataError(f"{name}: the zip has no folder {folder}/ of files.")
        root.mkdir(parents=True, exist_ok=True)
        for info in members:
            with zipped.open(info) as src:
                _write_whole(src, root / PurePosixPath(info.filename).name)
    return root


def download_archive(
    archive: Archive, dest_dir: str | os.PathLike, *, timeout: float = 60.0
) -> Path:
    """Download ``archive``, verify its size, md5 and sha256, and extract its folder.

    The zip is written to a temporary file beside ``dest_dir/archive.folder`` and deleted
    afterwards; each extracted file is renamed into place whole. Nothing is extracted unless
    every check passes (:class:`ChecksumError` otherwise). ``file://`` URLs work too.

    Args:
        archive: what to fetch.
        dest_dir: the parent of the folder to create.
        timeout: seconds without data before giving up (default: ``60``).

    Returns:
        ``dest_dir / archive.folder``.

    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     empty = Path(tmp, "empty.zip")
    ...     _ = empty.write_bytes(b"")
    ...     download_archive(Archive(empty.as_uri(), 1, "", "", "x"), tmp)
    Traceback (most recent call last):
    agora.data.download.ChecksumError: Download of file://... failed verification: size 0 (expected 1); ...
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{archive.folder}-", suffix=".zip.part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as file:
            size, md5, sha256 = _fetch(archive.url, file, timeout)
        _verify_archive(archive, size, md5, sha256)
        return _extract(Path(part), dest_dir, archive.folder, archive.url)
    finally:
        Path(part).unlink(missing_ok=True)
