"""A chain in stages (teacher-assistant distillation): the frozen teacher first teaches a
mid-size assistant; then the assistant is frozen, the teacher's edge switched off, and the
assistant teaches the small student (two_node.py plus stages).

    python examples/chain.py                  # a few minutes on a CPU
    python examples/chain.py --limit 1000     # a smoke test: seconds
"""

from __future__ import annotations

import argparse

import torch

from agora import FitConfig, Graph, Stage, Talk, evaluate, fit, fit_stages
from agora.agent import Agent
from agora.data.movielens import MovieLens
from agora.models.recommender import Recommender, student_agent, teacher_agent

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
    parser.add_argument("--epochs", type=int, default=4, help="epochs per stage (default: 4)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="(default: 3)")
    parser.add_argument("--limit", type=int, help="keep the first N ratings of each split")
    parser.add_argument("--data-dir", help="the folder holding ml-100k/ (default: $AGORA_DATA_DIR)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ml = MovieLens(args.data_dir)

    teacher = pretrain(teacher_agent(ml.meta), splits(ml, None, args.limit), args.teacher_epochs)
    half = Recommender.student(ml.meta, user_dim=50, movie_dim=50, title_dim=25, genre_dim=25,
                               hidden=(256, 128))  # fmt: skip
    assistant = Agent.from_model("assistant", half, "lower", "upper", "head", task="regression")
    graph = Graph([teacher, assistant, student_agent(ml.meta)], message_dim=128)
    graph.add_edge("assistant", "teacher", TALK, weights=TD_WEIGHTS)
    graph.add_edge("student", "assistant", TALK, weights=TD_WEIGHTS)
    stages = [  # new: each stage sets the active edges and the agents that train
        Stage("assistant", edges=[("assistant", "teacher")], train=["assistant"]),
        Stage("student", edges=[("student", "assistant")], train=["student"]),
    ]

    data = splits(ml, args.genre, args.limit)
    config = FitConfig(epochs=args.epochs, patience=2, progress=False)
    fit_stages(graph, stages, data["train"], data["valid"], config)  # metric: the trainee's
    test = evaluate(graph, data["test"])
    print(f"{args.genre} test RMSE: " + ", ".join(
        f"{name} {test[f'{name}/rmse']:.4f}" for name in ("student", "assistant", "teacher")))  # fmt: skip
    return test


if __name__ == "__main__":
    main()
