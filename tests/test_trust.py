"""The trust boundary: code a run folder names is refused before it is imported, whatever the
spelling and wherever it sits, by agora.load, agora eval and agora cka (issue 24, item 1)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import agora
from agora.checkpoint import CheckpointError
from agora.cli import main
from agora.config import ConfigError, config_from_dict, load_config, packaged_configs
from agora.run import run_config
from agora.trust import UntrustedCodeError, import_object, is_own, trusting


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of the packaged ``tiny`` config (one epoch): agora's own code only."""
    out = tmp_path_factory.mktemp("trust") / "tiny"
    run_config(load_config("tiny", ["fit.epochs=1"]), out)
    return out


# each hostile edit: what a run folder could name, in the graph it stores or in its run config
def _shell(marker: Path, spelling: str = "subprocess.run"):
    def edit(section: dict) -> None:
        section["data"] = {
            "factory": spelling,
            "kwargs": {"args": f"touch {marker}", "shell": True},
        }

    return edit


def _write_text(marker: Path):
    def edit(section: dict) -> None:
        kwargs = {"path": str(marker), "text": "written"}
        section["data"] = {"factory": "agora.checkpoint:_write_text", "kwargs": kwargs}

    return edit


def _doctest(marker: Path):
    def edit(section: dict) -> None:
        agent = section["graph"]["agents"][0]
        agent["factory"] = "doctest.run_docstring_examples"
        agent["kwargs"] = {"f": f">>> open({str(marker)!r}, 'w').close()", "globs": {}}

    return edit


def _protocol(marker: Path):
    def edit(section: dict) -> None:
        section["graph"]["edges"][0]["protocols"] = ["this:Talk"]

    return edit


def _graph_codec(marker: Path):
    def edit(section: dict) -> None:
        section["graph"]["codec"] = "this:x"

    return edit


def _aggregation(marker: Path):
    def edit(section: dict) -> None:
        section["graph"]["edges"][0]["protocols"] = [{"talk": {"aggregation": "this:x"}}]

    return edit


def _dotted_factory(marker: Path):
    def edit(section: dict) -> None:
        section["graph"]["agents"][1]["factory"] = "this.x"

    return edit


CASES = {
    "shell data factory a.b.c": (_shell, ("config",)),
    "shell data factory a.b:c": (lambda m: _shell(m, "subprocess:run"), ("config",)),
    "agora helper _write_text": (_write_text, ("config",)),
    "doctest agent factory": (_doctest, ("graph", "config")),
    "protocol this:Talk": (_protocol, ("graph", "config")),
    "graph codec this:x": (_graph_codec, ("graph", "config")),
    "aggregation this:x": (_aggregation, ("graph", "config")),
    "agent factory this.x": (_dotted_factory, ("graph", "config")),
}


def _plant(run: Path, edit, where: str) -> None:
    """Apply ``edit`` to the stored graph (``graph``) or run config (``config``) of every model
    folder of ``run``, as a hostile folder would (its digests made to match)."""
    from agora.checkpoint import read_document, write_document

    for graph_json in run.rglob("graph.json"):
        document = read_document(graph_json.parent)
        edit(document if where == "graph" else document["config"])
        write_document(graph_json.parent, document)


def _entry_points(run: Path, tmp_path: Path):
    def load():
        agora.load(run)

    def cli(*command: str):
        def call():
            with pytest.raises(SystemExit) as exit:
                main([*command])
            assert exit.value.code == 2

        return call

    return {
        "agora.load": load,
        "agora eval": cli("eval", str(run)),
        "agora cka": cli("cka", str(run), "--out", str(tmp_path / "cka.png")),
    }


@pytest.mark.parametrize(
    ("case", "where"), [(c, w) for c, (_, places) in CASES.items() for w in places]
)
def test_code_a_run_folder_names_is_refused_before_it_is_imported(
    finished_run, tmp_path, capsys, case, where
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "ran"
    make_edit, _ = CASES[case]
    _plant(run, make_edit(marker), where)
    sys.modules.pop("this", None)
    for name, call in _entry_points(run, tmp_path).items():
        try:
            call()
        except CheckpointError as error:  # agora.load: names the file and the way to trust it
            assert "graph.json: " in str(error) and "trust_code=True" in str(error), name
        if name != "agora.load":
            said = capsys.readouterr().err
            assert "graph.json" in said and "--trust-code" in said, (name, said)
        assert not marker.exists(), f"{name} ran the code of {case!r}"
        assert "this" not in sys.modules, f"{name} imported the module of {case!r}"


def test_a_run_of_agoras_own_code_loads_without_trust_and_trust_runs_the_rest(
    finished_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["eval", str(run)]) == 0  # a packaged config's run: agora's own constructors
    capsys.readouterr()
    marker = tmp_path / "ran"
    _plant(run, _doctest(marker), "graph")
    with pytest.raises(CheckpointError, match=r"factory: 'doctest\.run_docstring_examples' is not"):
        agora.load(run)
    assert not marker.exists()
    with pytest.raises(Exception, match="returned NoneType"):  # trusted: it runs (and fails)
        agora.load(run, trust_code=True)
    assert marker.exists()  # the refusal above was the rule, not a test that cannot fail


@pytest.mark.parametrize("name", packaged_configs())
def test_every_packaged_config_names_only_agoras_own_constructors(name):
    data = load_config(name).to_dict()
    with trusting(False):
        config_from_dict(data, source=f"{name}.yaml")  # imports every factory it names


def test_the_rule_is_one_function_for_every_spelling():
    with trusting(False):
        for path in ("subprocess.run", "subprocess:run", "this:x", "agora.checkpoint:_write_text",
                     "agora.checkpoint._write_text", "agora.models.recommender:write_teacher"):  # fmt: skip
            with pytest.raises(UntrustedCodeError, match=rf"^{path!r} is not agora's own code"):
                import_object(path, "factory")
        assert import_object("agora.models.toy.mlp_agent") is import_object(
            "agora.models.toy:mlp_agent"
        )
        assert import_object("agora.protocols.talk:Talk").name == "talk"
    assert not is_own("agora.protocols.base:Protocol")  # a base class is not a protocol
    from agora.protocols import PROTOCOLS

    for cls in PROTOCOLS.values():  # every protocol of agora's own may be named by path
        if cls.__module__.startswith("agora."):
            assert is_own(f"{cls.__module__}:{cls.__name__}"), cls
    with trusting(True):
        assert callable(import_object("subprocess:run"))  # trusted: imported, not called


def test_a_stored_config_names_the_key_of_the_code_it_refuses(finished_run, tmp_path):
    from agora.run import stored_config

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _plant(run, _doctest(tmp_path / "ran"), "config")
    with pytest.raises(
        ConfigError, match=r"graph\.json: graph\.agents\.0\.factory: .*--trust-code"
    ):
        stored_config(run)
    document = json.loads((run / "model" / "graph.json").read_text())
    assert document["config"]["graph"]["agents"][0]["factory"] == "doctest.run_docstring_examples"
