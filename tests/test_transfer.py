"""Transfer sets: unlabelled examples on which learners hear their tutors (fit's ``transfer``)."""

import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from agora import Orchestrator, Stage
from agora.folder import RunFolderError
from agora.loaders import TRANSFER, LearnerBatchSampler, step_inputs
from agora.stages import fit_stages
from agora.train import fit
from tests.helpers import (
    assert_same,
    clone_weights,
    fit_data,
    quick_fit,
    regression_data,
    talk_graph,
    two_node,
)

DISTILLATION = (
    "logit[student->teacher]",
    "message_consistency[student->teacher]",
    "state_consistency[student->teacher]",
    "interact[student]",
)


def unlabelled(n=96, seed=5):
    return TensorDataset(torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)))


def test_a_transfer_batch_alone_gives_no_task_gradient_and_distillation_gradients():
    graph = two_node(rounds=2, protocols=("talk", "logit")).train()
    x, _ = regression_data(16)
    out = Orchestrator(graph)(transfer=x)
    assert "task[student]" not in out.losses.terms
    assert set(DISTILLATION) <= set(out.losses.terms)
    out.loss.backward()
    head = graph.agents["student"].head.weight.grad
    assert head is not None and head.abs().sum() > 0  # the logit term reaches the student


def test_the_task_counts_labelled_examples_only_and_each_term_is_a_mean_over_both():
    graph = two_node(rounds=2, protocols=("talk", "logit")).train()
    step = Orchestrator(graph)
    x, y = regression_data(16)
    x_transfer, _ = regression_data(48, seed=9)
    mixed = step(x, y, transfer=x_transfer).losses.values()
    labelled = step(x, y).losses.values()
    pooled = step(torch.cat([x, x_transfer])).losses.values()  # the same examples, no labels
    assert torch.equal(mixed["task[student]"], labelled["task[student]"])
    for term in DISTILLATION:  # (16 * L_labelled + 48 * L_transfer) / 64
        torch.testing.assert_close(mixed[term], pooled[term], msg=term)


def test_the_task_gradient_is_the_same_with_or_without_a_transfer_batch():
    graph = two_node(protocols="logit").train()
    x, y = regression_data(16)
    step = Orchestrator(graph)
    params = graph.agents["student"].backbone_parameters()
    with_transfer = step(x, y, transfer=regression_data(32, seed=3)[0]).losses.terms
    alone = step(x, y).losses.terms
    a = torch.autograd.grad(with_transfer["task[student]"][1], params)
    b = torch.autograd.grad(alone["task[student]"][1], params)
    for left, right in zip(a, b):
        assert torch.equal(left, right)


def test_a_step_holds_a_labelled_and_a_transfer_batch_and_an_epoch_is_one_pass_over_the_transfer_set():
    sampler = LearnerBatchSampler({None: 10, TRANSFER: 30}, {None: 4, TRANSFER: 6}, 0, TRANSFER)
    steps = list(sampler)
    assert len(steps) == len(sampler) == 5  # 30 transfer examples, 6 a step
    assert sorted(i for step in steps for i in step[TRANSFER]) == list(range(30))
    labelled = [i for step in steps for i in step[None]]
    assert sorted(labelled[:10]) == list(range(10))  # a full pass, then another reshuffled
    assert labelled[10:] != labelled[: len(labelled) - 10]
    sampler.set_epoch(1)
    assert [s[TRANSFER] for s in sampler] != [s[TRANSFER] for s in steps]


def test_step_inputs_split_labelled_and_transfer_parts():
    x, y, t = torch.randn(4, 3), torch.randn(4), torch.randn(6, 3)
    item = {None: ((x, y), torch.arange(4)), TRANSFER: ((t,), torch.arange(6))}
    inputs = step_inputs(item)
    assert inputs["x"] is x and inputs["y"] is y and inputs["transfer"] is t
    assert sorted(inputs["index"], key=str) == [None, TRANSFER]


def test_fit_with_a_transfer_set_runs_a_pass_over_it_each_epoch(tmp_path):
    train, valid = fit_data(n=128)  # 96 labelled
    graph = talk_graph()
    result = fit(graph, train, valid, quick_fit(epochs=2, batch_size=16, transfer_batch_size=32),
                 transfer=unlabelled(160), out_dir=tmp_path)  # fmt: skip
    assert result.steps == 2 * math.ceil(160 / 32)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    trained = [line for line in lines if "train/task[student]" in line]
    assert trained and all("train/logit[student->teacher]" in line for line in trained)


def test_a_labelled_set_serves_as_its_own_transfer_set():
    train, valid = fit_data(n=128)
    result = fit(talk_graph(), train, valid, quick_fit(epochs=1, batch_size=16), transfer=train)
    assert result.steps == math.ceil(len(train) / 16)


def test_another_transfer_set_is_another_run(tmp_path):
    train, valid = fit_data(n=64)
    config = quick_fit(epochs=1, batch_size=16)
    fit(talk_graph(), train, valid, config, transfer=unlabelled(32), out_dir=tmp_path)
    with pytest.raises(RunFolderError, match=r"another configuration.*transfer"):
        fit(talk_graph(), train, valid, config, transfer=unlabelled(32, seed=6), out_dir=tmp_path)


def test_per_learner_data_stages_accumulation_and_the_balancer_take_a_transfer_set():
    from agora import Graph
    from agora.models.toy import mlp_agent

    torch.manual_seed(0)
    agents = [mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("a", 8, 8), mlp_agent("b", 8, 8)]
    graph = Graph(agents, message_dim=8)
    for learner in ("a", "b"):
        graph.add_edge(learner, "teacher", ("talk", "logit"))
    train, valid = fit_data(n=96)
    data = {"a": train, "b": TensorDataset(train.tensors[0][:40], train.tensors[1][:40])}
    config = quick_fit(epochs=1, batch_size=8, grad_accumulation=2, balance_losses=True,
                       balance_every=1, transfer_batch_size=16)  # fmt: skip
    result = fit(graph, data, {"a": valid, "b": valid}, config, transfer=unlabelled(64))
    assert result.steps == 64 // 16 // 2
    assert {"logit[a->teacher]", "logit[b->teacher]"} <= set(result.scales)

    chain = talk_graph()
    stages = [Stage("student", edges=[("student", "teacher")], train=["student"])]
    results = fit_stages(chain, stages, train, valid, quick_fit(epochs=1, batch_size=16),
                         transfer=unlabelled(48))  # fmt: skip
    assert results["student"].steps == 3


def test_a_run_with_a_transfer_set_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    from tests.test_train import PATIENCE, run_script

    reference = run_script(tmp_path / "reference", "--transfer")
    assert reference.wait(timeout=PATIENCE) == 0, reference.stderr.read().decode()
    crashed = run_script(tmp_path / "resumed", "--transfer", "--crash", "pointer@2")
    assert crashed.wait(timeout=PATIENCE) != 0  # died at its second checkpoint, step 10
    latest = (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-00000010"  # 12 steps an epoch: mid-epoch
    resumed = run_script(tmp_path / "resumed", "--transfer")
    assert resumed.wait(timeout=PATIENCE) == 0, resumed.stderr.read().decode()
    from safetensors.torch import load_file

    assert_same(
        load_file(str(tmp_path / "reference" / "final.safetensors")),
        load_file(str(tmp_path / "resumed" / "final.safetensors")),
    )


def test_two_process_ddp_with_a_transfer_set_matches_one_process(tmp_path):
    from safetensors.torch import load_file

    from tests.test_train import PATIENCE, assert_ddp_equal, run_script, two_processes

    common = ["--epochs", "1", "--dropout", "0", "--transfer"]
    single = run_script(tmp_path / "single", "--batch-size", "16", *common)
    assert single.wait(timeout=PATIENCE) == 0, single.stderr.read().decode()
    ddp = two_processes(tmp_path / "ddp", "--batch-size", "8", *common)
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    rank0 = load_file(str(tmp_path / "ddp" / "final-rank0.safetensors"))
    assert_same(rank0, load_file(str(tmp_path / "ddp" / "final-rank1.safetensors")))
    assert_ddp_equal(rank0, load_file(str(tmp_path / "single" / "final.safetensors")))


def test_the_baseline_alone_takes_the_same_steps_and_ignores_the_transfer_set():
    from agora.baseline import alone

    train, valid = fit_data(n=64)
    graph = talk_graph()
    solo = alone(graph.build(torch.randn(2, 8)))
    before = clone_weights(solo)
    result = fit(solo, train, valid, quick_fit(epochs=1, batch_size=16), transfer=unlabelled(80))
    assert result.steps == 5
    assert any(not torch.equal(before[k], v) for k, v in solo.state_dict().items())
