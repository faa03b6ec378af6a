"""The packaged minilm-sst2 config, end to end on a slice."""

from __future__ import annotations

from tests.needs import needs, needs_sst2


@needs_sst2
@needs("text")
def test_the_packaged_config_runs_end_to_end_on_a_slice(tmp_path):
    from agora.cli import main

    argv = ["run", "minilm-sst2", "--out", str(tmp_path / "run"), "fit.epochs=1",
            "data.kwargs.train_size=24", "data.kwargs.valid_size=8", "data.kwargs.test_size=8",
            "data.kwargs.max_length=12"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    assert main(["eval", str(tmp_path / "run"), "--split", "test"]) == 0
