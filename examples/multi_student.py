"""One teacher, several students: a frozen teacher teaches one small student per genre, all in
one run, each student on its own genre's ratings; the teacher's codec learns from every one
of them (two_node.py plus per-learner data).

    python examples/multi_student.py                       # a few minutes on a CPU
    python examples/multi_student.py --genres War Western  # any genres
    python examples/multi_student.py --limit 1000          # a smoke test: seconds

An epoch is one pass over the largest genre; a smaller genre's ratings restart (reshuffled)
when they run out.
"""

from __future__ import annotations

import argparse

import torch

from agora import FitConfig, Graph, Talk, evaluate, fit
from agora.agent import Agent
from agora.data.movielens import MovieLens
from agora.models.recommender import student_agent, teacher_agent

TD_WEIGHTS = {"message_consistency": 0.5, "state_consistency": 0.5}  # the edge's
TALK = Talk(rounds=2, interact_weight=0.5)  # the learner's k rounds and interact weight


def splits(ml: MovieLens, genre: str | list[str] | None, limit: int | None) -> dict:
    """Train / valid / test ratings of a genre (``None``: all), each cut to ``limit``."""
    return {name: data.head(limit) for name, data in ml.splits(genre).items()}


def pretrain(agent: Agent, data: dict, epochs: int) -> Agent:
    """Train an agent alone (a graph of one), keep its best validation weights, freeze it."""
    agent.freeze(False)
    config = FitConfig(epochs=epochs, patience=1, progress=False, log_every=10**9)
    fit(Graph([agent], message_dim=8, codec="linear"), data["train"], data["valid"], config)
    agent.codec = None  # a codec for the graph it will talk in is built there
    return agent.freeze()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genres", nargs="+", default=["Romance", "Adventure", "Sci-Fi", "War"],
        help="one student per genre (default: Genres 5-8, the sparse ones)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=5, help="student epochs (default: 5)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="(default: 3)")
    parser.add_argument("--limit", type=int, help="keep the first N ratings of each split")
    parser.add_argument("--data-dir", help="the folder holding ml-100k/ (default: $AGORA_DATA_DIR)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ml = MovieLens(args.data_dir)

    teacher = pretrain(teacher_agent(ml.meta), splits(ml, None, args.limit), args.teacher_epochs)
    graph = Graph([teacher], message_dim=128)
    for genre in args.genres:  # new: a student per genre, each with an edge to the teacher
        student = student_agent(ml.meta, name=genre.lower())
        graph.add_agent(student)
        graph.add_edge(student.name, "teacher", TALK, weights=TD_WEIGHTS)

    # new: data by learner; each student and the teacher observe that student's ratings
    data = {genre.lower(): splits(ml, genre, args.limit) for genre in args.genres}
    train = {name: d["train"] for name, d in data.items()}
    valid = {name: d["valid"] for name, d in data.items()}
    config = FitConfig(epochs=args.epochs, patience=2, metric="mean/rmse", progress=False)
    fit(graph, train, valid, config)  # best epoch by the students' mean validation RMSE
    test = evaluate(graph, {name: d["test"] for name, d in data.items()})
    for name in data:
        print(f"{name} test RMSE: {test[f'{name}/rmse']:.4f}")
    print(f"mean test RMSE: {test['mean/rmse']:.4f}")
    return test


if __name__ == "__main__":
    main()
