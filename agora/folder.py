"""The run folder's rules: one writer at a time, and one meaning for reusing a folder.

``fit(..., out_dir=D)`` claims ``D`` before it trains:

- **One writer.** ``D/.lock`` holds the owner's host and process id while a run writes; a
  second run on ``D`` fails, naming the owner. A lock left by a process that died on this host
  is taken over. An empty or unreadable lock names no owner: it is refused as such, and
  ``overwrite`` breaks it.
- **A clean stop.** While a run holds ``D``, SIGTERM ends it as an exception would
  (:class:`Terminated`, exit status 143): the lock is released, and the run resumes from its
  last checkpoint. The previous handler is restored when the run ends.
- **Resume only what this run would have written.** ``D/run.json`` records the run's
  configuration (the graph's spec, the :class:`~agora.train.FitConfig`, the run config) and
  whether it finished. A run on a folder that holds an *unfinished* run of the *same*
  configuration resumes it; a finished run, or a run of another configuration, is refused
  (:class:`RunFolderError`, naming the keys that differ) unless ``overwrite`` starts afresh.
  So the config written beside the weights is always the one that trained them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RECORD = "run.json"
LOCK = ".lock"
# what a run writes into its folder (overwrite removes these, and nothing else)
WRITTEN = ("checkpoints", "model", "metrics.jsonl", RECORD, "stages", "alone", "comparison.json")


AFRESH = "{afresh}"  # in a RunFolderError's message: how its caller starts afresh


class RunFolderError(ValueError):
    """A run folder this run may not write: held by another run, finished, or of another
    configuration. The message says which, and what to do.

    Starting afresh is spelled differently by each caller: this module's ``overwrite=True``,
    :func:`~agora.train.fit`'s ``resume=False``, ``agora run``'s ``--overwrite``. The message
    says :data:`AFRESH` where the fix goes, and each caller re-raises the error
    :meth:`advising` its own spelling.

    Args:
        message (str): what is wrong and what to do, :data:`AFRESH` standing for the fix.
        afresh (str): how the caller starts afresh. (default: ``"overwrite=True"``)

    Example:
        >>> error = RunFolderError(f"runs/x holds a finished run; {AFRESH} trains it again")
        >>> str(error.advising("--overwrite"))
        'runs/x holds a finished run; --overwrite trains it again'
    """

    def __init__(self, message: str, afresh: str = "overwrite=True") -> None:
        self.template, self.afresh = message, afresh
        super().__init__(message.replace(AFRESH, afresh))

    def advising(self, afresh: str) -> RunFolderError:
        """The same error, saying how the caller that re-raises it starts afresh."""
        return type(self)(self.template, afresh)


class Terminated(SystemExit):
    """SIGTERM arrived while a run held its folder: the run stops as an exception stops it
    (its lock released), with exit status 143 (128 + SIGTERM)."""


def fingerprint(configuration: Mapping[str, Any]) -> str:
    """A short digest of a run's configuration (plain data)."""
    text = json.dumps(configuration, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list):
        out = {}
        for i, value in enumerate(data):
            out.update(_flat(value, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: data}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], most: int = 5) -> list[str]:
    """The dotted keys whose values differ between two configurations, ``key: old -> new``.

    Example:
        >>> differences({"fit": {"lr": 0.001, "epochs": 2}}, {"fit": {"lr": 0.1, "epochs": 2}})
        ['fit.lr: 0.001 -> 0.1']
    """
    a, b = (
        _flat(json.loads(json.dumps(old, default=str))),
        _flat(json.loads(json.dumps(new, default=str))),
    )
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<none>") != b.get(k, "<none>"))
    said = [f"{k}: {a.get(k, '<none>')} -> {b.get(k, '<none>')}" for k in keys[:most]]
    return said + ([f"and {len(keys) - most} more"] if len(keys) > most else [])


def claim(out_dir: Path, configuration: Mapping[str, Any], *, overwrite: bool = False) -> bool:
    """Check that this run may write ``out_dir`` (see the module's rules) and record it there;
    ``True`` when an unfinished run of the same configuration is there to resume.

    Raises:
        RunFolderError: ``out_dir`` is a file, holds a finished run, or a run of another
            configuration (and not ``overwrite``).
    """
    _check_folder(out_dir)
    record_path = out_dir / RECORD
    ran_here = any((out_dir / name).exists() for name in ("checkpoints", "model", RECORD))
    digest = fingerprint(configuration)
    if ran_here and overwrite:
        for name in WRITTEN:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        ran_here = False
    if ran_here:
        record = read_record(record_path) if record_path.is_file() else {}
        if record.get("fingerprint") != digest:
            changed = differences(record.get("configuration", {}), configuration)
            raise RunFolderError(
                f"{out_dir} holds a run of another configuration ({'; '.join(changed)}); give "
                f"a new folder, or {AFRESH} to train afresh in this one"
            )
        if record.get("finished"):
            raise RunFolderError(
                f"{out_dir} holds a finished run of this configuration (its model is in "
                f"{out_dir / 'model'}); give a new folder, or {AFRESH} to train it again"
            )
        return True
    out_dir.mkdir(parents=True, exist_ok=True)
    write_record(out_dir, configuration, finished=False)
    return False


@contextmanager
def writing(
    out_dir: Path, configuration: Mapping[str, Any], *, overwrite: bool = False, main: bool = True
) -> Iterator[bool]:
    """Hold ``out_dir`` while a run writes it: take its :class:`Lock` (``overwrite`` breaks a
    broken one), :func:`claim` it, stop cleanly on SIGTERM (:func:`stop_on_sigterm`), and
    record the run finished in ``run.json`` when the block ends without an error. Yields
    whether an unfinished run of the same configuration is there to resume.

    ``main=False`` (the other processes of a multi-process run) only stops on SIGTERM: one
    process holds the folder.

    Example:
        >>> folder = Path(tempfile.mkdtemp())
        >>> with writing(folder, {"fit": {"lr": 0.1}}) as resuming:
        ...     print(resuming, (folder / LOCK).exists())
        False True
        >>> json.loads((folder / RECORD).read_text())["finished"], (folder / LOCK).exists()
        (True, False)
    """
    lock = Lock(out_dir) if main else None
    with stop_on_sigterm(out_dir):
        try:
            resuming = False
            if lock is not None:
                lock.acquire(break_broken=overwrite)
                resuming = claim(out_dir, configuration, overwrite=overwrite)
            yield resuming
            if lock is not None:
                write_record(out_dir, configuration, finished=True)
        finally:
            if lock is not None:
                lock.release()


@contextmanager
def stop_on_sigterm(out_dir: Path) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (after one line on stderr), so
    that the run unwinds as after an error: its lock is released, its checkpoints stay whole.
    The previous handler is restored after. Outside the main thread, where Python cannot
    install a handler, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print(
            f"agora: SIGTERM: the run writing {out_dir} stops; run it again to resume from its "
            "last checkpoint",
            file=sys.stderr,
        )
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def umask_mode(mode: int) -> int:
    """``mode`` as the process's umask leaves it (what ``open`` or ``mkdir`` would make):
    files written under a temporary name (``mkstemp``: 0600) get it before they are renamed.

    Example:
        >>> old = os.umask(0o022)
        >>> oct(umask_mode(0o666)), oct(umask_mode(0o777))
        ('0o644', '0o755')
        >>> _ = os.umask(old)
    """
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def written_in_place(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed onto ``path`` when the block ends
    (removed if it raises): readers see the old file or the whole new one, never a part.
    The name is unique per writer, and the file gets the permissions the umask gives.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with written_in_place(target) as tmp:
        ...     _ = tmp.write_text("whole")
        >>> target.read_text()
        'whole'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, umask_mode(0o666))  # mkstemp makes it 0600
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"{out_dir}: is a file; a run needs a folder (give another --out)")


def write_record(out_dir: Path, configuration: Mapping[str, Any], *, finished: bool) -> None:
    """Write ``run.json``: the configuration, its fingerprint, and whether the run finished."""
    record = {
        "fingerprint": fingerprint(configuration),
        "finished": finished,
        "configuration": json.loads(json.dumps(configuration, default=str)),
    }
    with written_in_place(out_dir / RECORD) as tmp:
        tmp.write_text(json.dumps(with_digest(record), indent=2, sort_keys=True))


def read_record(path: Path) -> dict[str, Any]:
    """A ``run.json``, verified against the digest it carries (one written by an older agora
    carries none).

    Raises:
        RunFolderError: naming the file when it is not UTF-8, not JSON, or changed since it
            was written.
    """
    remedy = "give a new folder, or --overwrite (overwrite=True) to train afresh in this one"
    record = read_json(path, RunFolderError, remedy)
    if not isinstance(record, dict):
        raise RunFolderError(f"{path}: not a run record (a JSON object); {remedy}")
    return record


class Lock:
    """``out_dir/.lock``, held while a run writes the folder (a context manager).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with Lock(folder):
        ...     try:
        ...         Lock(folder).acquire()  # a second run on the same folder
        ...     except RunFolderError as error:
        ...         print("refused:", "is being written by process" in str(error))
        refused: True
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK
        self.held = False

    def acquire(self, *, break_broken: bool = False) -> None:
        """Take the lock, or take over one left by a dead process of this host.

        Args:
            break_broken: also take over a lock that names no owner (empty or unreadable),
                as ``overwrite`` does; a lock naming a live owner is never taken.
                (default: ``False``)

        Raises:
            RunFolderError: another process holds the lock, or (without ``break_broken``)
                the lock names no owner; the message says what to do.
        """
        _check_folder(self.path.parent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner, broken = self._owner()
                if owner is None:
                    continue  # released meanwhile
                dead = owner.get("host") == me["host"] and not _alive(owner.get("pid"))
                if dead or (broken and break_broken):
                    self.path.unlink(missing_ok=True)  # nobody holds it: take it over
                    continue
                if broken:
                    raise RunFolderError(
                        f"{self.path}: the lock file is {broken}, so it names no run; a run "
                        "that died as it took the lock leaves one. Remove it if no run is "
                        f"writing {self.path.parent} ({AFRESH} also breaks it, and trains "
                        "afresh)"
                    ) from None
                raise RunFolderError(
                    f"{self.path.parent} is being written by process {owner['pid']} on "
                    f"{owner['host']} (its lock: {self.path}); wait for it, or give another "
                    "folder"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunFolderError(f"{self.path}: could not take the lock")

    def _owner(self) -> tuple[dict[str, Any] | None, str | None]:
        """The lock's owner ``{"host", "pid"}``; or ``{}`` and why the file names none; or
        ``None`` when the lock is gone."""
        try:
            text = self.path.read_bytes().decode()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as error:
            return {}, f"unreadable ({error})"
        if not text.strip():
            return {}, "empty"
        try:
            owner = json.loads(text)
        except json.JSONDecodeError:
            owner = None
        if not isinstance(owner, dict) or not {"host", "pid"} <= owner.keys():
            return {}, f"unreadable (not {{'host': ..., 'pid': ...}} but {text[:60]!r})"
        return owner, None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- reading back what a run wrote: UTF-8 text and JSON documents that carry their digest ----


def read_text(path: Path, error: type[Exception], remedy: str) -> str:
    """The text of ``path``; ``error`` naming the file, the byte, its line and ``remedy`` when
    a byte is not UTF-8 (agora writes UTF-8 only: the file is corrupted).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "latest"
        >>> _ = path.write_bytes(b"step-1\\n\\xff\\n")
        >>> read_text(path, ValueError, "rewrite it")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../latest: not UTF-8 text (byte 0xff on line 2): the file is corrupted; rewrite it
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data[: bad.start].count(b"\n") + 1
        raise error(
            f"{path}: not UTF-8 text (byte {data[bad.start]:#04x} on line {line}): the file is "
            f"corrupted; {remedy}"
        ) from None


def json_digest(document: Mapping[str, Any]) -> str:
    """The sha256 of a JSON document without its ``"digest"`` key, keys sorted: what
    :func:`with_digest` stores and :func:`check_digest` checks.

    Example:
        >>> json_digest({"b": 1, "a": [0.5]}) == json_digest({"a": [0.5], "b": 1, "digest": "x"})
        True
    """
    body = {key: value for key, value in document.items() if key != "digest"}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def with_digest(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` as plain JSON data with its digest under ``"digest"``."""
    document = json.loads(json.dumps(document, default=str))
    return {**document, "digest": json_digest(document)}


def check_digest(
    document: Mapping[str, Any], path: Path, error: type[Exception], remedy: str
) -> None:
    """Raise ``error`` naming ``path`` when ``document``'s digest does not match its content
    (a flipped bit, an edit). A document without a digest is of an older agora: not checked."""
    if "digest" in document and document["digest"] != json_digest(document):
        raise error(
            f"{path}: checksum mismatch: it changed since it was written (a corrupted byte, or "
            f"an edit); {remedy}"
        )


def read_json(path: Path, error: type[Exception], remedy: str) -> Any:
    """A JSON file a run wrote; ``error`` naming it (and ``remedy``) when it is not UTF-8, not
    JSON, or an object whose digest (if it carries one) does not match."""
    try:
        document = json.loads(read_text(path, error, remedy))
    except json.JSONDecodeError as bad:
        raise error(f"{path}: not valid JSON ({bad}); {remedy}") from None
    if isinstance(document, dict):
        check_digest(document, path, error, remedy)
    return document


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in blocks (a file larger than memory works)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
