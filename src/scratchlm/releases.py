"""Run folders across releases: a config.json written by an earlier scratchlm, completed as the release that
wrote it built the run.

config.json records every field of every config a run was built from (the model's, the data's, the
tokenizer's, the training's), as the release that wrote it knew them. A field added since is absent from an
older folder. Filling it with today's default would rebuild another model: gpt's `positions`, added with a
registry recipe of `rotary`, turned every GPT trained before it (learned positions) into weights that no
longer fit. So each field added after the first release is listed in `ADDED` with the value that gives the
behaviour of the releases before it, and loading fills an absent field from this table alone, never from
the registry's recipes or a dataclass default. tests/test_releases.py keeps the table complete: a config
field that neither the first release's folders nor this table know fails it.

Releases (`versions.scratchlm` in config.json):
    0.1.0   2026-11-23 .. 2026-12-07: one version string while the fields below were added
    0.2.0   records the run's release; refuses a folder from a newer one; repairs mojibake in corpora

A folder written by a newer scratchlm, or in a run format this one does not read, is refused in one line
that names both releases (scratchlm.checkpoint.RunDir.read_config).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from scratchlm.config import TrainConfig
from scratchlm.errors import UserError
from scratchlm.models.registry import get_spec

# config class -> {field added after the first release: the value runs written before it exist behave as}
ADDED: dict[str, dict[str, Any]] = {
    "TrainConfig": {
        "best_by": None,  # 2026-12-01: the best checkpoint followed the validation loss
        "shuffle": False,  # 2026-12-01: windows were read in order
        "cooldown": 0.0,  # 2026-12-01: no linear fall to 0 at the end
    },
    "TokenizerSpec": {
        "phrases": 0,  # 2026-12-01: no phrase detection
        "phrase_threshold": 100.0,  # 2026-12-01: unused without phrases
    },
    "DataConfig": {
        "repair": False,  # 0.2.0: text was read as decoded, C1 controls (cp1252 mojibake) kept
    },
    "PairsConfig": {
        "repair": False,  # 0.2.0: C1 controls were not repaired ...
        "strict": True,  # ... and a bad line refused the whole file
    },
    "LabelledConfig": {
        "embeddings": None,  # 2026-12-01: no word vectors from another run
        "repair": False,  # 0.2.0: see DataConfig
    },
    "CorpusConfig": {
        "phrases": 0,  # 2026-12-01: see TokenizerSpec
        "phrase_threshold": 100.0,
        "repair": False,  # 0.2.0: see DataConfig
    },
    "GPTConfig": {
        "positions": "learned",  # 2026-12-01: GPT-2's learned position embeddings (rotary came later)
    },
    "Seq2SeqConfig": {
        "sampling": 0.0,  # 2026-12-01: teacher forcing only
        "label_smoothing": 0.0,  # 2026-12-01: plain cross-entropy
    },
    "Word2VecConfig": {
        "loss": "ns",  # 2026-12-01: negative sampling only
    },
}

# Fields that hold another model's {"name", "config"}: a classifier's language-model body, whose config is
# completed as that model's own
NESTED_MODELS: dict[str, tuple[str, ...]] = {"LMClassifierConfig": ("encoder",)}


def complete(cls: type, saved: dict[str, Any], where: str, model_config_cls=None) -> dict[str, Any]:
    """`saved` (a config as config.json holds it) with every field of `cls` it lacks filled from `ADDED`.

    Nested configs (a data config's tokenizer) are completed the same way; `model_config_cls(name)` gives the
    config class of a nested model (NESTED_MODELS). A field neither saved nor in the table is refused: the
    run cannot be rebuilt as it was trained.
    """
    hints = typing.get_type_hints(cls)
    out = dict(saved)
    added = ADDED.get(cls.__name__, {})
    for f in dataclasses.fields(cls):
        if f.name not in out:
            if f.name not in added:
                raise UserError(f"{where}: config.json has no {cls.__name__}.{f.name}, and this scratchlm does not "
                                "know the value the run was trained with (was the file edited?)")
            out[f.name] = added[f.name]
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(out[f.name], dict):
            out[f.name] = complete(hints[f.name], out[f.name], where)
    for name in NESTED_MODELS.get(cls.__name__, ()):
        nested = out.get(name)
        if isinstance(nested, dict) and model_config_cls is not None:
            inner = model_config_cls(nested["name"])
            out[name] = {**nested, "config": complete(inner, nested.get("config", {}), where, model_config_cls)}
    return out


def complete_run_config(config: dict, where: str, data_config_cls: type) -> dict:
    """A run's whole config.json, completed: its model's, data's (`data_config_cls`, the task's) and training's
    configs (see `complete`)."""

    def config_cls_of(name: str) -> type:
        return get_spec(name).config_cls

    model, data = config["model"], config["data"]
    completed = {**config,
                 "model": {**model, "config": complete(config_cls_of(model["name"]), model["config"], where, config_cls_of)},
                 "data": {**data, "config": complete(data_config_cls, data["config"], where)}}
    if "train" in config:  # an imported run (word vectors from a file) was never trained
        completed["train"] = complete(TrainConfig, config["train"], where)
    return completed
