"""The run directory: the one persistent format of scratchlm, written so that nothing is ever lost.

    runs/NAME/config.json        everything needed to rebuild the run (model, tokenizer, data, training)
              tokenizer.json     the vocabulary (and BPE merges)
              model.safetensors  the best weights so far (by validation loss): what the verbs use
              last.safetensors   the latest weights: where training resumes
              state.pt           optimizer, schedule position, RNG states, data position, carried hidden
                                 state, metric history: read with torch.load(weights_only=True)
              metrics.jsonl      one JSON object per evaluation
              loss.png           the loss curves

Every file is written to a temporary name in the same folder, flushed to disk, and renamed over the
old one, so a reader only ever sees a whole old file or a whole new one. A checkpoint is two files
(weights and state) and a kill can fall between their renames; the state is therefore written first
under `state.pt.tmp`, the weights renamed into place, then the state: on the next start, a complete
`state.pt.tmp` whose step matches the weights finishes its rename (roll forward), anything else is
thrown away and the previous pair, still consistent, is used.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from scratchlm.errors import UserError

FORMAT = "scratchlm-run/1"
CONFIG, TOKENIZER, BEST, LAST, STATE, METRICS = (
    "config.json", "tokenizer.json", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under torch.compile (`_orig_mod`) and DistributedDataParallel (`module`) wrappers,
    so saved keys never carry their prefixes."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_weights(path: Path, model: nn.Module, step: int) -> None:
    """Weights as safetensors (tied weights stored once), with the step in the header; atomic."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_model(unwrap(model), str(tmp), metadata={"step": str(step), "format": FORMAT})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def weights_step(path: Path) -> int | None:
    """The step stored in a weights file's header, or None if the file is missing or damaged."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("step", -1))
    except (OSError, SafetensorError, ValueError):
        return None


def load_weights(path: Path, model: nn.Module) -> None:
    try:
        missing, unexpected = load_model(unwrap(model), str(path), strict=False)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{path}: cannot read the weights ({e}); the file is damaged or not a safetensors file") from None
    except RuntimeError as e:  # shapes differ from the config
        raise UserError(f"{path}: the weights do not fit the model in config.json ({str(e).splitlines()[0]})") from None
    if missing or unexpected:
        raise UserError(f"{path}: the weights do not fit the model (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")


def save_state(path: Path, state: dict) -> None:
    """Everything but the weights (torch tensors and plain Python values only); fsync'd, not yet renamed."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())


def load_state(path: Path) -> dict:
    """torch.load with weights_only=True: a state file can hold tensors and plain values, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file or one carrying arbitrary objects: refuse, never run it
        raise UserError(f"{path}: cannot be loaded safely ({type(e).__name__}); it is damaged or not a scratchlm state") from None


class RunDir:
    """A run directory on disk; see the module docstring for its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def exists(self) -> bool:
        return self.file(CONFIG).exists()

    def read_config(self) -> dict:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory (train one with `scratchlm train --out {self.path}`)")
        try:
            config = json.loads(self.file(CONFIG).read_text())
        except FileNotFoundError:
            raise UserError(f"{self.path}: not a scratchlm run directory (it has no {CONFIG})") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{self.file(CONFIG)}: damaged (not JSON); the run cannot be rebuilt") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise UserError(f"{self.path}: not a scratchlm run directory ({CONFIG} is from another tool or version)")
        return config

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file(CONFIG), {"format": FORMAT, **config})

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Only one process trains into a run directory at a time."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # the path, or a folder on it, is a file
            raise UserError(f"{self.path}: is a file, not a folder; give --out a folder for the run") from None
        with open(self.file(".lock"), "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{self.path}: another scratchlm process is training into this run; "
                                "wait for it or use another --out") from None
            yield

    def save_checkpoint(self, model: nn.Module, state: dict, is_best: bool) -> None:
        """Weights and state as one consistent pair (see the module docstring for the order)."""
        pending = self.file(STATE + ".tmp")
        save_state(pending, state)
        save_weights(self.file(LAST), model, state["step"])
        os.replace(pending, self.file(STATE))
        fsync_dir(self.path)
        if is_best:
            self.promote_best()

    def promote_best(self) -> None:
        """model.safetensors becomes the latest weights: a hard link (no copy), renamed into place."""
        tmp = self.file(f".{BEST}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(self.file(LAST), tmp)
        except OSError:  # a file system without hard links
            tmp.write_bytes(self.file(LAST).read_bytes())
        os.replace(tmp, self.file(BEST))
        fsync_dir(self.path)

    def recover(self) -> None:
        """Finish or undo a checkpoint that a kill interrupted (see the module docstring)."""
        pending = self.file(STATE + ".tmp")
        if pending.exists():
            try:
                state = load_state(pending)
            except UserError:
                state = None
            if state is not None and state.get("step") == weights_step(self.file(LAST)):
                os.replace(pending, self.file(STATE))
            else:
                pending.unlink()
        if self.file(STATE).exists():
            state = load_state(self.file(STATE))
            if state.get("best_step") == state.get("step") and weights_step(self.file(BEST)) != state["step"]:
                self.promote_best()

    def load_state(self) -> dict:
        return load_state(self.file(STATE))

    def write_metrics(self, history: list[dict]) -> None:
        atomic_write(self.file(METRICS), "".join(json.dumps(row) + "\n" for row in history).encode())

    def read_metrics(self) -> list[dict]:
        if not self.file(METRICS).exists():
            return []
        return [json.loads(line) for line in self.file(METRICS).read_text().splitlines() if line.strip()]
