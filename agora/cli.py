"""The ``agora`` command: run a config, evaluate a run, draw a graph, compare representations.

::

    agora run tiny --out runs/tiny                  # a packaged config, or a YAML file
    agora run my.yaml fit.epochs=5 graph.edges.0.rounds=3
    agora run paper-movielens --genre War           # = data.kwargs.genre=War
    agora eval runs/tiny --split valid
    agora graph tiny --out graph.png
    agora bench movielens --quick --out /tmp/bench  # a results page, its CSV and plot
    agora cka runs/tiny --out cka.png               # the paper's Figure 3 for a run
    agora cka runs/drama --out cka.png --groups genre --split test

A subcommand is a function ``(args) -> int`` plus one that adds its arguments, listed in
:data:`COMMANDS`. Benchmarks are listed the same way in :data:`BENCHMARKS`
(``agora bench NAME``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from agora.analysis.cka import classes, genres
from agora.checkpoint import CheckpointError
from agora.config import (
    ConfigError,
    RunConfig,
    build_data,
    build_graph,
    config_from_dict,
    load_config,
)
from agora.data.movielens import DataError
from agora.graph import Graph, GraphError, import_object


class CommandError(ValueError):
    """Arguments that cannot work, e.g. a results file that is not there."""


# errors that are the user's to fix: printed as one line, exit status 2, no traceback
USER_ERRORS = (ConfigError, GraphError, CheckpointError, DataError, CommandError)


# -- agora run ---------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument("--out", help="run folder (default: runs/<config>-<timestamp>)")
    parser.add_argument(
        "--genre", metavar="NAME", help="the data's genre, e.g. Drama (= data.kwargs.genre=NAME)"
    )
    _add_overrides(parser)


def _genre_override(genre: str) -> str:
    # JSON is YAML: the name stays a string even when it reads as YAML (`--genre null`)
    return f"data.kwargs.genre={json.dumps(genre)}"


def _check_genre(config: RunConfig, genre: str) -> None:
    """``--genre`` needs a data factory with a ``genre`` parameter (or ``**kwargs``)."""
    parameters = inspect.signature(import_object(config.data.factory)).parameters.values()
    if not any(p.name == "genre" or p.kind is p.VAR_KEYWORD for p in parameters):
        raise ConfigError(
            f"--genre {genre}: the data factory {config.data.factory!r} takes no 'genre'; "
            "--genre needs a config with genres, e.g. paper-movielens",
            "data.factory",
            config.source,
        )


def sample_batch(data: Any, rows: int = 8) -> Any:
    """The inputs ``x`` of a first small batch of a Dataset or DataLoader (to build codecs);
    for per-learner data (``{learner: data}``), of the first learner's."""
    from collections.abc import Mapping

    from agora.loaders import eval_loader, split_batch

    if isinstance(data, Mapping):
        data = next(iter(data.values()))
    x, _ = split_batch(next(iter(eval_loader(data, batch_size=rows))))
    return x


def run(args: argparse.Namespace) -> int:
    """Load the config, build the graph and data, fit, print the best metrics and the run."""
    from agora.stages import check_stages, fit_stages
    from agora.train import fit

    genre = getattr(args, "genre", None)
    overrides = [*args.overrides, *([_genre_override(genre)] if genre is not None else [])]
    config = load_config(args.config, overrides)
    if genre is not None:
        _check_genre(config, genre)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "-".join([Path(args.config).stem, *([genre] if genre else []), stamp])
    out = Path(args.out) if args.out else Path("runs") / name
    # the data first: a wrong genre or missing file fails before an agent factory pre-trains
    data = build_data(config)
    graph = build_graph(config)
    stages = [stage.to_stage() for stage in config.stages]
    try:
        graph.build(sample_batch(data["train"]))
        if stages:
            check_stages(graph, stages)
    except GraphError as error:
        raise ConfigError(str(error), "stages" if stages else "graph", config.source) from None
    common = {"out_dir": out, "run_config": config.to_dict()}
    if stages:
        results = fit_stages(graph, stages, data["train"], data["valid"], config.fit, **common)
    else:
        results = {"": fit(graph, data["train"], data["valid"], config.fit, **common)}
    for stage, result in results.items():
        if stage:
            print(f"stage {stage}:")
        width = max((len(name) for name in result.metrics), default=0)
        for name, value in sorted(result.metrics.items()):
            print(f"{'  ' * bool(stage)}{name:<{width}}  {value:.4f}")
    print(f"run: {out}")
    return 0


# -- agora eval --------------------------------------------------------------------------------


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (or one of its model folders)")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--batch-size", type=int, default=1024)
    _add_overrides(parser, "of the stored run config (e.g. data.kwargs.n=1024)")


def stored_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config a run stored in its ``graph.json`` (under ``"config"``)."""
    from agora.checkpoint import model_dir, read_document

    directory = model_dir(run_dir)
    source = str(directory / "graph.json")
    data = read_document(directory).get("config")
    if not data:
        raise ConfigError(
            "no run config under 'config'; it was not written by `agora run`, so rebuild its "
            "data in Python and call agora.train.evaluate",
            source=source,
        )
    return config_from_dict(data, overrides, source=source)


def stored_split(config: RunConfig, split: str) -> Any:
    """One split of the data a run config describes (built afresh from its factory)."""
    data = build_data(config)
    if split not in data:
        raise ConfigError(
            f"the data has no {split!r} split; it has {sorted(data)}",
            "data.factory",
            config.source,
        )
    return data[split]


def evaluate_run(args: argparse.Namespace) -> int:
    """Load a trained graph, rebuild its data from the stored config, print metrics as JSON."""
    from agora.checkpoint import load
    from agora.train import evaluate

    config = stored_config(args.run_dir, args.overrides)
    split = stored_split(config, args.split)
    graph = load(args.run_dir)
    metrics = evaluate(graph, split, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


# -- agora graph -------------------------------------------------------------------------------


def _graph_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument("--out", default="graph.png", help="image file (default: graph.png)")
    _add_overrides(parser)


def draw(args: argparse.Namespace) -> int:
    """Draw the config's agent graph (no model is built)."""
    config = load_config(args.config, args.overrides)
    draw_graph(config.graph.to_nx(), args.out, title=Path(args.config).stem)
    print(f"graph: {args.out}")
    return 0


def _layers(graph: nx.DiGraph) -> dict[str, int] | None:
    """Depth of each agent below its tutors (pure tutors 0), or None for a graph with cycles."""
    if not nx.is_directed_acyclic_graph(graph):
        return None
    depth: dict[str, int] = {}
    for node in reversed(list(nx.topological_sort(graph))):  # tutors before their learners
        depth[node] = 1 + max((depth[t] for t in graph.successors(node)), default=-1)
    return depth


def _positions(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    depth = _layers(graph)
    if depth is None:  # peers talk both ways: no top and bottom
        return nx.circular_layout(graph)
    rows: dict[int, list[str]] = {}
    for node in graph.nodes:
        rows.setdefault(depth[node], []).append(node)
    return {
        node: (i - (len(row) - 1) / 2, -1.6 * level)  # rows apart, to leave room for labels
        for level, row in rows.items()
        for i, node in enumerate(row)
    }


def draw_graph(graph: nx.DiGraph | Graph, path: str | Path, *, title: str | None = None) -> Path:
    """Draw an agent graph to an image: tutors above their learners, frozen agents grey and
    hatched, each edge ``learner -> tutor`` labelled with its protocols and ``k``.

    Args:
        graph (nx.DiGraph or Graph): a :class:`~agora.graph.Graph`, or
            :meth:`GraphConfig.to_nx <agora.config.GraphConfig.to_nx>`'s graph.
        path (str or Path): the image file (its suffix picks the format).
        title (str, optional): a title above the graph.

    Example:
        >>> import tempfile
        >>> from agora.config import load_config
        >>> out = draw_graph(load_config("tiny").graph.to_nx(), tempfile.mkdtemp() + "/g.png")
        >>> out.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    g = graph.nx if isinstance(graph, Graph) else graph
    frozen = {
        n: bool(d["agent"].frozen if "agent" in d else d.get("frozen"))
        for n, d in g.nodes(data=True)
    }
    pos = _positions(g)
    two_way = any(g.has_edge(t, u) for u, t in g.edges)
    curve = {"connectionstyle": "arc3,rad=0.15"} if two_way else {}
    rows = len({round(y, 3) for _, y in pos.values()})
    fig, ax = plt.subplots(figsize=(2.5 + 1.6 * len(g), 1.5 + 2.0 * rows))
    size = 2600
    for is_frozen, color in ((False, "#7fb3e0"), (True, "#d0d0d0")):
        nodes = [n for n in g.nodes if frozen[n] == is_frozen]
        drawn = nx.draw_networkx_nodes(
            g, pos, nodelist=nodes, node_color=color, edgecolors="#333333", node_size=size, ax=ax
        )
        if is_frozen and nodes:
            drawn.set_hatch("//")
    box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    nx.draw_networkx_labels(g, pos, font_size=9, bbox=box, ax=ax)
    edges = [(u, t, d["edge"]) for u, t, d in g.edges(data=True)]
    for active, style in ((True, "solid"), (False, "dashed")):
        nx.draw_networkx_edges(
            g,
            pos,
            edgelist=[(u, t) for u, t, e in edges if e.active == active],
            style=style,
            arrowsize=18,
            node_size=size,
            ax=ax,
            **curve,
        )
    labels = {
        (u, t): "+".join(e.protocols) + (f", k={e.rounds}" if e.talks else "") for u, t, e in edges
    }
    nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, font_size=8, ax=ax, **curve)
    ax.legend(
        handles=[
            Patch(facecolor="#7fb3e0", edgecolor="#333333", label="trainable"),
            Patch(facecolor="#d0d0d0", edgecolor="#333333", hatch="//", label="frozen"),
            Line2D([], [], color="black", marker=">", label="learner → tutor (learns from)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    if title:
        ax.set_title(title)
    ax.margins(0.25)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


# agora cka --groups NAME: how examples are grouped, one heatmap per group
CKA_GROUPS: dict[str, Callable[[Any, Any], Any]] = {"genre": genres, "class": classes}


# -- agora cka ---------------------------------------------------------------------------------


def _cka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (or one of its model folders)")
    parser.add_argument("--out", default="cka.png", help="image file (default: cka.png)")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument(
        "--groups",
        choices=tuple(CKA_GROUPS),
        help="one heatmap per genre (x['genres'], MovieLens) or per class (integer y)",
    )
    parser.add_argument("--teacher", help="the columns' agent (default: the first edge's tutor)")
    parser.add_argument("--student", help="the rows' agent (default: the first edge's learner)")
    parser.add_argument(
        "--min-examples",
        type=int,
        default=20,
        help="leave out groups with fewer examples (default: 20, as the paper)",
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    _add_overrides(parser, "of the stored run config (e.g. data.kwargs.n=1024)")


def _genre_names(config: RunConfig, data: Any) -> list[str] | None:
    """The names of the genre columns: the dataset's ``genre_names``, or MovieLens' genres."""
    names = getattr(data, "genre_names", None)
    if names is not None:
        return list(names)
    if config.data.factory == "agora.data.movielens:genre_task":
        from agora.data.movielens import MovieLens

        return list(MovieLens(config.data.kwargs.get("data_dir")).genres)
    return None


def cka(args: argparse.Namespace) -> int:
    """Draw linear CKA between teacher s/e and student s/e/m (the paper's Figure 3)."""
    from agora.analysis import cka as analysis
    from agora.checkpoint import load

    config = stored_config(args.run_dir, args.overrides)
    data = stored_split(config, args.split)
    graph = load(args.run_dir)
    teacher, student = args.teacher, args.student
    if teacher is None or student is None:
        try:
            default_teacher, default_student = analysis.teacher_and_student(graph)
        except ValueError as error:
            raise CommandError(f"{error} (--teacher and --student)") from None
        teacher, student = teacher or default_teacher, student or default_student
    for option, name in (("--teacher", teacher), ("--student", student)):
        if name not in graph.agents:
            raise CommandError(f"{option} {name}: no such agent; agents: {list(graph.agents)}")
    if args.groups is None:
        collected = analysis.states(
            graph, data, agents=[teacher, student], batch_size=args.batch_size
        )
        matrices = {"all": analysis.cka_matrix(collected, teacher, student)}
    else:
        names = _genre_names(config, data) if args.groups == "genre" else None
        try:
            matrices = analysis.by_group(
                graph,
                data,
                CKA_GROUPS[args.groups],
                teacher=teacher,
                student=student,
                names=names,
                min_examples=args.min_examples,
                batch_size=args.batch_size,
            )
        except ValueError as error:  # the data has no genres, or no class labels
            raise CommandError(f"--groups {args.groups}: {error}") from None
        if not matrices:
            raise CommandError(
                f"--groups {args.groups}: no group of the {args.split} split has "
                f"{args.min_examples} examples or more (lower --min-examples)"
            )
    for name, matrix in matrices.items():
        print(f"{name} (n={matrix.examples})\n{matrix}\n")
    title = f"{Path(args.run_dir).name}: {args.split}"
    analysis.plot(matrices, args.out, title=title)
    print(f"cka: {args.out}")
    return 0


# -- agora bench -------------------------------------------------------------------------------


def _pool_arguments(
    parser: argparse.ArgumentParser, quick: str, seeds: int, data: str, cache: str, page: str
) -> None:
    """The options every benchmark that trains many runs in worker processes takes."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", default="docs/results", help="(default: docs/results)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads each (default: 1)")
    parser.add_argument(
        "--seeds", type=int, default=seeds, help=f"seeds of each run (default: {seeds})"
    )
    parser.add_argument("--data-dir", help=f"the folder holding {data} (default: $AGORA_DATA_DIR)")
    parser.add_argument("--cache-dir", help=f"{cache} (default: OUT/.teachers)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help=f"re-write the page from OUT/{page}.json without training",
    )


def _movielens_arguments(parser: argparse.ArgumentParser) -> None:
    _pool_arguments(
        parser, "2 genres, 1 seed, 1 epoch: a smoke test (~1 min)", 5, "ml-100k/",
        "pre-trained teachers, reused across runs", "movielens",
    )  # fmt: skip


def _find_movielens(data_dir: str | None) -> None:
    """Fail at once, before any worker starts, when the data cannot be found or downloaded."""
    from agora.data.movielens import find_data

    try:
        find_data(data_dir)
    except DataError:
        raise
    except OSError as error:  # the download from GroupLens failed
        raise CommandError(
            f"MovieLens 100K is not here and could not be downloaded ({error}); set "
            "AGORA_DATA_DIR to a folder holding ml-100k/, or pass --data-dir"
        ) from None


def _read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CommandError(
            f"{path}: missing; --report-only re-writes the page from the results of an earlier "
            f"`agora bench` run into {path.parent} (run it without --report-only first)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"{path}: cannot read the results: {error}") from None


def _keep_full_results(out: Path, name: str, quick: bool) -> None:
    """``--quick`` must not write over a full benchmark's page and results in ``out``."""
    path = out / f"{name}.json"
    if quick and path.is_file():
        try:
            full = not json.loads(path.read_text()).get("quick", False)
        except (OSError, json.JSONDecodeError):
            full = False
        if full:
            raise CommandError(
                f"--quick would write over the full results in {path.parent} ({path.name}); "
                f"pass --out to another folder for a smoke test"
            )


def bench_movielens(args: argparse.Namespace) -> int:
    """MovieLens 100K: every method of the paper's tables, tuned on validation, 5 seeds."""
    out = Path(args.out)
    if args.report_only:
        results = _read_results(out / "movielens.json")
        from agora.bench.report import write_movielens

        write_movielens(results, out)
    else:
        if min(args.workers, args.threads, args.seeds) < 1:
            raise CommandError("--workers, --threads and --seeds must be at least 1")
        _keep_full_results(out, "movielens", args.quick)
        _find_movielens(args.data_dir)
        import agora.bench.report  # noqa: F401  (fail now, not after the training)
        from agora.bench.movielens import run as run_movielens

        run_movielens(
            out,
            quick=args.quick,
            data_dir=args.data_dir,
            workers=args.workers,
            threads=args.threads,
            seeds=args.seeds,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            command=args.command_line,
        )
    print(f"results: {out / 'movielens.md'}")
    return 0


def _floats(text: str) -> tuple[float, ...]:
    """``"0.1,1,10"`` as ``(0.1, 1.0, 10.0)``: positive numbers, comma-separated."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"every weight must be > 0, got {text!r}")
    return values


def _graphs_arguments(parser: argparse.ArgumentParser) -> None:
    _pool_arguments(
        parser, "few genres, 1 seed, 1 epoch: a smoke test", 5, "ml-100k/",
        "pre-trained teachers, reused across runs", "graphs",
    )  # fmt: skip
    parser.add_argument(
        "--limit", type=int, help="keep the first N ratings of every split (a smoke test)"
    )
    parser.add_argument(
        "--weights", type=_floats,
        help="TD weights to tune over, comma-separated (default: the benchmark's grid)",
    )  # fmt: skip


def bench_graphs(args: argparse.Namespace) -> int:
    """N-way graphs on MovieLens 100K: several teachers, eight students in one run, peers."""
    out = Path(args.out)
    if args.report_only:
        from agora.bench.graphs import page

        (out / "graphs.md").write_text(page(_read_results(out / "graphs.json")))
    else:
        if min(args.workers, args.threads, args.seeds) < 1:
            raise CommandError("--workers, --threads and --seeds must be at least 1")
        _keep_full_results(out, "graphs", args.quick)
        _find_movielens(args.data_dir)
        from agora.bench.graphs import run as run_graphs

        run_graphs(
            out,
            quick=args.quick,
            data_dir=args.data_dir,
            workers=args.workers,
            threads=args.threads,
            seeds=args.seeds,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            limit=args.limit,
            weights=args.weights,
            command=args.command_line,
        )
    print(f"results: {out / 'graphs.md'}")
    return 0


def _gradients_arguments(parser: argparse.ArgumentParser) -> None:
    _pool_arguments(
        parser, "War, 1 seed, 1 epoch, w 0.1 and 10: a smoke test", 5, "ml-100k/",
        "pre-trained teachers, reused across runs", "gradients",
    )  # fmt: skip
    parser.add_argument(
        "--limit", type=int, help="keep the first N ratings of every split (a smoke test)"
    )


def bench_gradients(args: argparse.Namespace) -> int:
    """TD's terms' share of the student's gradient, and validation RMSE, by loss weight."""
    out = Path(args.out)
    name = "gradients-quick" if args.quick else "gradients"
    if args.report_only:
        from agora.bench.gradients import page

        (out / f"{name}.md").write_text(page(_read_results(out / f"{name}.json")))
    else:
        if min(args.workers, args.threads, args.seeds) < 1:
            raise CommandError("--workers, --threads and --seeds must be at least 1")
        _find_movielens(args.data_dir)
        from agora.bench.gradients import run as run_gradients

        run_gradients(
            out, quick=args.quick, data_dir=args.data_dir, workers=args.workers,
            threads=args.threads, seeds=args.seeds,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None, limit=args.limit,
            command=args.command_line,
        )  # fmt: skip
    print(f"results: {out / f'{name}.md'}")
    return 0


def _speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    parser.add_argument("--out", default="docs/results", help="where speed.md goes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--data-dir", help="folder holding ml-100k/ (default: AGORA_DATA_DIR)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-write speed.md from OUT/speed.json"
    )


def bench_speed(args: argparse.Namespace) -> int:
    """Step time against a hand-written TD step and torchdistill; scaling; cache; memory."""
    if args.threads < 1:
        raise CommandError("--threads must be at least 1")
    out = Path(args.out)
    if args.report_only:
        from agora.bench.speed import render

        (out / "speed.md").write_text(render(_read_results(out / "speed.json")))
        print(f"results: {out / 'speed.md'}")
        return 0
    _keep_full_results(out, "speed", args.quick)
    from agora.bench.speed import run as run_speed

    run_speed(
        out, quick=args.quick, data_dir=args.data_dir, threads=args.threads,
        command=args.command_line,
    )  # fmt: skip
    print(f"results: {out / 'speed.md'}")
    return 0


def _text_arguments(parser: argparse.ArgumentParser) -> None:
    _pool_arguments(
        parser, "64 sentences, 1 seed, 1 epoch: a smoke test", 3, "sst2/",
        "the teacher's linear probe (trained anew each invocation)", "text",
    )  # fmt: skip
    parser.add_argument(
        "--train-size", default="2000",
        help="training sentences, or 'all' (default: 2000, the CPU subset)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")


def bench_text(args: argparse.Namespace) -> int:
    """SST-2: all-MiniLM-L6-v2 teaches a 2-layer student; every method, 3 seeds."""
    out = Path(args.out)
    name = "text-quick" if args.quick else "text"
    if args.report_only:
        from agora.bench.text import text_page

        (out / f"{name}.md").write_text(text_page(_read_results(out / f"{name}.json")))
    else:
        if min(args.workers, args.threads, args.seeds, args.epochs) < 1:
            raise CommandError("--workers, --threads, --seeds and --epochs must be at least 1")
        if args.train_size != "all" and not (args.train_size.isdigit() and int(args.train_size)):
            raise CommandError(
                f"--train-size must be a positive number or 'all', got {args.train_size!r}"
            )
        try:
            from agora.bench.text import run as run_text
            from agora.data.sst2 import find_sst2
            from agora.models.transformer import minilm_path

            minilm_path()
            find_sst2(args.data_dir)  # fail now, before the workers start
        except ImportError as error:
            raise CommandError(str(error)) from None
        except DataError:
            raise
        except OSError as error:
            raise CommandError(
                f"SST-2 is not here and could not be downloaded ({error}); set AGORA_DATA_DIR "
                "to a folder holding sst2/, or pass --data-dir"
            ) from None
        run_text(
            out, quick=args.quick, data_dir=args.data_dir, workers=args.workers,
            threads=args.threads, seeds=args.seeds,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            train_size=None if args.train_size == "all" else int(args.train_size),
            epochs=args.epochs, command=args.command_line,
        )  # fmt: skip
    print(f"results: {out / f'{name}.md'}")
    return 0


Command = tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]

# agora bench NAME: a benchmark is a function and its arguments, like a command
BENCHMARKS: dict[str, Command] = {
    "movielens": (bench_movielens, _movielens_arguments),
    "graphs": (bench_graphs, _graphs_arguments),
    "gradients": (bench_gradients, _gradients_arguments),
    "speed": (bench_speed, _speed_arguments),
    "text": (bench_text, _text_arguments),
}


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    benchmarks = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (function, add_arguments) in BENCHMARKS.items():
        _add_command(benchmarks, name, function, add_arguments)


def bench(args: argparse.Namespace) -> int:
    """Run a benchmark and write its results page (e.g. docs/results/movielens.md)."""
    return BENCHMARKS[args.benchmark][0](args)


# -- the command -------------------------------------------------------------------------------


def _add_overrides(parser: argparse.ArgumentParser, what: str = "of the config") -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"overrides {what}, e.g. fit.epochs=5"
    )


COMMANDS: dict[str, Command] = {
    "run": (run, _run_arguments),
    "eval": (evaluate_run, _eval_arguments),
    "graph": (draw, _graph_arguments),
    "bench": (bench, _bench_arguments),
    "cka": (cka, _cka_arguments),
}


def _add_command(
    commands: argparse._SubParsersAction,
    name: str,
    function: Callable[[argparse.Namespace], int],
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    summary = (function.__doc__ or "").strip().splitlines()[0]
    sub = commands.add_parser(name, help=summary, description=summary)
    add_arguments(sub)
    sub.set_defaults(function=function)


def make_parser() -> argparse.ArgumentParser:
    """The ``agora`` parser: ``--version`` and a subcommand per entry of :data:`COMMANDS`, each
    described by the first line of its function's docstring.

    Example:
        >>> make_parser().parse_args(["graph", "tiny"]).command
        'graph'
    """
    from agora import __version__

    parser = argparse.ArgumentParser(prog="agora", description="Models that talk to learn.")
    parser.add_argument("--version", action="version", version=f"agora {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (function, add_arguments) in COMMANDS.items():
        _add_command(commands, name, function, add_arguments)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agora COMMAND ...``; a config error prints ``agora: error: ...`` and exits 2.

    Example:
        >>> import tempfile
        >>> main(["graph", "tiny", "--out", tempfile.mkdtemp() + "/g.png"])  # doctest: +ELLIPSIS
        graph: ...
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    args.command_line = shlex.join(["agora", *argv])  # recorded by benchmarks
    # overrides may follow options (`run tiny --out x fit.epochs=1`): argparse leaves them over
    stray = [a for a in extra if a.startswith("-") or "=" not in a or "overrides" not in args]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return args.function(args)
    except USER_ERRORS as error:
        parser.exit(2, f"agora: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
