"""The run directory: atomic writes, safe state loading, recovery from a kill, and the lock."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from scratchlm.checkpoint import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    PREV_LAST,
    PREV_STATE,
    STATE,
    RunDir,
    load_state,
    load_weights,
    pair_ok,
    read_weights,
    save_state,
    save_weights,
    weights_step,
)
from scratchlm.errors import UserError
from scratchlm.files import atomic_write, atomic_write_json
from scratchlm.run import Run


def test_atomic_write_leaves_no_temp_file(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    atomic_write(path, b"first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
    atomic_write_json(tmp_path / "c.json", {"a": 1})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["c.json", "metrics.jsonl"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "config.json"
    atomic_write(path, b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["config.json"]  # and its temporary file is gone


class Payload:
    """Unpickling this runs code: it writes a marker file (what a hostile state.pt could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_a_state_file_that_runs_code_is_refused(tmp_path: Path):
    marker = tmp_path / "marker"
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    torch.save({"step": 1, "evil": Payload(marker)}, run.file(STATE))

    with pytest.raises(UserError, match="cannot be loaded safely") as e:
        run.load_state()
    assert str(run.file(STATE)) in str(e.value)
    run.recover()  # recovery reads state.pt too, and leaves it for the loader to refuse
    with pytest.raises(UserError, match="cannot be loaded safely"):
        run.load_state()
    assert not marker.exists()

    # The file is live: the unsafe loader would have run it. This is what weights_only=True prevents.
    torch.load(run.file(STATE), weights_only=False)
    assert marker.read_text() == "pwned"


def test_a_pending_state_that_runs_code_is_thrown_away_unrun(tmp_path: Path):
    marker = tmp_path / "marker"
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    torch.save({"step": 1, "evil": Payload(marker)}, run.file(STATE + ".tmp"))
    run.recover()
    assert not run.file(STATE + ".tmp").exists()
    assert not marker.exists()


def test_state_round_trips_tensors_and_plain_values(tmp_path: Path):
    state = {"step": 3, "carry": torch.ones(2, 4), "history": [{"valid_loss": 1.5}], "best_loss": float("inf"),
             "rng": {"torch": torch.get_rng_state(), "python": "(3, (1, 2), None)"}}
    save_state(tmp_path / "state.pt", state)
    again = load_state(tmp_path / "state.pt")
    assert again["step"] == 3 and torch.equal(again["carry"], state["carry"]) and again["history"] == state["history"]


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def checkpoint(run: RunDir, step: int, best: bool = True) -> nn.Module:
    model = tiny_model(step)
    run.save_checkpoint(model, {"step": step, "best_step": step if best else 0}, is_best=best)
    return model


def same_weights(path: Path, model: nn.Module) -> bool:
    other = tiny_model(999)
    load_weights(path, other)
    return all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values(), strict=True))


def test_save_checkpoint_writes_a_consistent_pair(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    model = checkpoint(run, 5)
    assert weights_step(run.file(LAST)) == 5 and weights_step(run.file(BEST)) == 5
    assert run.load_state()["step"] == 5
    assert same_weights(run.file(BEST), model)
    later = checkpoint(run, 6, best=False)
    assert weights_step(run.file(LAST)) == 6 and weights_step(run.file(BEST)) == 5
    assert same_weights(run.file(LAST), later) and same_weights(run.file(BEST), model)
    assert sorted(p.name for p in run.path.iterdir()) == sorted([LAST, BEST, STATE, PREV_LAST, PREV_STATE])
    assert pair_ok(run.file(PREV_LAST), run.file(PREV_STATE)) and weights_step(run.file(PREV_LAST)) == 5


def test_recover_rolls_a_complete_pending_state_forward(tmp_path: Path):
    """Killed between renaming the weights and renaming the state: the pending state matches the weights."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    checkpoint(run, 5)
    model = tiny_model(7)
    save_state(run.file(STATE + ".tmp"), {"step": 7, "best_step": 7})
    save_weights(run.file(LAST), model, 7)

    run.recover()
    assert not run.file(STATE + ".tmp").exists()
    assert run.load_state()["step"] == 7
    assert weights_step(run.file(BEST)) == 7 and same_weights(run.file(BEST), model)  # the best was promoted too


def test_recover_deletes_a_pending_state_that_does_not_match(tmp_path: Path):
    """Killed before the weights were renamed: the old pair is still consistent and is kept."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    model = checkpoint(run, 5)
    save_state(run.file(STATE + ".tmp"), {"step": 9, "best_step": 9})
    run.recover()
    assert not run.file(STATE + ".tmp").exists()
    assert run.load_state()["step"] == 5
    assert weights_step(run.file(LAST)) == 5 and same_weights(run.file(LAST), model)


def test_recover_deletes_a_half_written_pending_state(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    checkpoint(run, 5)
    save_state(run.file(STATE + ".tmp"), {"step": 5, "best_step": 5})
    data = run.file(STATE + ".tmp").read_bytes()
    run.file(STATE + ".tmp").write_bytes(data[: len(data) // 2])
    run.recover()
    assert not run.file(STATE + ".tmp").exists()
    assert run.load_state()["step"] == 5


def test_a_second_lock_on_the_same_run_is_refused(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(UserError, match="another scratchlm process") as e, RunDir(tmp_path / "run").lock():
            pass
        assert str(run.path) in str(e.value)
    with RunDir(tmp_path / "run").lock():  # released on exit
        pass


def test_run_load_refuses_what_is_not_a_run(tmp_path: Path):
    with pytest.raises(UserError, match="no such run directory"):
        Run.load(tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="not a scratchlm run directory"):
        Run.load(tmp_path / "folder")
    (tmp_path / "folder" / CONFIG).write_text("{not json")
    with pytest.raises(UserError, match="damaged"):
        Run.load(tmp_path / "folder")
    (tmp_path / "folder" / CONFIG).write_text(json.dumps({"format": "something-else/1"}))
    with pytest.raises(UserError, match="another tool"):
        Run.load(tmp_path / "folder")


def test_run_load_repairs_a_best_that_a_kill_left_behind(hn_run: Path, tmp_path: Path):
    """The state says the latest weights are the best, but model.safetensors is not them: promote again."""
    run = shutil.copytree(hn_run, tmp_path / "run")
    (run / BEST).write_bytes(b"half written")
    Run.load(run)
    assert (run / BEST).read_bytes() == (run / LAST).read_bytes()


def test_run_load_refuses_damaged_or_mismatched_weights(hn_run: Path, tmp_path: Path):
    run = shutil.copytree(hn_run, tmp_path / "run")
    step = RunDir(run).load_state()["step"]
    for name in (BEST, LAST):
        (run / name).write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="damaged") as e:
        Run.load(run)
    assert str(run / BEST) in str(e.value)
    save_weights(run / BEST, tiny_model(0), step)
    with pytest.raises(UserError, match="do not fit"):
        Run.load(run)


def test_weights_step_of_a_missing_or_damaged_file_is_none(tmp_path: Path):
    assert weights_step(tmp_path / "missing.safetensors") is None
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    assert weights_step(tmp_path / "bad.safetensors") is None


def test_a_run_directory_cannot_be_a_file(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    for path in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "run"):
        with pytest.raises(UserError, match="is a file, not a folder"), RunDir(path).lock():
            pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- damaged checkpoints fall back


def flip_a_byte(path: Path, from_end: int = 8) -> None:
    """Corrupt one byte near the end of a file: in the tensors' data, past any header."""
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [truncate, flip_a_byte], ids=["truncated", "corrupted"])
def test_damaged_weights_are_detected(tmp_path: Path, damage):
    path = tmp_path / LAST
    save_weights(path, tiny_model(0), 3)
    read_weights(path)
    damage(path)
    with pytest.raises(UserError, match="damaged") as e:
        load_weights(path, tiny_model(1))
    assert str(path) in str(e.value)


@pytest.mark.parametrize("name, damage", [(LAST, truncate), (LAST, flip_a_byte), (STATE, truncate),
                                          (STATE, flip_a_byte)],
                         ids=["weights-truncated", "weights-corrupted", "state-truncated", "state-corrupted"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path: Path, name: str, damage):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    before = checkpoint(run, 5)
    checkpoint(run, 6, best=False)
    damage(run.file(name))
    with pytest.warns(UserWarning, match="latest checkpoint is damaged.*previous one, at step 5"):
        run.recover()
    assert run.load_state()["step"] == 5 and weights_step(run.file(LAST)) == 5
    assert same_weights(run.file(LAST), before)
    assert pair_ok(run.file(LAST), run.file(STATE))


def test_a_damaged_checkpoint_without_a_good_previous_one_is_refused(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    checkpoint(run, 5)
    flip_a_byte(run.file(LAST))
    run.recover()  # nothing to fall back to: the file is left as it is, for the reader to refuse
    with pytest.raises(UserError, match="checksum does not match"):
        load_weights(run.file(LAST), tiny_model(0))


def test_a_damaged_best_is_replaced_by_the_latest_with_a_warning(hn_run: Path, tmp_path: Path):
    run = shutil.copytree(hn_run, tmp_path / "run")
    flip_a_byte(run / BEST)
    with pytest.warns(UserWarning, match="model.safetensors is damaged; using the latest weights"):
        loaded = Run.load(run, device="cpu")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in read_weights(run / LAST).items())


def test_recovery_leaves_the_files_alone_while_another_process_trains(tmp_path: Path):
    """`generate` during training must not undo the checkpoint the trainer is half-way through."""
    trainer = RunDir(tmp_path / "run")
    with trainer.lock():
        checkpoint(trainer, 5)
        save_state(trainer.file(STATE + ".tmp"), {"step": 6, "best_step": 5})  # weights 6 not renamed yet
        RunDir(tmp_path / "run").recover()
        assert trainer.file(STATE + ".tmp").exists()
        trainer.recover()  # the trainer itself may
        assert not trainer.file(STATE + ".tmp").exists()


def test_metrics_follow_the_state_after_a_kill(tmp_path: Path):
    """Killed after the checkpoint, before metrics.jsonl: recovery writes the rows the state holds."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    history = [{"step": 5, "valid_loss": 1.0}, {"step": 6, "valid_loss": 0.9}]
    run.save_checkpoint(tiny_model(0), {"step": 6, "best_step": 6, "history": history}, is_best=True)
    run.write_metrics(history[:1])
    run.recover()
    assert run.read_metrics() == history
    assert run.file(METRICS).read_text().count("\n") == 2


# ---------------------------------------------------------------- safe loading, wrapped models


def test_a_pickle_in_place_of_the_weights_is_refused_unrun(hn_run: Path, tmp_path: Path):
    marker = tmp_path / "marker"
    run = shutil.copytree(hn_run, tmp_path / "run")
    for name in (BEST, LAST):
        torch.save({"evil": Payload(marker)}, run / name)
    with pytest.raises(UserError, match="damaged or not a safetensors file"):
        Run.load(run)
    assert not marker.exists()


def test_keys_with_wrapper_prefixes_from_another_tool_load(tmp_path: Path):
    from safetensors.torch import save_file

    model = tiny_model(0)
    for prefix in ("_orig_mod.", "module.", "module._orig_mod."):
        path = tmp_path / "other-tool.safetensors"
        save_file({prefix + k: v for k, v in model.state_dict().items()}, str(path))  # no scratchlm header
        assert same_weights(path, model)


def test_weights_saved_from_a_compiled_model_load_into_a_plain_one(tmp_path: Path):
    model = tiny_model(0)
    compiled = torch.compile(model)  # the wrapper only: nothing is compiled until it is called
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_weights(tmp_path / "w.safetensors", compiled, 1)
    assert set(read_weights(tmp_path / "w.safetensors")) == set(model.state_dict())
    assert same_weights(tmp_path / "w.safetensors", model)


def test_weights_saved_from_a_ddp_model_load_into_a_plain_one(tmp_path: Path):
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = tiny_model(0)
        wrapped = nn.parallel.DistributedDataParallel(model)
        assert all(k.startswith("module.") for k in wrapped.state_dict())
        save_weights(tmp_path / "w.safetensors", wrapped, 1)
    finally:
        dist.destroy_process_group()
    assert set(read_weights(tmp_path / "w.safetensors")) == set(model.state_dict())
    assert same_weights(tmp_path / "w.safetensors", model)
