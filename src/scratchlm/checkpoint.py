"""The run directory: the one persistent format of scratchlm, written so that nothing is ever lost.

    runs/NAME/config.json        everything needed to rebuild the run (model, tokenizer, data, training)
              tokenizer.json     the vocabulary (and BPE merges)
              model.safetensors  the best weights so far (by validation loss): what the verbs use
              last.safetensors   the latest weights: where training resumes
              state.pt           optimizer, schedule position, RNG states, data position, carried hidden
                                 state, metric history: read with torch.load(weights_only=True)
              previous.safetensors, previous-state.pt
                                 the checkpoint before the latest: the fallback if the latest is damaged
              metrics.jsonl      one JSON object per evaluation
              loss.png           the loss curves

Every file is written to a temporary name in the same folder, flushed to disk, and renamed over the
old one, so a reader only ever sees a whole old file or a whole new one. A checkpoint is two files
(weights and state) and a kill can fall between their renames; the state is therefore written first
under `state.pt.tmp`, the weights renamed into place, then the state: on the next start, a complete
`state.pt.tmp` whose step matches the weights finishes its rename (roll forward), anything else is
thrown away and the previous pair, still consistent, is used.

Each weights file carries in its header the step, a sha256 of its tensors and the sha256 of the state
file it pairs with, so a truncated or corrupted file is found when it is read, not trusted. A checkpoint
that cannot be written (a full disk) stops the run in one line; the pair before it is untouched, and
`--resume` continues from it once there is room. The pair
before the latest is kept (hard links, no copy) as previous.safetensors and previous-state.pt: when
the latest pair is damaged, recovery falls back to it with a warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from scratchlm import __version__
from scratchlm.errors import UserError
from scratchlm.files import atomic_write, atomic_write_json, cannot_write, fsync_dir, replacing

FORMAT = "scratchlm-run/1"
CONFIG, TOKENIZER, BEST, LAST, STATE, METRICS = (
    "config.json", "tokenizer.json", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl")
PREV_LAST, PREV_STATE, LOCK = "previous.safetensors", "previous-state.pt", ".lock"  # the checkpoint before the latest
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel


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


def plain_key(key: str) -> str:
    """A weight's name without the wrappers' prefixes, for files written from a wrapped model by another tool."""
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order.

    safetensors checks that its header covers the file (so a truncated file fails to open) but not the
    bytes themselves; this checksum, kept in the header, catches a flipped or zeroed block too."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def distinct_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with tied weights (one tensor under two names) stored once, under its first name."""
    kept: dict[str, torch.Tensor] = {}
    seen: set[tuple] = set()
    for name, t in model.state_dict().items():
        identity = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
        if t.numel() and identity in seen:
            continue
        seen.add(identity)
        kept[name] = t.detach().cpu().contiguous()
    return kept


def save_weights(path: Path, model: nn.Module, step: int, state_sha256: str | None = None) -> None:
    """Weights as safetensors (tied weights stored once), with the step, a checksum and the digest of the
    state they pair with in the header; atomic."""
    tensors = distinct_tensors(unwrap(model))
    metadata = {"step": str(step), "format": FORMAT, "sha256": digest(tensors)}
    if state_sha256:
        metadata["state_sha256"] = state_sha256
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def weights_metadata(path: Path) -> dict[str, str] | None:
    """A weights file's header metadata, or None if the file is missing or its header damaged."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (OSError, SafetensorError, ValueError):
        return None


def weights_step(path: Path) -> int | None:
    """The step stored in a weights file's header, or None if the file is missing or damaged."""
    metadata = weights_metadata(path)
    try:
        return None if metadata is None else int(metadata.get("step", -1))
    except ValueError:
        return None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the checksum in its header when it has one
    (a file written by another tool has none); a UserError if damaged."""
    damaged = f"{path}: cannot read the weights ({{}}); the file is damaged or not a safetensors file"
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            expected = (f.metadata() or {}).get("sha256")
    except (OSError, SafetensorError) as e:
        raise UserError(damaged.format(str(e).splitlines()[0] if str(e) else type(e).__name__)) from None
    if expected is not None and digest(tensors) != expected:
        raise UserError(damaged.format("its checksum does not match"))
    return tensors


def weights_ok(path: Path) -> bool:
    try:
        read_weights(path)
    except UserError:
        return False
    return True


def load_weights(path: Path, model: nn.Module) -> None:
    """Load a safetensors file into a plain model: the only way weights are read (no pickle, no code).

    Keys saved from a compiled or DDP-wrapped model by another tool lose their prefixes; a tied weight
    stored once fills every name it has in the model."""
    model = unwrap(model)
    tensors = {plain_key(k): v for k, v in read_weights(path).items()}
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shapes differ from the config
        lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line] or str(e).splitlines()
        raise UserError(f"{path}: the weights do not fit the model in config.json ({lines[0]})") from None
    missing = [k for k in missing if not tied_to_loaded(model, k, tensors)]
    if missing or unexpected:
        raise UserError(f"{path}: the weights do not fit the model (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")


def tied_to_loaded(model: nn.Module, name: str, loaded: dict[str, torch.Tensor]) -> bool:
    """Is `name` the same tensor as one of the loaded names (a tied weight, stored once)?"""
    state = model.state_dict(keep_vars=True)
    target = state[name]
    return any(other in loaded and state[other] is target for other in state if other != name)


def save_state(path: Path, state: dict) -> str:
    """Everything but the weights (torch tensors and plain Python values only); fsync'd, not yet renamed.
    Returns the sha256 of the bytes, which the weights written next keep in their header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def load_state(path: Path) -> dict:
    """torch.load with weights_only=True: a state file can hold tensors and plain values, never code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file or one carrying arbitrary objects: refuse, never run it
        raise UserError(f"{path}: cannot be loaded safely ({type(e).__name__}); it is damaged or not a scratchlm state") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UserError(f"{path}: not a scratchlm state (no training step in it)")
    return state


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def pair_ok(weights: Path, state: Path, check_weights: bool = True) -> bool:
    """Do these weights and this state form one checkpoint: the same step, the state's bytes those the
    weights' header names (when it names them), and each file whole?"""
    metadata = weights_metadata(weights)
    if metadata is None or not state.exists():
        return False
    if "state_sha256" in metadata and file_sha256(state) != metadata["state_sha256"]:
        return False
    try:
        same_step = load_state(state).get("step") == weights_step(weights)
    except UserError:
        return False
    return same_step and (not check_weights or weights_ok(weights))


def release_tuple(version: str) -> tuple[int, ...]:
    """'0.2.0' -> (0, 2, 0): the leading number of each part, up to the first part with a suffix ('0.3rc1' -> (0, 3))."""
    numbers = []
    for part in version.split("."):
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        numbers.append(int(digits))
        if digits != part:
            break
    return tuple(numbers)


def check_release(config: object, path: Path) -> None:
    """A config.json this release can read: scratchlm's run format, written by this release or an earlier one.
    A newer release's folder may hold fields and files this one would misread, so it is refused, naming both."""
    if not isinstance(config, dict) or not str(config.get("format", "")).startswith("scratchlm-run/"):
        raise UserError(f"{path}: not a scratchlm run directory ({CONFIG} is from another tool)")
    versions = config.get("versions")
    written = versions.get("scratchlm") if isinstance(versions, dict) else None
    by = f"scratchlm {written}" if isinstance(written, str) else "an unknown scratchlm"
    if config["format"] != FORMAT:
        raise UserError(f"{path}: written by {by} in the run format {config['format']!r}; this is scratchlm "
                        f"{__version__}, which reads {FORMAT!r}: upgrade scratchlm to use this run")
    if isinstance(written, str) and release_tuple(written) > release_tuple(__version__):
        raise UserError(f"{path}: written by scratchlm {written}, newer than this scratchlm {__version__}; "
                        "upgrade scratchlm (pip install -U scratchlm) to use this run")


def link_into_place(source: Path, target: Path) -> None:
    """`target` becomes `source`'s bytes: a hard link (no copy), renamed into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a file system without hard links
        tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


class RunDir:
    """A run directory on disk; see the module docstring for its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.locked = False  # this object holds the training lock

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
        check_release(config, self.path)
        return config

    def write_config(self, config: dict) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.file(CONFIG), {"format": FORMAT, **config})
        except OSError as e:
            raise UserError(f"{self.file(CONFIG)}: cannot be written ({cannot_write(e)}); free space and start "
                            "again") from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Only one process trains into a run directory at a time."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.file(LOCK), "a")  # noqa: SIM115 (held open for the whole run below)
        except (FileExistsError, NotADirectoryError):  # the path, or a folder on it, is a file
            raise UserError(f"{self.path}: is a file, not a folder; give --out a folder for the run") from None
        except OSError as e:  # no permission, a read-only or vanished file system
            raise UserError(f"{self.path}: cannot create the run folder here ({e.strerror}); give --out "
                            "a folder you can write to") from None
        with lock_file as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{self.path}: another scratchlm process is training into or repairing this "
                                "run; wait for it or use another --out") from None
            self.locked = True
            try:
                yield
            finally:
                self.locked = False

    def save_checkpoint(self, model: nn.Module, state: dict, is_best: bool) -> None:
        """Weights and state as one consistent pair (see the module docstring for the order)."""
        pending = self.file(STATE + ".tmp")
        kept = weights_step(self.file(LAST))
        try:
            state_sha256 = save_state(pending, state)
            if self.file(LAST).exists() and self.file(STATE).exists():  # the pair now in place becomes the previous
                link_into_place(self.file(LAST), self.file(PREV_LAST))
                link_into_place(self.file(STATE), self.file(PREV_STATE))
            save_weights(self.file(LAST), model, state["step"], state_sha256)
        except OSError as e:  # the weights in place are still the previous checkpoint's: its pair is whole
            pending.unlink(missing_ok=True)
            raise self.not_written(f"the checkpoint of step {state['step']}", e, kept) from None
        try:
            os.replace(pending, self.file(STATE))
            fsync_dir(self.path)
            if is_best:
                self.promote_best()
        except OSError as e:  # the new weights and the pending state pair up: the next start finishes the rename
            raise self.not_written(f"the checkpoint of step {state['step']}", e, state["step"]) from None

    def not_written(self, what: str, error: OSError, kept: int | None) -> UserError:
        """One line for a write that failed: the cause, and the checkpoint --resume will continue from."""
        after = (f"the checkpoint of step {kept} is intact; free space and continue with --resume" if kept is not None
                 else "no checkpoint was saved yet; free space and start again")
        return UserError(f"{self.path}: cannot write {what} ({cannot_write(error)}); {after}")

    def promote_best(self) -> None:
        """model.safetensors becomes the latest weights."""
        link_into_place(self.file(LAST), self.file(BEST))
        fsync_dir(self.path)

    @contextmanager
    def held_or_free(self) -> Iterator[bool]:
        """True inside when no other process is training here (so files may be repaired), else False.

        A reader (`generate` while a run trains) must never finish or undo a checkpoint the trainer is
        in the middle of writing."""
        if self.locked:
            yield True
            return
        try:  # every repair takes the lock, even in a run folder made before locks existed
            lock_file = open(self.file(LOCK), "a")  # noqa: SIM115 (closed by the with below)
        except OSError:  # a read-only run: read it, never repair it
            yield False
            return
        with lock_file as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def recover(self) -> None:
        """Finish or undo a checkpoint that a kill interrupted (see the module docstring); fall back to
        the previous checkpoint, with a warning, when the latest is damaged. Nothing is touched while
        another process trains here."""
        with self.held_or_free() as free:
            if free:
                self.roll_forward_or_back()
                has_checkpoint = self.file(STATE).exists() or self.file(LAST).exists()
                if has_checkpoint and self.check_latest():  # never repair from a damaged checkpoint
                    self.repair_best_and_metrics()

    def roll_forward_or_back(self) -> None:
        pending = self.file(STATE + ".tmp")
        if pending.exists():
            if pair_ok(self.file(LAST), pending, check_weights=False):
                os.replace(pending, self.file(STATE))
                fsync_dir(self.path)
            else:
                pending.unlink()

    def check_latest(self) -> bool:
        """The latest pair must be whole; if it is not, the previous one takes its place. Is it whole now?"""
        if pair_ok(self.file(LAST), self.file(STATE)):
            return True
        if not pair_ok(self.file(PREV_LAST), self.file(PREV_STATE)):
            return False  # nothing to fall back to: reading the latest will name the damaged file
        step = weights_step(self.file(PREV_LAST))
        warnings.warn(f"{self.path}: the latest checkpoint is damaged (truncated or corrupted); "
                      f"falling back to the previous one, at step {step}", stacklevel=2)
        link_into_place(self.file(PREV_STATE), self.file(STATE))
        link_into_place(self.file(PREV_LAST), self.file(LAST))
        fsync_dir(self.path)
        return True

    def repair_best_and_metrics(self) -> None:
        """A kill after the weights but before model.safetensors or metrics.jsonl: both follow the state."""
        state = load_state(self.file(STATE))
        if state.get("best_step") == state.get("step") and weights_step(self.file(BEST)) != state["step"]:
            self.promote_best()
        history = state.get("history")
        if isinstance(history, list) and self.read_metrics() != history:
            self.write_metrics(history)

    def load_state(self) -> dict:
        return load_state(self.file(STATE))

    def write_metrics(self, history: list[dict]) -> None:
        """metrics.jsonl: the state's history, which the next start rewrites if this write fails."""
        try:
            atomic_write(self.file(METRICS), "".join(json.dumps(row) + "\n" for row in history).encode())
        except OSError as e:
            raise self.not_written(METRICS, e, weights_step(self.file(LAST))) from None

    def read_metrics(self) -> list[dict]:
        if not self.file(METRICS).exists():
            return []
        return [json.loads(line) for line in self.file(METRICS).read_text().splitlines() if line.strip()]
