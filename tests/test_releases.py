"""Run folders across releases: every run folder an earlier release wrote (tests/fixtures/runs/RELEASE/NAME,
made by tests/fixtures/make_runs.py) loads in this one and its verbs print what they printed then; loading
never takes a default of today (scratchlm/releases.py); a folder from a newer release is refused in one line.

Numbers in the recorded JSON are held to a relative 1e-4 (float32 sums end differently on other CPUs' kernels);
text (generated, translated) and every other value must be the same. A key this release adds to a verb's JSON
(a new metric) is allowed; a key it drops is not.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import typing
from pathlib import Path

import pytest

import scratchlm
from scratchlm import releases
from scratchlm.checkpoint import CONFIG, RunDir
from scratchlm.cli import main
from scratchlm.models import registry
from scratchlm.models.gpt import GPTConfig
from scratchlm.tasks import TASK_NAMES, get_task
from scratchlm.trainer import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
RUN_FOLDERS = sorted(p.parent for p in (FIXTURES / "runs").glob("*/*/verbs.json"))
FIELDS = FIXTURES / "config-fields.json"  # every config class's fields in this release
TOLERANCE = 1e-4


def same(got, expected, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(got, dict), where
        for key, value in expected.items():
            assert key in got, f"{where}: {key} is gone"
            same(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert got == pytest.approx(expected, rel=TOLERANCE, abs=1e-6) or (math.isnan(got) and math.isnan(expected)), \
            f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


@pytest.mark.parametrize("folder", RUN_FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_run_folder_of_an_earlier_release_gives_its_recorded_outputs(folder: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    run = shutil.copytree(folder, tmp_path / "run")  # the verbs may repair or draw into the folder
    for entry in json.loads((folder / "verbs.json").read_text()):
        code = main([arg.format(run=run, data=DATA) for arg in entry["command"]])
        out, err = capsys.readouterr()
        assert code == 0, err
        out = out.replace(str(run), "{run}").replace(str(DATA), "{data}")
        try:
            expected = json.loads(entry["stdout"])
        except json.JSONDecodeError:
            assert out == entry["stdout"], entry["command"]
        else:
            same(json.loads(out), expected, " ".join(entry["command"][:1]))


def test_the_fixtures_cover_every_model_family_and_task():
    latest = {p.name for p in RUN_FOLDERS if p.parent.name == scratchlm.__version__}
    families = {spec.model_cls.__module__ for spec in registry.SPECS}
    assert families <= {registry.get_spec(name).model_cls.__module__ for name in latest if name in registry.REGISTRY}
    assert {registry.get_spec(name).task for name in latest if name in registry.REGISTRY} == set(TASK_NAMES)
    assert {"gpt-char", "gpt-bpe"} <= latest
    assert {"rnn", "gpt"} <= {p.name for p in RUN_FOLDERS if p.parent.name == "0.1.0-2026-11-26"}
    size = sum(f.stat().st_size for f in (FIXTURES / "runs").rglob("*") if f.is_file())
    assert size < 10 * 2**20, f"the run fixtures weigh {size / 2**20:.1f} MB; keep them small"


def test_a_gpt_saved_before_positions_existed_is_rebuilt_with_learned_positions():
    """The 2026-11-26 release had no `positions`: its GPTs learned their position embeddings. Today's registry
    recipe says rotary, which rebuilt them as another model whose weights did not fit ('unexpected wpe.weight')."""
    old = FIXTURES / "runs" / "0.1.0-2026-11-26" / "gpt"
    saved = json.loads((old / CONFIG).read_text())["model"]["config"]
    assert "positions" not in saved and registry.get_spec("gpt").config["positions"] == "rotary"
    assert releases.complete(GPTConfig, saved, "old")["positions"] == "learned"
    run = scratchlm.load(old, device="cpu")
    assert run.model.config.positions == "learned" and hasattr(run.model, "wpe")


def test_registry_recipes_never_reach_a_saved_run(monkeypatch: pytest.MonkeyPatch):
    folder = FIXTURES / "runs" / scratchlm.__version__ / "gpt"
    before = scratchlm.load(folder, device="cpu").model.config
    spec = registry.get_spec("gpt")
    changed = dataclasses.replace(spec, config={**spec.config, "n_layer": 5, "positions": "rotary", "n_head": 2},
                                  built_in={})
    monkeypatch.setitem(registry.REGISTRY, "gpt", changed)
    assert scratchlm.load(folder, device="cpu").model.config == before


def config_classes() -> dict[str, type]:
    """Every config class a run's config.json records: the models', the tasks' data configs, the training's,
    and the dataclasses nested in them (a tokenizer's spec)."""
    found: dict[str, type] = {}

    def visit(cls: type) -> None:
        found[cls.__name__] = cls
        for hint in typing.get_type_hints(cls).values():
            if dataclasses.is_dataclass(hint):
                visit(hint)

    for cls in [TrainConfig, *(spec.config_cls for spec in registry.SPECS),
                *(get_task(name).data_config_cls for name in TASK_NAMES)]:
        visit(cls)
    return found


def test_every_config_field_is_known_to_the_table_of_releases():
    """A field added to a config must be added to scratchlm.releases.ADDED (with the value that reproduces the
    runs written before it) and to tests/fixtures/config-fields.json; a field removed must stay readable."""
    known = json.loads(FIELDS.read_text())
    classes = config_classes()
    assert sorted(known) == sorted(classes), "a config class came or went: update tests/fixtures/config-fields.json"
    for name, cls in classes.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        new = sorted(fields - set(known[name]))
        assert not new, (f"{name}.{', '.join(new)} is new: add it to scratchlm.releases.ADDED with the value runs "
                         f"written before it behave as, then to {FIELDS.name}")
        assert not set(known[name]) - fields, f"{name} lost a field that run folders hold: they must still load"
    for name, added in releases.ADDED.items():
        assert name in classes and set(added) <= {f.name for f in dataclasses.fields(classes[name])}, name


def test_every_old_fixture_config_completes_to_this_release():
    for folder in RUN_FOLDERS:
        config = json.loads((folder / CONFIG).read_text())
        task = get_task(config["task"])
        completed = releases.complete_run_config(config, str(folder), task.data_config_cls)
        spec = registry.get_spec(completed["model"]["name"])
        assert set(completed["model"]["config"]) == {f.name for f in dataclasses.fields(spec.config_cls)}
        assert set(completed["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_a_field_neither_saved_nor_in_the_table_is_refused():
    with pytest.raises(scratchlm.UserError, match=r"config.json has no GPTConfig.preset"):
        releases.complete(GPTConfig, {"vocab_size": 10}, "run")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"versions": {"scratchlm": "9.1.0"}}, f"written by scratchlm 9.1.0, newer than this scratchlm {scratchlm.__version__}"),
    ({"format": "scratchlm-run/7", "versions": {"scratchlm": "9.1.0"}},
     f"written by scratchlm 9.1.0 in the run format 'scratchlm-run/7'; this is scratchlm {scratchlm.__version__}"),
    ({"format": "fairseq"}, "not a scratchlm run directory"),
])
def test_a_folder_from_a_newer_release_is_one_line_naming_both(change: dict, fragment: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture):
    run = shutil.copytree(FIXTURES / "runs" / scratchlm.__version__ / "gpt", tmp_path / "run")
    config = {**json.loads((run / CONFIG).read_text()), **change}
    (run / CONFIG).write_text(json.dumps(config))
    for argv in (["generate", str(run)], ["eval", str(run)], ["train", "--resume", "--out", str(run), "--epochs", "3"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and fragment in err, err


def test_release_numbers_compare_as_numbers():
    from scratchlm.checkpoint import release_tuple

    assert release_tuple("0.10.0") > release_tuple("0.9.3") > release_tuple("0.9")
    assert release_tuple("0.3rc1") == (0, 3) and release_tuple("1.0.0.dev2") == (1, 0, 0)


def test_resuming_an_old_run_records_its_fields_and_this_release(tmp_path: Path):
    run = shutil.copytree(FIXTURES / "runs" / "0.1.0-2026-12-01" / "rnn", tmp_path / "run")
    assert "shuffle" not in json.loads((run / CONFIG).read_text())["train"]
    scratchlm.train(out=run, resume=True, epochs=3)
    config = RunDir(run).read_config()
    assert config["train"]["shuffle"] is False and config["train"]["cooldown"] == 0.0
    assert config["data"]["config"]["repair"] is False and config["data"]["config"]["tokenizer"]["phrases"] == 0
    assert config["versions"]["scratchlm"] == scratchlm.__version__


@pytest.mark.parametrize("folder", sorted(p.parent for p in (FIXTURES / "runs").glob("*/*/resume.json")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_run_started_by_an_earlier_release_resumes_as_it_did_there(folder: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture):
    """Its optimizer state, RNG states, data position and metric history restored: the rows of the third epoch are
    the ones the release that wrote the folder gave when it resumed it."""
    record = json.loads((folder / "resume.json").read_text())
    run = shutil.copytree(folder, tmp_path / "run")
    assert main([arg.format(run=run) for arg in record["command"]]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    same([{k: v for k, v in row.items() if k in record["metrics"][0]} for row in rows], record["metrics"], "metrics")
