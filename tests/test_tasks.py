"""The task seam: the layers above the models hold no task of their own, language modelling behind the
seam behaves as before (a run folder written by scratchlm 0.1.0 still loads, evaluates, generates and
resumes), and the defects found in review stay fixed."""

from __future__ import annotations

import hashlib
import importlib
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

import scratchlm
from scratchlm import api
from scratchlm import steppers as steppers_module
from scratchlm.checkpoint import STATE, TOKENIZER, RunDir
from scratchlm.data.tokenize import EOS
from scratchlm.errors import UserError
from scratchlm.muon import MuonAdamW
from scratchlm.tasks import TASK_NAMES, get_task
from scratchlm.tasks.lm import LMRun

SRC = Path(__file__).parents[1] / "src" / "scratchlm"
FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "0.1.0-2026-12-01" / "rnn"


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("module", ["trainer.py", "api.py", "run.py", "race.py", "cli/__init__.py"])
def test_the_shared_layers_name_no_task(module: str):
    """No task literal and no task's class above the seam: a new task joins without editing these."""
    source = (SRC / module).read_text()
    for name in TASK_NAMES:
        assert not re.search(rf"""["']{name}["']""", source), f"{module} names the {name} task"
    assert "LanguageModelling" not in source and "LMRun" not in source and "tasks.lm" not in source


ABOVE_THE_MODELS = ["trainer.py", "steppers.py", "api.py", "run.py", "race.py", "folds.py", "generate.py", "decode.py",
                    *(f"{folder}/{p.name}" for folder in ("tasks", "cli") for p in sorted((SRC / folder).glob("*.py")))]


@pytest.mark.parametrize("module", ABOVE_THE_MODELS)
def test_the_layers_above_the_models_ask_them_and_never_probe(module: str):
    """What these layers use of a model is declared on its base (models/base.py) and called unconditionally:
    `hasattr(model, ...)` or `getattr(model.config, ...)` here would be an ability nobody wrote down."""
    source = (SRC / module).read_text()
    probes = re.findall(r"(?:hasattr|getattr)\(\s*(?:self\.)?(?:model|net|body|module|spec\.model_cls)\b[^)]*\)", source)
    assert not probes, f"{module} probes a model: {probes}"


def test_every_task_fills_the_seam():
    for name in TASK_NAMES:
        task = get_task(name)
        assert task.name == name and task.metrics[0] == "loss" and task.headline in task.metrics
        assert issubclass(task.run_class, scratchlm.Run)


def test_a_run_written_by_0_1_0_loads_evaluates_and_generates_as_it_did(tmp_path: Path):
    run = scratchlm.load(shutil.copytree(FIXTURE, tmp_path / "run"), device="cpu")
    assert isinstance(run, LMRun)
    # The figures `scratchlm eval` and `generate` printed for this folder before the task seam. The loss is a
    # float32 sum, whose last bits follow the CPU's kernels: another machine gave 1.8808185358842213.
    result = run.eval()
    assert result["loss"] == pytest.approx(1.8808185656865437, rel=1e-6)
    assert result["accuracy"] == pytest.approx(0.4400227864583333, rel=1e-12) and result["tokens"] == 12288
    assert run.generate("one . two .", tokens=12) == (" four thousand two hundred thirty . two thousand four "
                                                      "hundred ninety .")


def test_a_run_written_by_0_1_0_resumes(tmp_path: Path):
    out = shutil.copytree(FIXTURE, tmp_path / "run")
    run = scratchlm.train(out=out, resume=True, epochs=3)
    history = run.metrics
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[:2] == RunDir(FIXTURE).read_metrics()  # what it had is kept as it was


def test_resume_without_its_tokenizer_is_refused_before_the_first_step(tmp_path: Path):
    """It used to train a whole epoch, update the checkpoints and metrics, and only then fail."""
    out = shutil.copytree(FIXTURE, tmp_path / "run")
    (out / TOKENIZER).unlink()
    before = tree_hashes(out)
    with pytest.raises(UserError, match="tokenizer.json is missing"):
        scratchlm.train(out=out, resume=True, epochs=3)
    assert tree_hashes(out) == before


def test_lr_find_steps_with_the_trainers_optimizer(monkeypatch: pytest.MonkeyPatch):
    """The sweep steps as training does: the run's optimizer (Muon for gpt), its weight-decay groups,
    its clipping."""
    built, clipped = [], []
    real_make, real_clip = steppers_module.make_optimizer, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(steppers_module, "make_optimizer", lambda *a: built.append(real_make(*a)[0]) or real_make(*a))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clipped.append(1) or real_clip(*a, **k))
    result = scratchlm.lr_find("human-numbers", "gpt", plot=None, steps=12, batch_size=4,
                               settings={"n_layer": 1, "n_embd": 16, "n_head": 2})
    assert len(built) == 1 and isinstance(built[0], MuonAdamW)  # gpt's recipe: muon
    assert len(clipped) == len(result["lrs"]) or len(clipped) == len(result["lrs"]) + 1  # its grad_clip 1.0
    adamw = built[0].adamw
    assert [group["weight_decay"] for group in adamw.param_groups] == [0.5, 0.0]  # none on biases and gains


def test_eval_computes_as_training_did(tmp_path: Path, cache_dir: Path):
    """In the run's precision (bf16 here) and from the run's token cache: its numbers are metrics.jsonl's."""
    own_cache = tmp_path / "own-cache"
    run = scratchlm.train("human-numbers", "rnn", tmp_path / "run", epochs=2, precision="bf16", cache_dir=own_cache)
    assert run.config["resolved"]["precision"] == "bf16"
    best = min(run.metrics, key=lambda row: row["valid_loss"])
    assert run.eval()["loss"] == pytest.approx(best["valid_loss"], rel=1e-12)
    assert not cache_dir.exists()  # nothing written to the default cache


def test_generation_stops_at_eos_unless_asked_to_go_on(hn_run: Path):
    run = scratchlm.load(hn_run, device="cpu")
    with torch.no_grad():
        run.model.h_o.bias[EOS] = 1e4  # the model now always says <eos>
    assert run.generate("one .", tokens=20) == ""
    assert run.generate("one .", tokens=5, ignore_eos=True).split() == ["<eos>"] * 5


def test_a_time_bounded_run_is_evaluated_at_each_tenth(tmp_path: Path):
    run = scratchlm.train("human-numbers", "rnn", tmp_path / "run", time=3.0)
    assert 8 <= len(run.metrics) <= 11
    assert all(row["seconds"] <= 3.5 for row in run.metrics)  # evaluations do not count against the budget


def test_a_slow_evaluation_waits_for_as_much_training(tmp_path: Path):
    """Evaluations that take a second each, in a 2-second budget: not one at every tenth, but one after
    each second of training at most (and the last), so the run spends at most about half its time evaluating."""
    run = scratchlm.train("human-numbers", "rnn", tmp_path / "run", time=2.0,
                          on_evaluation=lambda row: time.sleep(1.0))
    seconds = [row["seconds"] for row in run.metrics]
    assert 2 <= len(seconds) <= 4, seconds
    assert all(later - earlier >= 0.95 for earlier, later in zip(seconds[:-2], seconds[1:-1], strict=True)), seconds


def test_the_run_says_first_what_it_will_use(tmp_path: Path, capsys: pytest.CaptureFixture):
    scratchlm.train("human-numbers", "gpt", tmp_path / "run", epochs=1, batch_size=32, progress=True,
                    settings={"n_layer": 1, "n_embd": 16, "n_head": 2})
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("gpt: ") and "muon lr 0.006 onecycle (warmup 0.02), weight decay 0.5, clip 1" in first
    assert "batch 32 x 64; 1 epochs; cpu fp32" in first


def test_the_progress_of_a_time_bounded_run_counts_seconds_against_the_budget(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture,
                                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is drawn on a terminal only
    scratchlm.train("human-numbers", "rnn", tmp_path / "run", time=2.0, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"\d+/2 s \[", err), err[-500:]


def test_ladder_takes_the_shared_training_options(tmp_path: Path):
    importlib.import_module("scratchlm.race")
    assert callable(scratchlm.ladder)  # the function, even once its module is imported
    rows = scratchlm.ladder(models=["rnn"], out=tmp_path / "ladder", epochs=2, eval_every=10, patience=50)
    history = RunDir(tmp_path / "ladder" / "rnn").read_metrics()
    assert [row["step"] for row in history][:2] == [10, 20] and rows[0]["rung"] == "rnn"


def test_identical_curves_are_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from scratchlm import plots

    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.update(labels=[t.get_text() for t in
                                                                              fig.axes[0].get_legend().get_texts()]))
    plots.plot_curves({"mlp3": ([1, 2], [0.4, 0.5]), "rnn3": ([1.1, 2.2], [0.4, 0.5]), "rnn": ([1], [0.6])},
                      tmp_path / "x.png", "s", "accuracy", "t")
    assert drawn["labels"] == ["mlp3", "rnn3 (= mlp3)", "rnn"]


def test_a_refused_resume_leaves_the_state_as_it_was(tmp_path: Path):
    out = shutil.copytree(FIXTURE, tmp_path / "run")
    before = (out / STATE).read_bytes()
    with pytest.raises(UserError):
        api.train(out=out, resume=True, seed=5)
    assert (out / STATE).read_bytes() == before


def test_the_metrics_table_is_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture):
    """With the progress display the rows go to stderr as they come; --quiet prints them at the end."""
    from scratchlm.cli import main

    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert sum(line.startswith("1.00 ") or line.startswith("2.00 ") for line in err.splitlines()) == 2
    assert not any(line[:1].isdigit() for line in out.splitlines())
    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert sum(line.startswith(("1.00 ", "2.00 ")) for line in out.splitlines()) == 2 and err == ""


def test_the_ladder_names_each_rung_and_fits_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture):
    from scratchlm.cli import main

    assert main(["ladder", "--models", "mlp3,rnn3", "--epochs", "1", "--out", str(tmp_path / "l")]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("[")] == ["[1/2] mlp3", "[2/2] rnn3"]
    table = out.split("\n\n")[0].splitlines()
    assert table[0].split() == ["rung", "parameters", "accuracy", "perplexity", "bpc", "seconds", "tokens/s"]
    assert max(map(len, table)) <= 100


def test_the_fields_a_task_fills_from_the_data_are_never_settings():
    from scratchlm.models.registry import DATA_FIELDS, REGISTRY, settings_of

    for name in TASK_NAMES:
        assert set(get_task(name).dims) <= set(DATA_FIELDS)
    for spec in REGISTRY.values():
        assert not {setting for setting, _, _ in settings_of(spec)} & set(DATA_FIELDS)
