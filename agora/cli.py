"""The ``agora`` command: run a config, evaluate a run, draw a graph, compare representations.

::

    agora run tiny --out runs/tiny                  # a packaged config, or a YAML file
    agora run my.yaml fit.epochs=5 graph.edges.0.protocols.0.talk.rounds=3
    agora run paper-movielens --genre War           # an option the config offers
    agora cache tiny-transfer                       # fill the frozen teacher's store on disk
    agora eval runs/tiny --split valid
    agora graph tiny --out graph.png
    agora gradients paper-movielens --genre War     # each loss term's pull on the student
    agora cka runs/tiny --out cka.png               # the paper's Figure 3 for a run
    agora cka runs/drama --out cka.png --groups genre --split test

A subcommand is a function ``(args) -> int`` plus one that adds its arguments, listed in
:data:`COMMANDS`; it parses and calls the library (:mod:`agora.run`,
:mod:`agora.analysis`). The benchmarks live beside the package, in a clone:
``python -m benchmarks NAME``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from agora.analysis.cka import classes, genres
from agora.baseline import comparison_lines
from agora.checkpoint import CheckpointError
from agora.config import ConfigError, RunConfig, load_config
from agora.data.download import DataError
from agora.errors import FieldError, GraphError
from agora.folder import RunFolderError
from agora.run import option_overrides, run_config, stored_config, stored_split, threads
from agora.store import StoreError
from agora.train import NonFiniteLossError


class CommandError(ValueError):
    """Arguments that cannot work, e.g. a results file that is not there."""


# errors that are the user's to fix: printed as one line, exit status 2, no traceback
USER_ERRORS = (
    ConfigError, GraphError, CheckpointError, DataError, CommandError, RunFolderError,
    NonFiniteLossError, FieldError, StoreError,
)  # fmt: skip


# -- agora run ---------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument("--out", help="run folder (default: runs/<config>[-<options>]-<time>)")
    parser.add_argument(
        "--baseline", action="store_true", default=None,
        help="also train the students alone (same seed, data, budget) and compare",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="train afresh in --out, removing the run there; without it, --out resumes only an "
        "unfinished run of the same config and refuses anything else",
    )  # fmt: skip
    _add_overrides(parser, "of the config, e.g. fit.epochs=5; and --NAME VALUE for an option "
                   "the config offers (paper-movielens: --genre War)")  # fmt: skip


def _load(args: argparse.Namespace) -> RunConfig:
    """The config with its overrides and its own options (``--genre War`` =
    ``data.kwargs.genre=War``)."""
    config = load_config(args.config, args.overrides)
    if args.options:
        extra = option_overrides(config, args.options)
        config = load_config(args.config, [*args.overrides, *extra])
    return config


def run(args: argparse.Namespace) -> int:
    """Load the config, build the graph and data, fit, print the best metrics and the run."""
    config = _load(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "-".join([Path(args.config).stem, *(value for _, value in args.options), stamp])
    out = Path(args.out) if args.out else Path("runs") / name
    try:
        results = run_config(config, out, baseline=args.baseline, overwrite=args.overwrite)
    except RunFolderError as error:
        raise error.advising("--overwrite") from None
    for stage, result in results.items():
        if stage == "alone":
            continue
        if stage:
            print(f"stage {stage}:")
        width = max((len(name) for name in result.metrics), default=0)
        for name, value in sorted(result.metrics.items()):
            print(f"{'  ' * bool(stage)}{name:<{width}}  {value:.4f}")
    if (out / "comparison.json").is_file():
        print("did talking help?")
        print("\n".join(comparison_lines(json.loads((out / "comparison.json").read_text()))))
    print(f"run: {out}")
    return 0


# -- agora eval --------------------------------------------------------------------------------


def positive(text: str) -> int:
    """An argument that must be an integer >= 1 (``--batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-code", action="store_true",
        help="let the run's graph.json name code other than agora's own constructors (its "
        "agents' factories, its data factory, a codec, an aggregation, a protocol): loading "
        "imports and runs it, so only for runs you trust",
    )  # fmt: skip


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (or one of its model folders)")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--batch-size", type=positive, default=1024)
    _trust_argument(parser)
    _add_overrides(parser, "of the stored run config (e.g. data.kwargs.n=1024)")


def evaluate_run(args: argparse.Namespace) -> int:
    """Load a trained graph, rebuild its data from the stored config, print metrics as JSON."""
    from agora.checkpoint import load
    from agora.train import evaluate

    config = stored_config(args.run_dir, args.overrides, trust_code=args.trust_code)
    with threads(config.threads):  # the CPU threads its run had
        split = stored_split(config, args.split)
        graph = load(args.run_dir, trust_code=args.trust_code)
        try:
            metrics = evaluate(graph, split, batch_size=args.batch_size)
        except DataError as error:
            raise DataError(f"the {args.split} split: {error}") from None
        if unscored := sorted(name for name, value in metrics.items() if not math.isfinite(value)):
            raise CommandError(
                f"the {args.split} split: {', '.join(unscored)} are not finite: the model in "
                f"{args.run_dir} predicts NaN or infinite values on it"
            )
        print(json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False))
        return 0


# -- agora cache -------------------------------------------------------------------------------


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"),
        help="what the store holds (default: the config's fit.store_dtype)",
    )  # fmt: skip
    parser.add_argument(
        "--store-dir",
        help="the stores' folder (default: fit.store_dir, else $AGORA_CACHE_DIR/store)",
    )
    _add_overrides(parser)


def cache(args: argparse.Namespace) -> int:
    """Fill the teacher stores a run of the config reads: frozen agents' outputs, on disk."""
    from agora.run import fill_stores

    config = _load(args)
    started = time.perf_counter()
    stores = fill_stores(config, dtype=args.dtype, root=args.store_dir)
    if not stores:
        print("no store to fill: the config has no frozen agent on an edge")
        return 0
    for (agent, dataset), store in stores.items():
        size = store.bytes / 2**20
        print(
            f"{agent} on {dataset}: {store.examples} examples, {size:.1f} MiB "
            f"({store.bytes / store.examples:,.0f} bytes an example, {store.manifest['dtype']}), "
            f"filled in {store.manifest['seconds']:.1f} s: {store.path}"
        )
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


# -- agora gradients ---------------------------------------------------------------------------


def _gradients_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="examples in the batch (default: the config's fit.batch_size)",
    )
    parser.add_argument(
        "--balance", action=argparse.BooleanOptionalAction, default=None,
        help="weigh the terms as the loss balancer does (default: the config's fit.balance_losses)",
    )  # fmt: skip
    _add_overrides(parser)


def gradients(args: argparse.Namespace) -> int:
    """Print how hard each loss term pulls on each student at the start of training."""
    from agora.analysis.gradients import relative, term_gradients
    from agora.config import build_data, build_graph
    from agora.loaders import eval_loader, split_batch
    from agora.run import sample_batch

    config = _load(args)
    train = build_data(config)["train"]
    graph = build_graph(config)
    graph.build(sample_batch(train))
    size = args.batch_size or config.fit.batch_size

    def first(data: Any) -> Any:
        return split_batch(next(iter(eval_loader(data, batch_size=size))))

    balance = config.fit.balance_losses if args.balance is None else args.balance
    torch.manual_seed(config.seed)
    if isinstance(train, Mapping):  # per-learner data
        batches = {learner: first(data) for learner, data in train.items()}
        norms = term_gradients(graph, batches=batches, balance=balance)
    else:
        x, y = first(train)
        norms = term_gradients(graph, x, y, balance=balance)
    weighed = "balanced weights" if balance else "weights as given"
    print(f"each term's pull on the agent's backbone, over its task term's ({weighed}):")
    for agent, terms in relative(norms).items():
        print(f"{agent}:")
        width = max(len(term) for term in terms)
        for term, ratio in terms.items():
            print(f"  {term:<{width}}  {ratio:9.2e}")
    return 0


# -- agora graph -------------------------------------------------------------------------------


def _graph_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a packaged config's name (e.g. tiny)")
    parser.add_argument("--out", default="graph.png", help="image file (default: graph.png)")
    _add_overrides(parser)


def draw(args: argparse.Namespace) -> int:
    """Draw the config's agent graph (no model is built)."""
    from agora.analysis.drawing import draw_graph

    config = load_config(args.config, args.overrides)
    draw_graph(config.graph.to_nx(), args.out, title=Path(args.config).stem)
    print(f"graph: {args.out}")
    return 0


# agora cka --groups NAME: how examples are grouped, one heatmap per group
CKA_GROUPS: dict[str, Callable[[Any, Any], Any]] = {"genre": genres, "class": classes}


def default_groups(data: Any) -> str:
    """The grouping ``agora cka`` draws without ``--groups``: the first of :data:`CKA_GROUPS`
    that the data's first example has (genres, then integer classes), else ``"none"``."""
    x, y = data[0]
    x = {k: v.unsqueeze(0) for k, v in x.items()} if isinstance(x, Mapping) else x
    y = y.unsqueeze(0) if isinstance(y, torch.Tensor) else y
    for name, group in CKA_GROUPS.items():
        try:
            group(x, y)
        except ValueError:
            continue
        return name
    return "none"


# -- agora cka ---------------------------------------------------------------------------------


def _cka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (or one of its model folders)")
    parser.add_argument("--out", default="cka.png", help="image file (default: cka.png)")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument(
        "--groups",
        choices=(*CKA_GROUPS, "none"),
        help="one heatmap per genre (x['genres'], MovieLens) or per class (integer y), or one "
        "for all examples (none); default: per group when the data has groups, as the paper's "
        "Figure 3",
    )
    parser.add_argument("--teacher", help="the columns' agent (default: the first edge's tutor)")
    parser.add_argument("--student", help="the rows' agent (default: the first edge's learner)")
    parser.add_argument(
        "--min-examples",
        type=int,
        default=20,
        help="leave out groups with fewer examples (default: 20, as the paper)",
    )
    parser.add_argument("--batch-size", type=positive, default=1024)
    _trust_argument(parser)
    _add_overrides(parser, "of the stored run config (e.g. data.kwargs.n=1024)")


def cka(args: argparse.Namespace) -> int:
    """Draw linear CKA between teacher s/e and student s/e/m (the paper's Figure 3)."""
    from agora.analysis import cka as analysis
    from agora.checkpoint import load

    config = stored_config(args.run_dir, args.overrides, trust_code=args.trust_code)
    with threads(config.threads):  # the CPU threads its run had
        data = stored_split(config, args.split)
        graph = load(args.run_dir, trust_code=args.trust_code)
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
        groups = args.groups or default_groups(data)
        if groups == "none":
            collected = analysis.states(
                graph, data, agents=[teacher, student], batch_size=args.batch_size
            )
            matrices = {"all": analysis.cka_matrix(collected, teacher, student)}
        else:
            names = getattr(data, "group_names", None)
            try:
                matrices = analysis.by_group(
                    graph,
                    data,
                    CKA_GROUPS[groups],
                    teacher=teacher,
                    student=student,
                    names=names,
                    min_examples=args.min_examples,
                    batch_size=args.batch_size,
                )
            except ValueError as error:  # the data has no genres, or no class labels
                raise CommandError(f"--groups {groups}: {error}") from None
            if not matrices:
                raise CommandError(
                    f"--groups {groups}: no group of the {args.split} split has "
                    f"{args.min_examples} examples or more (lower --min-examples)"
                )
        for name, matrix in matrices.items():
            print(f"{name} (n={matrix.examples})\n{matrix}\n")
        title = f"{Path(args.run_dir).name}: {args.split}"
        analysis.plot(matrices, args.out, title=title)
        print(f"cka: {args.out}")
        return 0


# -- the command -------------------------------------------------------------------------------


def _add_overrides(parser: argparse.ArgumentParser, what: str = "of the config") -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"overrides {what}, e.g. fit.epochs=5"
    )


Command = tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]

COMMANDS: dict[str, Command] = {
    "run": (run, _run_arguments),
    "eval": (evaluate_run, _eval_arguments),
    "cache": (cache, _cache_arguments),
    "graph": (draw, _graph_arguments),
    "gradients": (gradients, _gradients_arguments),
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


# the commands that take a config's own options (--genre War), with their own flags: True for
# a flag that takes a value
OWN_FLAGS = {
    "run": {"out": True, "help": False, "baseline": False, "overwrite": False},
    "gradients": {"batch-size": True, "help": False, "balance": False, "no-balance": False},
    "cache": {"dtype": True, "store-dir": True, "help": False},
}


def _config_options(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The arguments of ``agora run`` (or ``gradients``) without the config's own options
    (``--genre War`` or ``--genre=War``), and those options as ``(name, value)`` pairs."""
    if not argv or argv[0] not in OWN_FLAGS:
        return argv, []
    own = OWN_FLAGS[argv[0]]
    rest, options, i = argv[:1], [], 1
    while i < len(argv):
        word = argv[i]
        name = word[2:].partition("=")[0]
        if not word.startswith("--") or name in own or not name:
            rest.append(word)
            if own.get(name) and "=" not in word and i + 1 < len(argv):
                rest.append(argv[i + 1])
                i += 1
        elif "=" in word:
            options.append((name, word.partition("=")[2]))
        elif i + 1 < len(argv):
            options.append((name, argv[i + 1]))
            i += 1
        else:
            rest.append(word)  # an option without a value: argparse says so
        i += 1
    return rest, options


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
    rest, options = _config_options(argv)
    args, extra = parser.parse_known_args(rest)
    args.options = options
    args.command_line = shlex.join(["agora", *argv])
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
