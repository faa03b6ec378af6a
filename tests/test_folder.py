"""The run folder's rules: resume only an unfinished run of the same config, one writer."""

import json
import os
import re
import signal
import time

import pytest

from agora.cli import main
from agora.config import load_config
from agora.folder import Lock, RunFolderError, Terminated, claim, differences, writing
from agora.run import run_config
from agora.train import fit
from tests.helpers import fit_data, quick_fit, talk_graph


def test_a_changed_config_is_refused_naming_what_changed(tmp_path, capsys):
    out = str(tmp_path / "run")
    rounds = "graph.edges.0.protocols.0.talk.rounds"
    assert main(["run", "tiny", "--out", out, "fit.epochs=1", f"{rounds}=2"]) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit) as caught:
        main(["run", "tiny", "--out", out, "fit.epochs=1", f"{rounds}=0"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"holds a run of another configuration ({rounds}: 2 -> 0)" in err
    with pytest.raises(SystemExit):  # a new learning rate on a "resume" is a new config too
        main(["run", "tiny", "--out", out, "fit.epochs=1", "fit.lr=0.1"])
    assert "fit.lr: 0.003 -> 0.1" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before  # nothing written
    graph = json.loads((tmp_path / "run" / "model" / "graph.json").read_text())
    talk = graph["graph"]["edges"][0]["protocols"][0]["talk"]
    assert talk["rounds"] == 2  # the config that trained the weights


def test_a_finished_run_is_refused_and_overwrite_trains_afresh(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "tiny", "--out", out, "fit.epochs=1"]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    with pytest.raises(SystemExit):
        main(["run", "tiny", "--out", out, "fit.epochs=1"])
    err = capsys.readouterr().err
    assert "holds a finished run of this configuration" in err
    assert "or --overwrite to train it again" in err and "overwrite=True" not in err
    assert main(["run", "tiny", "--out", out, "--overwrite", "fit.epochs=1", "seed=3"]) == 0
    again = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(again) == len(lines)  # afresh: no line of the old run is left
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["finished"] and record["configuration"]["run"]["seed"] == 3


def test_an_unfinished_run_of_the_same_config_resumes(tmp_path):
    train, valid = fit_data()
    config = quick_fit(epochs=1)
    configuration = {"graph": talk_graph().to_dict(), "fit": {"epochs": 1}}
    assert claim(tmp_path, configuration) is False  # a fresh folder
    assert claim(tmp_path, configuration) is True  # unfinished, same configuration: resume
    with pytest.raises(RunFolderError, match=r"fit\.epochs: 1 -> 2"):
        claim(tmp_path, {**configuration, "fit": {"epochs": 2}})
    fit(talk_graph(), train, valid, config, out_dir=tmp_path / "fit")
    with pytest.raises(RunFolderError, match="finished") as refused:
        fit(talk_graph(), train, valid, config, out_dir=tmp_path / "fit")
    assert str(refused.value).endswith("or resume=False to train it again")  # fit's own words
    fit(talk_graph(), train, valid, config, out_dir=tmp_path / "fit", resume=False)


def test_a_refusal_tells_each_caller_its_own_way_to_start_afresh(tmp_path):
    # issue 23: fit() was told "--overwrite (overwrite=True)", an argument it does not have
    config = load_config("tiny", ["fit.epochs=1"])
    run_config(config, tmp_path)
    with pytest.raises(RunFolderError, match="or overwrite=True to train it again"):
        run_config(config, tmp_path)
    with pytest.raises(RunFolderError, match=r"another configuration.*or overwrite=True to train"):
        run_config(load_config("tiny", ["fit.epochs=2"]), tmp_path)


def test_one_writer_at_a_time_and_a_dead_writers_lock_is_taken_over(tmp_path):
    train, valid = fit_data()
    held = pytest.raises(RunFolderError, match=f"written by process {os.getpid()}")
    with Lock(tmp_path), held:
        fit(talk_graph(), train, valid, quick_fit(epochs=1), out_dir=tmp_path)
    assert not (tmp_path / ".lock").exists()  # released
    dead = 2**22 + 12345  # no such process
    (tmp_path / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": dead}))
    fit(talk_graph(), train, valid, quick_fit(epochs=1), out_dir=tmp_path)
    assert not (tmp_path / ".lock").exists()


def test_a_finished_run_of_another_config_staged_or_not_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    chain = ["run", "tiny-chain", "--out", str(out), "stages.0.epochs=1", "stages.1.epochs=1"]
    assert main(["run", "tiny", "--out", str(out), "fit.epochs=1"]) == 0
    model = (out / "model" / "graph.json").read_text()
    with pytest.raises(SystemExit) as caught:
        main(chain)
    assert caught.value.code == 2
    assert "holds a run of another configuration" in capsys.readouterr().err
    assert (out / "model" / "graph.json").read_text() == model and not (out / "stages").exists()
    assert main([*chain, "--overwrite"]) == 0  # afresh: the staged run replaces the whole folder
    assert json.loads((out / "run.json").read_text())["configuration"]["stages"]
    with pytest.raises(SystemExit):
        main(["run", "tiny", "--out", str(out), "fit.epochs=1"])  # and the other way round
    assert "holds a run of another configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(chain)
    err = capsys.readouterr().err
    assert "holds a finished run of this configuration" in err
    assert "or --overwrite to train it again" in err and "overwrite=True" not in err


@pytest.mark.parametrize("content, said", [
    (b"", "empty"),
    (b"\xff\xfe", "unreadable"),
    (b'{"pid": 12}', "unreadable"),
])  # fmt: skip
def test_an_empty_or_unreadable_lock_is_named_and_overwrite_breaks_it(tmp_path, content, said):
    train, valid = fit_data()
    (tmp_path / ".lock").write_bytes(content)
    with pytest.raises(RunFolderError, match=rf"\.lock: the lock file is {said}.*Remove it if no "
                       r"run is writing.*\(resume=False also breaks it"):  # fmt: skip
        fit(talk_graph(), train, valid, quick_fit(epochs=1), out_dir=tmp_path)
    fit(talk_graph(), train, valid, quick_fit(epochs=1), out_dir=tmp_path, resume=False)
    assert not (tmp_path / ".lock").exists()
    live = {"host": os.uname().nodename, "pid": os.getpid()}  # a live owner is never broken
    (tmp_path / ".lock").write_text(json.dumps(live))
    with pytest.raises(RunFolderError, match=f"written by process {os.getpid()}"):
        fit(talk_graph(), train, valid, quick_fit(epochs=1), out_dir=tmp_path, resume=False)


def test_sigterm_unwinds_a_run_holding_its_folder_and_the_old_handler_comes_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, writing(tmp_path, {"fit": {"lr": 0.1}}):
        assert (tmp_path / ".lock").exists()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
    assert caught.value.code == 143 and not (tmp_path / ".lock").exists()
    assert json.loads((tmp_path / "run.json").read_text())["finished"] is False
    assert signal.getsignal(signal.SIGTERM) is before


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as caught:
        main(["run", "tiny", "--out", str(tmp_path / "file"), "fit.epochs=1"])
    assert caught.value.code == 2
    assert "is a file; a run needs a folder" in capsys.readouterr().err


def test_differences_name_at_most_a_few_keys():
    old = {"a": list(range(8))}
    said = differences(old, {"a": [x + 1 for x in range(8)]}, most=2)
    assert said == ["a.0: 0 -> 1", "a.1: 1 -> 2", "and 6 more"]


def test_a_bit_flipped_in_run_json_or_a_byte_not_utf8_is_named(tmp_path):
    configuration = {"graph": talk_graph().to_dict(), "fit": {"epochs": 1, "lr": 0.001}}
    assert claim(tmp_path, configuration) is False
    record = tmp_path / "run.json"
    raw = bytearray(record.read_bytes())
    raw[raw.index(b'"finished": false') + 12] ^= 1  # false -> galse: not JSON
    record.write_bytes(bytes(raw))
    with pytest.raises(RunFolderError, match=r"run\.json: not valid JSON .*--overwrite"):
        claim(tmp_path, configuration)
    raw[raw.index(b'"finished": galse') + 12] ^= 1
    raw[raw.index(b'"lr": 0.001') + 10] ^= 2  # 0.001 -> 0.003: still JSON, another config
    record.write_bytes(bytes(raw))
    with pytest.raises(RunFolderError, match=r"run\.json: checksum mismatch: it changed since"):
        claim(tmp_path, configuration)
    record.write_bytes(b"\xfe" + bytes(raw))
    with pytest.raises(RunFolderError, match=r"run\.json: not UTF-8 text \(byte 0xfe on line 1\)"):
        claim(tmp_path, configuration)


def test_a_lock_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / ".lock").write_bytes(b'{"host": "\xff"}')
    lock = re.escape(str(tmp_path / ".lock"))
    with pytest.raises(RunFolderError, match=rf"{lock}: the lock file is unreadable \('utf-8'"):
        Lock(tmp_path).acquire()
