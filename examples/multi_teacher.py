"""Several teachers, one student: the all-genre teacher and two specialists, each pre-trained
on its own group of genres, teach a small student one genre; a router weighs their replies
example by example (two_node.py plus a multi-teacher graph).

    python examples/multi_teacher.py                         # a few minutes on a CPU
    python examples/multi_teacher.py --aggregation weights   # or mean: one weight per tutor
    python examples/multi_teacher.py --limit 1000            # a smoke test: seconds
"""

from __future__ import annotations

import argparse

import torch

from agora import FitConfig, Graph, Orchestrator, Talk, evaluate, fit
from agora.agent import Agent
from agora.data.movielens import MovieLens
from agora.models.recommender import student_agent, teacher_agent

TD_WEIGHTS = {"message_consistency": 0.5, "state_consistency": 0.5}  # the edge's
SPECIALISTS = {  # disjoint groups of genres
    "drama_teacher": ["Drama", "Comedy", "Romance"],
    "action_teacher": ["Action", "Thriller", "Adventure", "Sci-Fi"],
}


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
    parser.add_argument("--aggregation", default="router", choices=["mean", "weights", "router"])
    parser.add_argument("--epochs", type=int, default=5, help="student epochs (default: 5)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="(default: 3)")
    parser.add_argument("--limit", type=int, help="keep the first N ratings of each split")
    parser.add_argument("--data-dir", help="the folder holding ml-100k/ (default: $AGORA_DATA_DIR)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ml = MovieLens(args.data_dir)

    teachers = [pretrain(teacher_agent(ml.meta), splits(ml, None, args.limit), args.teacher_epochs)]
    for name, genres in SPECIALISTS.items():
        specialist = teacher_agent(ml.meta, name=name)
        teachers.append(pretrain(specialist, splits(ml, genres, args.limit), args.teacher_epochs))
    graph = Graph(teachers, message_dim=128)
    student = graph.add_agent(student_agent(ml.meta))
    # the learner's k rounds and interact weight; new: its aggregation, the same on each edge
    talk = Talk(rounds=2, interact_weight=0.5, aggregation=args.aggregation)
    for teacher in teachers:  # new: one talk edge per tutor; their replies are aggregated
        graph.add_edge("student", teacher.name, talk, weights=TD_WEIGHTS)

    data = splits(ml, args.genre, args.limit)
    config = FitConfig(epochs=args.epochs, patience=2, metric="student/rmse", progress=False)
    fit(graph, data["train"], data["valid"], config)
    test = evaluate(graph, data["test"])
    print(f"{args.genre} test RMSE: student {test['student/rmse']:.4f}; teachers "
          + ", ".join(f"{t.name} {test[f'{t.name}/rmse']:.4f}" for t in teachers))  # fmt: skip

    # which tutor does the student listen to? (fit logs this as aggregation/student/<tutor>)
    step = Orchestrator(graph).eval()
    with torch.no_grad():
        step(*data["test"].full_batch())
    aggregator = graph.learner_module("talk", student.name).aggregator
    weights = aggregator.last_weights  # [B, tutors] (router) or [tutors]
    mean = weights.reshape(-1, len(teachers)).mean(0).tolist()
    print("mean weight on test: " + ", ".join(f"{t.name} {w:.3f}" for t, w in zip(teachers, mean)))
    return test


if __name__ == "__main__":
    main()
