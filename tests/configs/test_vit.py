"""The paper's ViT configs, run end to end on a tiny random ViT and generated CIFAR files."""

from __future__ import annotations

import json

import pytest

from tests.needs import skip_module_without

skip_module_without("vision")

import transformers  # noqa: E402

from agora.cli import main  # noqa: E402
from agora.config import load_config  # noqa: E402
from tests.data.test_images import write_cifar10  # noqa: E402

TINY = [
    "graph.message_dim=8", "graph.codec_hidden=16", "data.kwargs.image_size=32",
    "data.kwargs.valid_size=8", "fit.max_steps=3", "fit.batch_size=8", "fit.warmup_steps=1",
    "fit.progress=false", "data.kwargs.verify=false",  # generated files: 8 records, not 10000
]  # fmt: skip


@pytest.fixture
def vit_folder(tmp_path):
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8,
    )  # fmt: skip
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    return tmp_path / "vit"


def test_the_configs_say_what_the_appendix_says():
    for name, classes in (("vit-cifar10", 10), ("vit-cifar100", 100), ("vit-imagenet", 1000)):
        config = load_config(name)
        teacher, student = config.graph.agents
        assert teacher.frozen and teacher.kwargs["path"] == "google/vit-base-patch32-224-in21k"
        assert student.kwargs["num_layers"] == 4 and student.kwargs["num_labels"] == classes
        [edge] = config.graph.edges
        assert edge.protocol("talk").rounds == 2 and config.fit.max_steps == 20000
        assert (config.graph.message_dim, config.graph.codec_hidden) == (512, 512)


def test_vit_cifar10_runs_with_a_baseline_on_generated_images(tmp_path, vit_folder, monkeypatch):
    write_cifar10(tmp_path / "data" / "cifar-10-batches-bin", n=8)
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "run"
    argv = ["run", "vit-cifar10", "--weights", str(vit_folder), "--out", str(out), *TINY]
    assert main(argv) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison["agents"]) == {"student"}  # the teacher has no head for CIFAR
    assert 0 <= comparison["agents"]["student"]["graph"]["test"]["accuracy"] <= 1


def test_without_the_weights_offline_the_error_says_where_to_put_them(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_cifar10(tmp_path / "data" / "cifar-10-batches-bin", n=8)
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as caught:
        main(["run", "vit-cifar10", "--out", str(tmp_path / "run"), *TINY])
    assert caught.value.code == 2
    assert "put the checkpoint's files" in capsys.readouterr().err


def test_offline_without_data_or_with_a_wrong_folder_the_run_says_what_to_do_in_one_line(
    tmp_path, monkeypatch, capsys
):
    # issue 23: no data offline ended in a 77-line urllib traceback; a wrong --weights folder
    # was "could not be downloaded (Repo id must be in the form ...)"
    from urllib.error import URLError

    from agora.data import download

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(download, "urlopen", offline)
    monkeypatch.delenv("AGORA_DATA_DIR", raising=False)
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as caught:
        main(["run", "vit-cifar10", "--out", str(tmp_path / "run"), *TINY])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "CIFAR-10 is not in" in err and "could not be downloaded" in err
    assert "$AGORA_DATA_DIR/cifar-10-batches-bin/" in err
    write_cifar10(tmp_path / "data" / "cifar-10-batches-bin", n=8)
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "data"))
    weights = tmp_path / "no-such-dir"
    with pytest.raises(SystemExit):
        main(["run", "vit-cifar10", "--weights", str(weights), "--out", str(tmp_path / "r"), *TINY])
    err = capsys.readouterr().err
    assert f"{weights}: folder not found" in err and "Repo id" not in err
