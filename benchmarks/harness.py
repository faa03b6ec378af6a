"""The one small harness every benchmark runs on.

A benchmark is a folder of this package whose ``__init__`` defines ``BENCHMARK``, a
:class:`Benchmark`: how to run it (returning a results dict, kept as ``<out>/<name>.json``) and
how to write its page(s) from those results. The harness gives each the same command line,
``python -m benchmarks NAME [--quick] [--out DIR] [--report-only] ...``, the same worker pool
(:class:`Runner`), the same run store that lets a stopped benchmark resume (:class:`RunStore`,
:func:`run_all`), the same progress lines for the parts a benchmark runs one after another
(:func:`run_parts`), and the same page helpers (:func:`header`, :func:`cell`, :func:`table`).

Every number on a page is computed from the results file by the page's code, so
``--report-only`` rewrites the page from ``<out>/<name>.json`` without training anything.
``--quick`` (a smoke test) writes ``<name>-quick.*`` files, never over a full result, and by
default into ``runs/quick``, not ``docs/results``: a smoke test is never a page of the site.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from agora.folder import written_in_place

RESULTS = "docs/results"  # the site lists every page here under Results (docs/hooks.py)
QUICK = "runs/quick"  # smoke tests: git-ignored, never on the site


class BenchmarkError(ValueError):
    """Arguments or inputs a benchmark cannot run with; printed as one line, exit status 2."""


@dataclass
class Benchmark:
    """One benchmark: what it runs and how its page is written.

    Args:
        name: ``python -m benchmarks NAME``; names its files in ``--out``.
        summary: one line for ``--help``.
        run: ``(args) -> results``; the harness writes ``results`` to ``<out>/<stem>.json``.
        write: ``(results, out, stem)`` writes the page(s) (``<stem>.md``, ...) from the
            results alone.
        arguments: adds the benchmark's own options to its parser.
        check: fails fast (raising :class:`BenchmarkError`) before anything trains, e.g. when
            the data cannot be found.
        pool: the benchmark trains in worker processes (``--workers``, ``--threads``,
            ``--seeds``, ``--data-dir``, ``--cache-dir``).
        seeds: the default ``--seeds``.
    """

    name: str
    summary: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    write: Callable[[dict[str, Any], Path, str], None]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    check: Callable[[argparse.Namespace], None] | None = None
    pool: bool = True
    seeds: int = 5


def benchmarks() -> dict[str, Benchmark]:
    """Every benchmark of this package, by name (each folder's ``BENCHMARK``)."""
    import benchmarks as package

    found = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            bench = importlib.import_module(f"benchmarks.{module.name}").BENCHMARK
            found[bench.name] = bench
    return dict(sorted(found.items()))


# -- the command line --------------------------------------------------------------------------


def _pool_arguments(parser: argparse.ArgumentParser, seeds: int) -> None:
    parser.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads each (default: 1)")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"(default: {seeds})")
    parser.add_argument("--data-dir", help="the folder holding the data (default: $AGORA_DATA_DIR)")
    parser.add_argument(
        "--cache-dir",
        help="where pre-trained teachers are kept (default: $AGORA_CACHE_DIR, else ~/.cache/agora)",
    )


def make_parser() -> argparse.ArgumentParser:
    """``python -m benchmarks NAME ...``: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run a benchmark and write its results page."
    )
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, bench in benchmarks().items():
        sub = names.add_parser(name, help=bench.summary, description=bench.summary)
        sub.add_argument("--quick", action="store_true", help="a smoke test, not a result")
        sub.add_argument(
            "--out", help=f"(default: {RESULTS}; with --quick, {QUICK}, never the site's pages)"
        )
        sub.add_argument(
            "--report-only",
            action="store_true",
            help=f"rewrite the page from OUT/{name}.json without training",
        )
        if bench.pool:
            _pool_arguments(sub, bench.seeds)
        if bench.arguments is not None:
            bench.arguments(sub)
    return parser


def out_dir(args: argparse.Namespace) -> Path:
    """Where the results go: ``--out``, else ``docs/results`` (the site's Results), or
    ``runs/quick`` for a smoke test, which the site must never show as a result."""
    return Path(args.out or (QUICK if args.quick else RESULTS))


def stem(args: argparse.Namespace) -> str:
    """The benchmark's file name in ``--out``: ``movielens``, or ``movielens-quick``."""
    return args.benchmark + ("-quick" if args.quick else "")


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """Run ``python -m benchmarks NAME ...``; a user's error prints one line and exits 2.

    ``started`` is the command's :func:`time.perf_counter` at its start (default: now); a
    benchmark reads it as ``args.started`` to report its whole wall time."""
    started = time.perf_counter() if started is None else started
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "benchmarks", *argv])
    args.started = started
    bench = benchmarks()[args.benchmark]
    out = out_dir(args)
    args.out = str(out)  # the benchmark's run store and teachers live beside its results
    try:
        if args.report_only:
            results = read_results(out / f"{stem(args)}.json")
        else:
            if bench.pool and min(args.workers, args.threads, args.seeds) < 1:
                raise BenchmarkError("--workers, --threads and --seeds must be at least 1")
            if bench.check is not None:
                bench.check(args)
            results = bench.run(args)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{stem(args)}.json").write_text(json.dumps(results, indent=1))
        bench.write(results, out, stem(args))
    except BenchmarkError as error:
        parser.exit(2, f"benchmarks: error: {error}\n")
    print(f"results: {out / stem(args)}.md")
    return 0


def read_results(path: Path) -> dict[str, Any]:
    """A benchmark's results file; a clear error when it is missing or unreadable."""
    if not path.is_file():
        raise BenchmarkError(
            f"{path}: missing; --report-only rewrites the page from the results of an earlier "
            f"run into {path.parent} (run it without --report-only first)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot read the results: {error}") from None


def cache_dir(args: argparse.Namespace) -> Path:
    """Where pre-trained teachers are kept: ``--cache-dir``, else ``$AGORA_CACHE_DIR``, else
    ``~/.cache/agora``; a run on a slice of the data (``--limit``) keeps its own in
    ``<out>/.teachers``, so that they are never taken for the real ones."""
    if getattr(args, "limit", None):
        return Path(args.out) / ".teachers"
    root = args.cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache/agora"
    return Path(root).expanduser()


def stamp(args: argparse.Namespace, *, threads: int | None = None) -> dict[str, Any]:
    """What every results file records: the command, date, machine, versions, processes."""
    return {
        "command": args.command_line,
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "workers": getattr(args, "workers", 1),
        "threads": threads if threads is not None else getattr(args, "threads", 1),
    }


def machine() -> str:
    """The CPU model, the cores this process may use, and the system."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and (
        found := re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
    ):
        model = found.group(1).strip()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} logical cores, {platform.system()} {platform.machine()}"


# -- worker processes and the run store --------------------------------------------------------


class Runner:
    """Runs tasks in ``workers`` processes of ``threads`` torch threads each, with progress.

    Each process first calls ``initializer(*initargs)``; with one worker everything runs here.
    """

    def __init__(
        self,
        workers: int,
        threads: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple = (),
    ) -> None:
        self.pool, self.workers = None, workers
        if workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(
                workers, _start_worker, (threads, initializer, initargs)
            )
        else:
            _start_worker(threads, initializer, initargs)

    def imap(self, fn: Callable[[Any], Any], tasks: Sequence[Any], label: str) -> Iterator[Any]:
        """Results in the order of ``tasks``, each as soon as it (and those before it) ends."""
        from tqdm.auto import tqdm

        results = self.pool.imap(fn, tasks) if self.pool else map(fn, tasks)
        yield from tqdm(results, total=len(tasks), desc=label, leave=False)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], label: str) -> list[Any]:
        """Every result of :meth:`imap`, in the order of ``tasks``."""
        return list(self.imap(fn, tasks, label))

    def close(self) -> None:
        """Let the worker processes finish and wait for them to exit."""
        if self.pool is not None:
            self.pool.close()
            self.pool.join()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_worker(threads: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    torch.set_num_threads(threads)
    if initializer is not None:
        initializer(*initargs)


class RunStore:
    """Finished runs by key, appended to a JSON-lines file as each ends, so that a benchmark
    stopped part-way resumes without repeating them. Lines written under another ``stamp``
    (another budget, say) are passed over; a line cut short by a kill is skipped with a
    warning, so that its run trains again.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "runs.jsonl"
        >>> RunStore(path, {"epochs": 8}).add("a", {"rmse": 1.0})
        >>> RunStore(path, {"epochs": 8}).get("a"), RunStore(path, {"epochs": 1}).get("a")
        ({'rmse': 1.0, 'reused': True}, None)
        >>> RunStore(path, {"sizes": (1, 2)}).add("b", {"rmse": 2.0})
        >>> RunStore(path, {"sizes": (1, 2)}).get("b")  # the tuple was written as a list
        {'rmse': 2.0, 'reused': True}
    """

    def __init__(self, path: Path | None, stamp: dict[str, Any]) -> None:
        # as the file holds it: a tuple in the stamp reads back as a list, and must still match
        self.path, self.stamp = path, json.loads(json.dumps(stamp))
        self.rows: dict[str, Any] = {}  # read back from the file, then added by this process
        self.others: dict[str, dict[str, Any]] = {}  # rows under other stamps, by stamp (JSON)
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(
                        f"{path}: skipping an unreadable line: {line[:80]!r}", stacklevel=2
                    )
                    continue
                if record.get("stamp") == self.stamp:
                    self.rows[record["key"]] = _reused(record["row"])
                else:
                    stamp = json.dumps(record.get("stamp"), sort_keys=True)
                    self.others.setdefault(stamp, {})[record["key"]] = _reused(record["row"])

    def get(self, key: str) -> Any:
        """The row of the finished run ``key``, or ``None``; a row an earlier invocation
        finished (read back from the file) is marked ``"reused"``."""
        return self.rows.get(key)

    def add(self, key: str, row: Any) -> None:
        """Keep ``row`` under ``key`` and append it, with the stamp, to the file."""
        self.rows[key] = row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as file:
                file.write(json.dumps({"key": key, "stamp": self.stamp, "row": row}) + "\n")


def run_all(
    runner: Runner,
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    store: RunStore,
    key: Callable[[Any], str],
    label: str,
    cost: Callable[[Any], float] = lambda task: 0.0,
) -> list[Any]:
    """Every task's row, in the order of ``tasks``: taken from ``store`` when a run of that key
    finished before (marked ``"reused"`` when an earlier invocation ran it), else run (the
    costliest first, so that the workers stay busy to the end) and stored as it ends."""
    rows: dict[str, Any] = {}
    for task in tasks:
        if (row := store.get(key(task))) is not None:
            rows[key(task)] = row
    todo = list({key(t): t for t in tasks if key(t) not in rows}.values())
    todo.sort(key=lambda task: -cost(task))
    for task, row in zip(todo, runner.imap(fn, todo, label)):
        store.add(key(task), row)
        rows[key(task)] = row
    return [rows[key(task)] for task in tasks]


def _reused(row: Any) -> Any:
    if isinstance(row, dict):
        return {**row, "reused": True}
    return [_reused(r) for r in row]


# -- a benchmark's parts in a row, with progress -----------------------------------------------


@dataclass
class Part:
    """One part of a benchmark that runs in this process, for :func:`run_parts`.

    Args:
        name: what the progress line calls it: the measurement and its configuration.
        run: ``() -> result``.
        cost: its expected time relative to the other parts' (any unit they share); the
            estimate of the time left weighs the parts by it.
    """

    name: str
    run: Callable[[], Any]
    cost: float = 1.0


def run_parts(
    label: str, parts: Sequence[Part], started: float | None = None, file: TextIO | None = None
) -> tuple[list[Any], dict[str, float]]:
    """Run ``parts`` in order, with a line on ``file`` (default: stderr) as each starts: which
    part, i of n, the time since ``started`` (a :func:`time.perf_counter`; default: now) and,
    from the second part on, the time left: the parts' time so far scaled by the costs to do
    over the costs done. Returns the parts' results and wall times: each part's, and ``"total"``
    from ``started`` to the last part's end, which holds whatever ran before and between
    the parts too.

    >>> import io
    >>> log = io.StringIO()
    >>> results, seconds = run_parts(
    ...     "demo", [Part("one", lambda: 1), Part("two", lambda: 2, cost=3)], file=log)
    >>> results, list(seconds)
    ([1, 2], ['one', 'two', 'total'])
    >>> print(log.getvalue(), end="")  # doctest: +ELLIPSIS
    demo [1/2] one: ... so far
    demo [2/2] two: ... so far, about ... left
    demo: 2 parts done in ...
    """
    names = [part.name for part in parts]
    if len(set(names)) < len(names) or "total" in names:
        raise ValueError(f"{label}: each part needs its own name, and not 'total': {names}")
    started = time.perf_counter() if started is None else started
    results, seconds, done, to_do = [], {}, 0.0, sum(part.cost for part in parts)
    for i, part in enumerate(parts, 1):
        elapsed = time.perf_counter() - started
        spent = sum(seconds.values())  # the parts' own: the start-up is no part's rate
        left = f", about {duration(spent * to_do / done)} left" if done > 0 else ""
        line = f"{label} [{i}/{len(parts)}] {part.name}: {duration(elapsed)} so far{left}"
        print(line, file=file or sys.stderr, flush=True)
        clock = time.perf_counter()
        results.append(part.run())
        seconds[part.name] = time.perf_counter() - clock
        done, to_do = done + part.cost, to_do - part.cost
    seconds["total"] = time.perf_counter() - started
    line = f"{label}: {len(parts)} parts done in {duration(seconds['total'])}"
    print(line, file=file or sys.stderr, flush=True)
    return results, seconds


# -- page helpers ------------------------------------------------------------------------------


def widening_search(
    values: Sequence[float],
    score: Callable[[list[float]], Sequence[float]],
    beyond: Callable[[float, bool], float | None],
    max_widen: int,
    best_of: Callable[..., float] = min,
) -> tuple[list[float], dict[float, float], float, bool]:
    """Score a grid, and while its best value lies on an edge add the value beyond that edge
    and score it too, at most ``max_widen`` times.

    ``score(todo)`` gives one score per value (only values not scored yet are asked for);
    ``beyond(best, up)`` the next value past the upper (``up``) or lower edge, ``None`` where
    the grid cannot go further; ``best_of`` is ``min`` (lower is better) or ``max``, and among
    equal scores the smallest value wins. Returns the grid as searched, every score, the best
    value and whether it still lies on the grid's edge.

    >>> grid, _, best, edge = widening_search(
    ...     [1, 3], lambda todo: [-v for v in todo], lambda v, up: v * 3 if up else v / 3, 2)
    >>> grid, best, edge
    ([1, 3, 9, 27], 27, True)
    """
    values, scores = sorted(values), {}
    for attempt in range(max_widen + 1):
        todo = [v for v in values if v not in scores]
        scores.update(zip(todo, score(todo), strict=True))
        best = best_of(values, key=scores.__getitem__)
        edge = len(values) > 1 and best in (values[0], values[-1])
        further = beyond(best, best == values[-1]) if edge and attempt < max_widen else None
        if further is None or further in values:
            break
        values = sorted([*values, further])
    return values, scores, best, bool(edge)


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error (sample std, ddof=1, over sqrt(n)); ``None`` for one value.

    >>> mean_se([1.0, 2.0, 3.0])
    (2.0, 0.5773502691896258)
    """
    if not values:
        raise ValueError("mean_se needs at least one value")
    if len(values) == 1:
        return float(values[0]), None
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def cell(values: Sequence[float], fmt: str = ".4f", empty: str = "–") -> str:
    """``mean ± SE`` in ``fmt`` (``"+.4f"`` signs the mean, never ``-0.0000``); ``empty``
    without values.

    >>> cell([1.0, 2.0]), cell([-0.00001], "+.4f"), cell([])
    ('1.5000 ± 0.5000', '+0.0000', '–')
    """
    if not values:
        return empty
    mean, se = mean_se(values)
    mean = float(format(mean, fmt)) + 0.0
    return format(mean, fmt) + (f" ± {format(se, fmt.lstrip('+'))}" if se is not None else "")


def table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table's lines.

    >>> table(["a", "b"], [["1", "2"]])
    ['| a | b |', '|---|---|', '| 1 | 2 |']
    """
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``.

    >>> duration(5), duration(245), duration(3720)
    ('5.0 s', '4 min 05 s', '1 h 02 min')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def grid(values: Iterable[float]) -> str:
    """A grid's values as the pages list them: ``0.1, 1, 10``."""
    return ", ".join(f"{v:g}" for v in values)


def _when(results: dict[str, Any]) -> str:
    if "--finished" in results.get("command", "").split():
        return "from the run log of an earlier invocation: nothing trained"
    return "right after the runs"


def header(title: str, results: dict[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """A page's title and the lines that say how it was made: the command, the date, the
    machine, the processes, each phase's wall time, the notes (``extra`` after the times)."""
    lines = [f"# {title}", ""]
    if results.get("quick"):
        lines += [
            "> **⚠ --quick: smoke test, not a result.** Too little data, too few seeds, epochs "
            "and grid points for any number below to mean anything.",
            "",
        ]
    lines += [
        f"- Command: `{results.get('command', '?')}`",
        f"- Date: {results.get('date', '?')} (when this page was written, {_when(results)})",
        f"- Machine: {results.get('machine', '?')}",
        f"- torch {results.get('torch', '?')}, {results.get('workers', '?')} workers × "
        f"{results.get('threads', '?')} threads",
        *(f"- Wall time, {name}: {duration(s)}" for name, s in results.get("timings", {}).items()),
        *extra,
        *(f"- Note: {note}" for note in results.get("notes", [])),
        "",
    ]
    return lines


# -- a linear probe on a frozen model's features ---------------------------------------------


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    decays: Sequence[float],
    classes: int | None = None,
    max_iter: int = 500,
) -> dict[str, float]:
    """Logistic regression on ``(features, labels)`` (L-BFGS), its L2 penalty chosen among
    ``decays`` by validation accuracy, saved to ``path`` as ``linear.weight``/``linear.bias``
    (a head a frozen teacher can load); returns the chosen penalty and its accuracy."""
    import torch.nn.functional as F
    from safetensors.torch import save_file

    (train_x, train_y), (valid_x, valid_y) = train, valid
    classes = classes or int(train_y.max()) + 1
    best: tuple[float, float, dict[str, torch.Tensor]] | None = None
    for decay in decays:
        torch.manual_seed(0)
        linear = torch.nn.Linear(train_x.shape[1], classes)
        optimizer = torch.optim.LBFGS(
            linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def closure(linear=linear, optimizer=optimizer, decay=decay) -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(train_x), train_y) + decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            accuracy = (linear(valid_x).argmax(-1) == valid_y).float().mean().item()
        if best is None or accuracy > best[0]:
            state = {k: v.detach().clone() for k, v in linear.state_dict().items()}
            best = (accuracy, decay, state)
    assert best is not None
    with written_in_place(path) as tmp:
        save_file({f"linear.{k}": v.contiguous() for k, v in best[2].items()}, str(tmp))
    return {"valid_accuracy": best[0], "decay": best[1]}
