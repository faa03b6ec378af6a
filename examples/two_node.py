"""Two models, talking: a frozen teacher pre-trained on every genre teaches a small student
one genre of MovieLens 100K (the paper's two-node run).

The base example: multi_teacher.py, multi_student.py, peers.py and chain.py are this file
plus one feature each.

    python examples/two_node.py                  # about a minute on a CPU
    python examples/two_node.py --limit 1000     # the first 1000 ratings of each split: seconds

The data is read from $AGORA_DATA_DIR/ml-100k/ or downloaded from GroupLens on first use.
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
    parser.add_argument("--genre", default="War", help="the student's genre (default: War)")
    parser.add_argument("--epochs", type=int, default=5, help="student epochs (default: 5)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="(default: 3)")
    parser.add_argument("--limit", type=int, help="keep the first N ratings of each split")
    parser.add_argument("--data-dir", help="the folder holding ml-100k/ (default: $AGORA_DATA_DIR)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ml = MovieLens(args.data_dir)

    teacher = pretrain(teacher_agent(ml.meta), splits(ml, None, args.limit), args.teacher_epochs)
    graph = Graph([teacher, student_agent(ml.meta)], message_dim=128)
    graph.add_edge("student", "teacher", TALK, weights=TD_WEIGHTS)

    data = splits(ml, args.genre, args.limit)
    config = FitConfig(epochs=args.epochs, patience=2, metric="student/rmse", progress=False)
    fit(graph, data["train"], data["valid"], config)
    test = evaluate(graph, data["test"])
    print(f"{args.genre} test RMSE: student {test['student/rmse']:.4f}, "
          f"teacher {test['teacher/rmse']:.4f}")  # fmt: skip
    return test


if __name__ == "__main__":
    main()
