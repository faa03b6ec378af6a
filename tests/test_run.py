"""A config, run: its data and graph built, fitted into a folder, read back from it; its
command-line options; the teacher stores it reads.

(Elsewhere: the run folder's refusals in tests/test_folder.py, the baseline in
tests/test_baseline.py, refused code in a stored config in tests/test_trust.py.)
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from agora import Graph
from agora.checkpoint import save_model
from agora.config import ConfigError, build_data, load_config
from agora.folder import RunFolderError
from agora.models.toy import mlp_agent
from agora.run import (
    fill_stores,
    option_overrides,
    run_config,
    sample_batch,
    stored_config,
    stored_split,
)
from agora.train import FitResult

TINY = load_config("tiny", ["fit.epochs=1"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The packaged ``tiny`` config fitted for one epoch: its folder and results."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    return out, run_config(TINY, out)


def test_a_run_fits_into_its_folder_and_its_config_reads_back(tiny_run):
    out, results = tiny_run
    assert list(results) == [""] and isinstance(results[""], FitResult)
    assert "student/rmse" in results[""].metrics
    assert (out / "model" / "graph.json").is_file()
    assert stored_config(out) == TINY
    assert stored_config(out, ["fit.lr=0.1"]).fit.lr == 0.1


def test_a_stored_split_is_built_afresh_from_the_config(tiny_run):
    out, _ = tiny_run
    valid = stored_split(stored_config(out), "valid")
    expected = build_data(TINY)["valid"]
    assert len(valid) == len(expected) and torch.equal(valid[0][0], expected[0][0])
    with pytest.raises(ConfigError, match=r"tiny\.yaml: data\.factory: the data has no 'dev' "
                       r"split; it has \['test', 'train', 'valid'\]"):  # fmt: skip
        stored_split(TINY, "dev")


def test_a_model_saved_outside_agora_run_has_no_config_to_read(tmp_path):
    graph = Graph([mlp_agent("student", 4, 8)], message_dim=8).build(torch.randn(2, 4))
    save_model(tmp_path / "model", graph)
    with pytest.raises(ConfigError) as caught:
        stored_config(tmp_path)
    assert caught.value.source == str(tmp_path / "model" / "graph.json")
    assert "no run config under 'config'" in str(caught.value)
    assert "call agora.train.evaluate" in str(caught.value)


def test_a_graph_that_cannot_read_the_data_fails_before_anything_is_written(tmp_path):
    config = load_config("tiny", ["fit.epochs=1", "graph.agents.1.kwargs.d_in=5"])
    with pytest.raises(ConfigError) as caught:
        run_config(config, tmp_path / "run")
    assert caught.value.key == "graph" and caught.value.source == TINY.source
    assert "Agent 'student' cannot read this input (x [8, 8] float32)" in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_configs_threads_hold_for_the_whole_run_and_are_restored(tmp_path, monkeypatch, request):
    import agora.train

    threads = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    torch.set_num_threads(2)  # not the config's count, so that the config's shows

    seen, fit = [], agora.train.fit
    monkeypatch.setattr(agora.train, "fit", lambda *a, **k: seen.append(torch.get_num_threads())
                        or fit(*a, **k))  # fmt: skip
    before = torch.get_num_threads()
    config = load_config("tiny", ["fit.epochs=1", "threads=1", "baseline=true"])
    run_config(config, tmp_path / "run")
    assert seen == [1, 1] and torch.get_num_threads() == before  # the run and its baseline
    # the threads change how fast a run goes, not what it is: with another count, the folder
    # still holds a run of this configuration
    with pytest.raises(RunFolderError, match="holds a finished run of this configuration"):
        run_config(load_config("tiny", ["fit.epochs=1", "baseline=true"]), tmp_path / "run")
    # `agora eval` and `agora cka` rebuild the stored config: its threads hold for them too
    import agora.analysis.cka
    from agora.cli import main

    seen.clear()
    evaluate, states = agora.train.evaluate, agora.analysis.cka.states
    monkeypatch.setattr(agora.train, "evaluate", lambda *a, **k: seen.append(
        torch.get_num_threads()) or evaluate(*a, **k))  # fmt: skip
    monkeypatch.setattr(agora.analysis.cka, "states", lambda *a, **k: seen.append(
        torch.get_num_threads()) or states(*a, **k))  # fmt: skip
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert main(["cka", str(tmp_path / "run"), "--groups", "none",
                 "--out", str(tmp_path / "cka.png")]) == 0  # fmt: skip
    assert seen == [1, 1] and torch.get_num_threads() == before  # eval, then cka


def test_threads_must_be_a_positive_number():
    with pytest.raises(ConfigError, match=r"threads: must be a number of threads >= 1"):
        load_config("tiny", ["threads=0"])


# ---------------------------------------------------------------------------------------------
# Command-line options


def test_options_become_overrides_of_every_key_they_stand_for():
    config = load_config(
        "tiny", ["options={seed: data.kwargs.seed, both: [data.kwargs.seed, fit.lr]}"]
    )
    assert option_overrides(config, []) == []
    assert option_overrides(config, [("seed", "3"), ("both", "null")]) == [
        'data.kwargs.seed="3"',  # a string as given: the config's own types convert it
        'data.kwargs.seed="null"',
        'fit.lr="null"',
    ]


def test_an_unknown_option_lists_those_the_config_offers():
    config = load_config("tiny", ["options={seed: data.kwargs.seed}"])
    with pytest.raises(ConfigError) as caught:
        option_overrides(config, [("genre", "War")])
    assert caught.value.key == "options" and caught.value.source == config.source
    assert str(caught.value).endswith(
        "unknown option --genre; this config offers: --seed (= data.kwargs.seed)"
    )
    with pytest.raises(ConfigError, match=r"this config offers: none$"):
        option_overrides(TINY, [("genre", "War")])


# ---------------------------------------------------------------------------------------------
# The batch codecs are built on, and the teacher stores


def test_sample_batch_is_the_inputs_of_the_first_rows():
    x = torch.arange(40.0).reshape(20, 2)
    assert torch.equal(sample_batch(TensorDataset(x, -x[:, 0]), rows=3), x[:3])
    per_learner = {"b": TensorDataset(x + 100, x[:, 0]), "a": TensorDataset(x, x[:, 0])}
    assert torch.equal(sample_batch(per_learner, rows=2), x[:2] + 100)  # the first learner's
    loader = DataLoader(TensorDataset(x, x), batch_size=5)
    assert sample_batch(loader, rows=3).shape == (5, 2)  # a loader batches as it does


def test_fill_stores_fills_each_frozen_agents_store_once(tmp_path):
    config = load_config("tiny-transfer")
    stores = fill_stores(config, root=str(tmp_path), progress=False)
    assert {key: store.examples for key, store in stores.items()} == {
        ("teacher", "train"): 384,
        ("teacher", "transfer"): 2048,
    }
    paths = sorted(tmp_path.iterdir())
    stamps = [p.stat().st_mtime_ns for p in paths]
    again = fill_stores(config, root=str(tmp_path), progress=False)
    assert {key: store.path for key, store in again.items()} == {
        key: store.path for key, store in stores.items()
    }
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.iterdir())] == stamps
