"""Vision agents: a ViT split between blocks, a ResNet between stages, exactly."""

from __future__ import annotations

import pytest
import torch

from tests.needs import skip_module_without

skip_module_without("vision")

import transformers  # noqa: E402

from agora import Graph, Talk  # noqa: E402
from agora.models.vision import load_vit, resnet_agent, vit_agent, vit_student  # noqa: E402


def tiny_vit(layers: int = 6) -> torch.nn.Module:
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.ViTModel(config, add_pooling_layer=False).eval()


def tiny_resnet() -> torch.nn.Module:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64],
                                       depths=[1, 1, 2, 1])  # fmt: skip
    torch.manual_seed(0)
    return transformers.ResNetModel(config).eval()


@pytest.mark.parametrize("lower_layers", [0, 3, 5])
def test_upper_of_lower_is_the_vits_own_output_bit_for_bit(lower_layers):
    model, x = tiny_vit(), torch.randn(2, 3, 32, 32)
    agent = vit_agent("t", model, lower_layers, num_labels=10, frozen=True)
    with torch.no_grad():
        out = agent(x)
        assert torch.equal(out.e, model(pixel_values=x).last_hidden_state)
    assert out.s.shape == (2, 17, 16) and out.y.shape == (2, 10)
    assert {id(p) for p in agent.backbone_parameters()} >= {id(p) for p in model.parameters()}
    with pytest.raises(ValueError, match=r"lower_layers must be in 0\.\.5"):
        vit_agent("t", model, 6)


@pytest.mark.parametrize("lower_stages", [0, 2, 3])
def test_upper_of_lower_is_the_resnets_own_output_bit_for_bit(lower_stages):
    model, x = tiny_resnet(), torch.randn(2, 3, 64, 64)
    agent = resnet_agent("cnn", model, lower_stages, num_labels=10, frozen=True)
    with torch.no_grad():
        out = agent(x)
        assert torch.equal(out.e, model(pixel_values=x).last_hidden_state)
        pooled = model(pixel_values=x).pooler_output.flatten(1)
        assert torch.allclose(out.y, agent.head.linear(pooled), atol=1e-6)
    assert out.s.dim() == 4 and out.e.shape == (2, 64, 2, 2)


def test_the_student_starts_as_the_teachers_first_blocks_and_the_teacher_is_untouched():
    teacher = tiny_vit()
    student = vit_student(teacher, num_layers=4, lower_layers=2, num_labels=10)
    blocks = [*student.lower.layers, *student.upper.layers]
    for mine, theirs in zip(blocks, teacher.layers[:4]):
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # a copy, not shared
    assert len(teacher.layers) == 6 and teacher.config.num_hidden_layers == 6


def test_a_vit_teacher_and_student_talk_per_token():
    teacher = vit_agent("teacher", tiny_vit(), 3, num_labels=10, frozen=True)
    student = vit_student(tiny_vit(), num_labels=10)
    graph = Graph([teacher, student], message_dim=8, codec="token", codec_hidden=16)
    graph.add_edge("student", "teacher", Talk(rounds=2))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    from agora import Orchestrator

    out = Orchestrator(graph.build(x))(x, y)
    out.loss.backward()
    assert {"interact[student]", "message_consistency[student->teacher]"} <= set(out.losses.terms)


def test_offline_without_the_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"put the checkpoint's files .* in a folder"):
        load_vit("google/vit-base-patch32-224-in21k")
    with pytest.raises(OSError, match=r"is not a folder holding config\.json"):
        load_vit(tmp_path)
    tiny_vit().save_pretrained(tmp_path / "vit")
    assert len(load_vit(tmp_path / "vit").layers) == 6


def test_a_missing_folder_is_named_at_once_and_the_hub_asked_once_without_retries(monkeypatch):
    # issue 23: `--weights no-such-dir` spoke of repo ids, after ~37 s of the Hub's retries
    import huggingface_hub

    asked = []

    def unreachable(url, *args, **kwargs):
        asked.append(url)
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    for path in ("no-such-dir/", "./vit-b32", "/nowhere/vit-b32"):  # only a path: never asked
        with pytest.raises(OSError, match=rf"^{path}: folder not found\. Without a network"):
            load_vit(path)
    assert asked == []
    with pytest.raises(OSError, match=r"no-such-dir: folder not found, .*HF_HUB_OFFLINE is set"):
        load_vit("no-such-dir")  # a Hub name, offline: not asked
    assert asked == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    cannot = r"not in the Hub's cache; the Hub cannot be asked \(\[Errno -2\] Name or service"
    with pytest.raises(OSError, match=rf"^no-such-dir: folder not found, and {cannot}"):
        load_vit("no-such-dir")
    assert len(asked) == 1  # once, no retries


def test_a_cnn_student_and_a_vit_teacher_talk_through_pooled_messages():
    from agora import Orchestrator

    teacher = vit_agent("teacher", tiny_vit(), 3, num_labels=10, frozen=True)
    student = resnet_agent("student", tiny_resnet(), 2, num_labels=10, codec="pooled")
    graph = Graph([teacher, student], message_dim=8, codec="pooled", codec_hidden=16)
    graph.add_edge("student", "teacher", Talk(rounds=2))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    out = Orchestrator(graph.build(x))(x, y)
    out.loss.backward()
    assert graph.agents["student"].codec.decode(torch.randn(4, 8))[0].shape == (4, 16, 4, 4)
    assert all(p.grad is not None for p in graph.agents["student"].codec.parameters())
