"""Image data from generated files: CIFAR's binary records, a tar.gz download, class folders."""

from __future__ import annotations

import hashlib
import io
import tarfile
import warnings

import pytest
import torch

from agora.data import images
from agora.data.download import Archive, ChecksumError, DataError, download_archive


def cifar_records(
    n: int, label_bytes: int, seed: int = 0
) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n, label_bytes), generator=g, dtype=torch.uint8)
    pixels = torch.randint(0, 256, (n, 3 * 32 * 32), generator=g, dtype=torch.uint8)
    raw = torch.cat([labels, pixels], dim=1).numpy().tobytes()
    return raw, pixels.reshape(n, 3, 32, 32), labels[:, -1].long()


def write_cifar10(folder, n=6):
    folder.mkdir(parents=True)
    expected = []
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        raw, pixels, labels = cifar_records(n, 1, seed=i)
        (folder / name).write_bytes(raw)
        expected.append((pixels, labels))
    return expected


def test_the_cifar10_reader_reads_every_record_of_every_batch(tmp_path):
    expected = write_cifar10(tmp_path / "cifar-10-batches-bin")
    x, y = images.read_cifar("cifar10", "train", tmp_path, verify=False)
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[:6], expected[0][0]) and torch.equal(y[6:12], expected[1][1])
    x, y = images.read_cifar("cifar10", "test", tmp_path, verify=False)
    assert torch.equal(x, expected[5][0]) and torch.equal(y, expected[5][1])


def test_cifar100_reads_the_fine_label_and_a_truncated_file_is_named(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    raw, pixels, fine = cifar_records(4, 2)
    (folder / "train.bin").write_bytes(raw)
    (folder / "test.bin").write_bytes(raw[:-7])
    x, y = images.read_cifar("cifar100", "train", tmp_path, verify=False)
    assert torch.equal(x, pixels) and torch.equal(y, fine)
    with pytest.raises(DataError, match=r"test\.bin: .* not a whole number of 3074-byte"):
        images.read_cifar("cifar100", "test", tmp_path, verify=False)


def test_a_cifar_file_cut_at_a_record_boundary_is_refused_unless_not_verified(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-bin")  # 6 records a file, the publisher's 10000
    with pytest.raises(DataError, match=r"data_batch_1\.bin: 6 records, but the published "
                       r"CIFAR-10 data_batch_1\.bin holds 10000: the file is cut short"):  # fmt: skip
        images.read_cifar("cifar10", "train", tmp_path)
    assert len(images.read_cifar("cifar10", "train", tmp_path, verify=False)[1]) == 30


@pytest.mark.parametrize("name, folder, file, label_bytes, label", [
    ("cifar10", "cifar-10-batches-bin", "test_batch.bin", 1, 10),
    ("cifar100", "cifar-100-binary", "test.bin", 2, 200),
])  # fmt: skip
def test_a_cifar_label_outside_the_classes_or_an_empty_file_is_named(
    tmp_path, name, folder, file, label_bytes, label
):
    (tmp_path / folder).mkdir()
    raw = bytearray(cifar_records(5, label_bytes)[0])
    raw[3 * (label_bytes + 3072) + label_bytes - 1] = label  # record 3's (fine) label
    (tmp_path / folder / file).write_bytes(raw)
    with pytest.raises(DataError, match=rf"{file}: record 3 \(at byte {3 * (label_bytes + 3072)}"
                       rf"\) has label {label}, but CIFAR-10+ has classes 0\.\.(9|99)"):  # fmt: skip
        images.read_cifar(name, "test", tmp_path, verify=False)
    (tmp_path / folder / file).write_bytes(b"")
    with pytest.raises(DataError, match=rf"{file}: empty \(0 bytes\)"):
        images.read_cifar(name, "test", tmp_path, verify=False)


def test_the_cifar_task_splits_preprocesses_and_augments_training_only(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-bin", n=8)
    task = images.cifar_task(
        "cifar10", image_size=48, valid_size=10, data_dir=str(tmp_path), verify=False
    )
    assert [len(task[k]) for k in ("train", "valid", "test")] == [30, 10, 8]
    x, y = task["valid"][0]
    assert x.shape == (3, 48, 48) and x.min() >= -1 and x.max() <= 1 and y.dtype == torch.long
    assert torch.equal(task["valid"][0][0], task["valid"][0][0])  # no augmentation
    assert task["train"].augmented and not task["valid"].augmented
    torch.manual_seed(0)
    views = {tuple(task["train"][0][0].flatten()[:50].tolist()) for _ in range(6)}
    assert len(views) > 1  # a random view per read


def test_a_tar_gz_download_is_verified_by_md5_before_anything_is_extracted(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("cifar-10-batches-bin/test_batch.bin", b"x" * 3073),
                           ("cifar-10-batches-bin/readme.html", b"hi")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive_path = tmp_path / "cifar.tar.gz"
    archive_path.write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    good = Archive(archive_path.as_uri(), None, md5, None, "cifar-10-batches-bin")
    root = download_archive(good, tmp_path / "cache")
    assert (root / "test_batch.bin").read_bytes() == b"x" * 3073
    bad = Archive(archive_path.as_uri(), None, "0" * 32, None, "cifar-10-batches-bin")
    with pytest.raises(ChecksumError, match="md5"):
        download_archive(bad, tmp_path / "other")
    assert not (tmp_path / "other" / "cifar-10-batches-bin").exists()


def test_offline_without_the_data_the_error_says_where_to_put_it(tmp_path, monkeypatch):
    from urllib.error import URLError

    from agora.data import download

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "urlopen", offline)
    monkeypatch.delenv("AGORA_DATA_DIR", raising=False)
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"CIFAR-10 is not in .* could not be downloaded from "
                       r"https://\S+ \(\[Errno -3\] .*Put the CIFAR-10 files .* in "
                       r"\$AGORA_DATA_DIR/cifar-10-batches-bin/"):  # fmt: skip
        images.read_cifar("cifar10", "train")
    assert [p.name for p in tmp_path.rglob("*")] == []  # nothing half-written


def test_an_image_folder_reads_class_folders(tmp_path):
    from PIL import Image

    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (40, 30), color).save(tmp_path / label / f"{i}.png")
    data = images.image_folder(tmp_path, images.Preprocess(size=16))
    assert len(data) == 4 and data.labels.tolist() == [0, 0, 1, 1]
    x, _ = data[3]
    assert x.shape == (3, 16, 16) and x[2].mean() > 0.9 and x[0].mean() < -0.9  # blue
    with pytest.raises(DataError, match=r"no \.jpeg, \.jpg or \.png image"):
        images.image_folder(tmp_path, images.Preprocess(), classes=["bird"])


def test_hidden_folders_are_not_classes_and_an_empty_class_folder_is_named(tmp_path):
    from PIL import Image

    for folder in ("cat", "dog", ".ipynb_checkpoints", "cat/.ipynb_checkpoints"):
        (tmp_path / folder).mkdir()
    for folder, name in (("cat", "0.png"), ("dog", "0.png"), (".ipynb_checkpoints", "0.png"),
                         ("dog", "._1.png")):  # fmt: skip
        Image.new("RGB", (8, 8)).save(tmp_path / folder / name)
    data = images.image_folder(tmp_path, images.Preprocess(size=8))
    assert data.labels.tolist() == [0, 1] and [p.name for p in data.images] == ["0.png"] * 2
    (tmp_path / "bird").mkdir()  # would take label 0 and make the dog 2
    with pytest.raises(DataError, match=r"bird: a class folder without a \.jpeg.* take label 0"):
        images.image_folder(tmp_path, images.Preprocess(size=8))
    given = images.image_folder(tmp_path, images.Preprocess(size=8), ["bird", "cat", "dog"])
    assert given.labels.tolist() == [1, 2]  # given classes fix the labels: bird may be empty


def test_an_unreadable_image_is_named_when_read(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    data = images.image_folder(tmp_path, images.Preprocess(size=8))
    with pytest.raises(DataError, match=r"cat/broken\.jpg: not a readable image"):
        data[0]


def test_augmented_training_data_switches_the_frozen_state_cache_off():
    from agora import FitConfig, Graph, fit
    from agora.models.toy import mlp_agent

    class Augmented(torch.utils.data.TensorDataset):
        augmented = True

    x, y = torch.randn(32, 4), torch.randn(32)
    graph = Graph([mlp_agent("teacher", 4, 8, frozen=True), mlp_agent("student", 4, 8)])
    graph.add_edge("student", "teacher")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(graph, Augmented(x, y), Augmented(x, y), FitConfig(epochs=1, progress=False))
    assert any("state cache is off" in str(w.message) for w in caught)
