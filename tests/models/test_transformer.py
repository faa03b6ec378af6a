"""Text encoders split into agents: exact splits, the student's initialisation, masks."""

from __future__ import annotations

import pytest
import torch

from agora import Graph, Orchestrator, Talk
from agora.cache import CachedOrchestrator, StateCache
from agora.loaders import EpochSampler
from agora.models.transformer import (
    encoder_agent,
    load_backbone,
    load_encoder,
    load_tokenizer,
    minilm_student,
    minilm_teacher,
    truncated_copy,
)
from tests.needs import skip_module_without

skip_module_without("text")  # transformers and all-MiniLM-L6-v2

import transformers  # noqa: E402

SENTENCES = [
    "a charming and often affecting journey .",
    "unflinchingly bleak",
    "the movie is long , slow and , in the end , quite pointless .",
    "fun",
]


@pytest.fixture(scope="module")
def batch():
    tok = load_tokenizer()
    x = tok(SENTENCES, padding=True, return_tensors="pt")
    return {k: x[k] for k in ("input_ids", "attention_mask")}, torch.tensor([1, 0, 0, 1])


def padded(x: dict, extra: int) -> dict:
    """The same batch with ``extra`` more padding tokens on every sentence."""
    pad = torch.zeros((x["input_ids"].shape[0], extra), dtype=torch.long)
    return {k: torch.cat([v, pad], dim=1) for k, v in x.items()}


@pytest.fixture(scope="module")
def talk_graph(batch):
    torch.manual_seed(0)
    teacher = minilm_teacher(lower_layers=3)
    student = minilm_student(num_layers=2, lower_layers=1)
    graph = Graph([teacher, student], message_dim=32, codec="token", codec_hidden=32)
    graph.add_edge("student", "teacher", (Talk(rounds=2), "feature", "fitnet"))
    return graph.build(batch[0]).eval()


@pytest.mark.parametrize("lower_layers", [0, 1, 3, 5])
def test_lower_then_upper_is_the_encoders_forward_exactly(batch, lower_layers):
    model = load_encoder().eval()
    agent = encoder_agent("teacher", model, lower_layers, frozen=True)
    with torch.no_grad():
        full = model(**batch[0]).last_hidden_state
        out = agent(batch[0])
    assert torch.equal(out.e, full)  # bitwise, padding positions included
    assert torch.equal(out.mask, batch[0]["attention_mask"].bool())


def test_the_split_works_for_any_bert_style_encoder():
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    x = {"input_ids": torch.tensor([[2, 7, 9, 0], [3, 4, 0, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}  # fmt: skip
    agent = encoder_agent("a", model, 2, num_labels=3, frozen=True)
    with torch.no_grad():
        assert torch.equal(agent(x).e, model(**x).last_hidden_state)
    assert agent(x).y.shape == (2, 3) and agent.task == "classification"
    with pytest.raises(ValueError, match=r"lower_layers must be in 0\.\.2"):
        encoder_agent("a", model, 3)
    with pytest.raises(ValueError, match="not a token encoder"):
        encoder_agent("a", torch.nn.Linear(2, 2), 1)


def test_the_student_starts_as_the_teachers_first_layers():
    teacher = load_encoder()
    student = minilm_student(num_layers=2, lower_layers=1)
    expected = {
        k: v
        for k, v in teacher.state_dict().items()
        if k.startswith("embeddings.") or k.split(".")[:3] in (["encoder", "layer", "0"],
                                                               ["encoder", "layer", "1"])
    }  # fmt: skip
    got = {f"embeddings.{k}": v for k, v in student.lower.embeddings.state_dict().items()}
    got |= {f"encoder.layer.0.{k}": v for k, v in student.lower.layers[0].state_dict().items()}
    got |= {f"encoder.layer.1.{k}": v for k, v in student.upper.layers[0].state_dict().items()}
    assert expected.keys() == got.keys() and len(got) > 20
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert len(student.lower.layers) == 1 and len(student.upper.layers) == 1
    copy = truncated_copy(teacher, 2)
    assert len(copy.encoder.layer) == 2 and copy.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 6  # the teacher is untouched


def test_a_student_can_start_from_a_fine_tuned_teachers_layers(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tuned = encoder_agent("teacher", load_encoder(), 3, num_labels=2)  # saved with its head
    with torch.no_grad():  # stands for fine-tuning: every weight moves off the pre-trained one
        for p in tuned.parameters():
            p.add_(torch.randn_like(p))
    file = tmp_path / "tuned.safetensors"
    save_file({k: v.contiguous() for k, v in tuned.state_dict().items()}, str(file))
    student = minilm_student(num_layers=2, lower_layers=1, teacher=file)
    pairs = [
        (student.lower.embeddings, tuned.lower.embeddings),
        (student.lower.layers[0], tuned.lower.layers[0]),
        (student.upper.layers[0], tuned.lower.layers[1]),
    ]
    for mine, theirs in pairs:
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(),
                                                     theirs.state_dict().values()))  # fmt: skip
    pretrained = minilm_student(num_layers=2, lower_layers=1)
    assert not torch.equal(student.upper.layers[0].output.dense.weight,
                           pretrained.upper.layers[0].output.dense.weight)  # fmt: skip


@pytest.mark.parametrize("split", [0, 2])
def test_a_backbone_loads_whatever_its_split(tmp_path, split):
    from safetensors.torch import save_file

    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    torch.manual_seed(0)
    saved = transformers.BertModel(config, add_pooling_layer=False)
    agent = encoder_agent("t", saved, split, num_labels=2)
    file = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, str(file))
    torch.manual_seed(1)
    model = load_backbone(transformers.BertModel(config, add_pooling_layer=False), file)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 saved.state_dict().values()))  # fmt: skip


def test_a_wrong_backbone_file_is_named(tmp_path):
    from safetensors.torch import save_file

    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    other = encoder_agent("t", transformers.BertModel(config), 1, num_labels=2)
    wrong = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(wrong))
    with pytest.raises(ValueError, match=r"small\.safetensors: not an agent's backbone"):
        load_backbone(load_encoder(), wrong)
    head_only = tmp_path / "probe.safetensors"
    save_file({"linear.weight": torch.zeros(2, 384), "linear.bias": torch.zeros(2)}, str(head_only))
    with pytest.raises(ValueError, match=r"probe\.safetensors: not an agent's backbone"):
        load_backbone(load_encoder(), head_only)
    with pytest.raises(ValueError, match=r"missing\.safetensors: not a readable"):
        minilm_student(teacher=tmp_path / "missing.safetensors")


def test_a_wrong_probe_file_is_named(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "probe.safetensors"
    save_file({"linear.weight": torch.zeros(3, 5), "linear.bias": torch.zeros(3)}, str(bad))
    with pytest.raises(
        ValueError, match=r"Agent 'teacher': .*probe\.safetensors is not a linear probe"
    ):
        minilm_teacher(probe=bad)
    with pytest.raises(ValueError, match=r"missing\.safetensors"):
        minilm_teacher(probe=tmp_path / "missing.safetensors")


def test_padding_never_changes_a_loss(talk_graph, batch):
    x, y = batch
    step = Orchestrator(talk_graph).eval()
    with torch.no_grad():
        torch.manual_seed(0)
        base = step(x, y).losses
        torch.manual_seed(0)
        more = step(padded(x, 7), y).losses
    assert base.terms.keys() == more.terms.keys() and len(base.terms) == 6
    for name in base.terms:  # extra padding changes matrix shapes: float rounding at most
        torch.testing.assert_close(more.terms[name][1], base.terms[name][1], rtol=1e-5, atol=1e-6)
    # the same padding counted as real tokens changes them: the check above can fail
    unmasked = dict(padded(x, 7), attention_mask=torch.ones_like(padded(x, 7)["attention_mask"]))
    with torch.no_grad():
        wrong = step(unmasked, y).losses
    assert not torch.allclose(
        wrong.terms["interact[student]"][1], base.terms["interact[student]"][1]
    )


def test_evaluation_pools_real_tokens_only(talk_graph, batch):
    from torch.utils.data import DataLoader

    from agora.data.sst2 import TextDataset
    from agora.train import evaluate

    x, y = batch
    ids = [row[mask.bool()] for row, mask in zip(x["input_ids"], x["attention_mask"])]
    data = TextDataset(ids, y)
    plain = evaluate(talk_graph, data)

    def extra_padding(items):
        batch_x, batch_y = data.collate_fn(items)
        return padded(batch_x, 9), batch_y

    more = evaluate(talk_graph, DataLoader(data, batch_size=4, collate_fn=extra_padding))
    assert plain.keys() == more.keys() == {"student/accuracy", "student/loss"}
    assert more["student/loss"] == pytest.approx(plain["student/loss"], rel=1e-5)


def test_the_state_cache_gives_the_losses_of_recomputing(talk_graph, batch):
    x, y = batch
    index = torch.arange(len(y))
    cached = CachedOrchestrator(talk_graph, StateCache(len(y))).train()
    plain = CachedOrchestrator(talk_graph, None).train()
    for _ in range(2):  # the first pass fills the cache, the second reads it
        torch.manual_seed(1)
        with_cache = cached(x, y, index).losses
        torch.manual_seed(1)
        without = plain(x, y, index).losses
        for name in without.terms:
            assert torch.equal(with_cache.terms[name][1], without.terms[name][1]), name
    assert cached.cache.filled[("teacher", None)].all()
    # rows stored at one padding and read at another: real tokens agree (masked rest); without
    # dropout, whose draws depend on the padded shape
    dropouts = [m for m in talk_graph.modules() if isinstance(m, torch.nn.Dropout)]
    rates = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        without = plain(x, y, index).losses
        longer = cached(padded(x, 5), y, index).losses
    finally:
        for m, p in zip(dropouts, rates):
            m.p = p
    for name in without.terms:
        torch.testing.assert_close(
            longer.terms[name][1], without.terms[name][1], rtol=1e-5, atol=1e-6
        )


def test_batches_grouped_by_length_hold_similar_lengths():
    lengths = torch.randint(3, 60, (1000,)).tolist()
    order = list(EpochSampler(1000, seed=0, lengths=lengths, batch_size=32))
    assert sorted(order) == list(range(1000))
    batches = [order[i : i + 32] for i in range(0, 1000, 32)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    shuffled = list(EpochSampler(1000, seed=0))
    spread_shuffled = sum(
        max(lengths[i] for i in shuffled[j : j + 32])
        - min(lengths[i] for i in shuffled[j : j + 32])
        for j in range(0, 1000, 32)
    )
    assert spread < spread_shuffled / 5
    later = EpochSampler(1000, seed=0, lengths=lengths, batch_size=32)
    later.set_epoch(1)
    assert list(later) != order  # each epoch its own batches


def test_a_fine_tuned_teacher_is_read_back_whole(tmp_path):
    from safetensors.torch import save_file

    tuned = encoder_agent("teacher", load_encoder(), 3, num_labels=2, dropout=0.0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01)
    path = tmp_path / "tuned.safetensors"
    save_file({k: v.contiguous() for k, v in tuned.state_dict().items()}, str(path))
    teacher = minilm_teacher(weights=path)
    assert teacher.frozen and teacher.head is not None
    for key, value in tuned.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
    with pytest.raises(ValueError, match="not both"):
        minilm_teacher(probe=path, weights=path)
    save_file({"lower.bogus": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"bad\.safetensors is not the weights of all-MiniLM"):
        minilm_teacher(weights=tmp_path / "bad.safetensors")
