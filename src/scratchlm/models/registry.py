"""The model registry: a name a user types -> the config class, model class, task and sensible defaults.

Adding a model is adding one `ModelSpec` line below; the CLI, the `models` listing, and every verb find
it here. There is no if/elif on model names anywhere else.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from scratchlm.config import field_comments
from scratchlm.errors import UserError, closest
from scratchlm.models.awd_lstm import AWDLSTM, AWDLSTMConfig
from scratchlm.models.base import parameter_count
from scratchlm.models.cells import ScratchRNN, ScratchRNNConfig
from scratchlm.models.classifier import (
    BagConfig,
    BagOfEmbeddings,
    LMClassifierConfig,
    RNNClassifier,
    RNNClassifierConfig,
    lm_classifier,
)
from scratchlm.models.glove import GloVe, GloVeConfig
from scratchlm.models.gpt import GPT, GPTConfig
from scratchlm.models.mlp import MLP3, MLPConfig
from scratchlm.models.ngram import NGram, NGramConfig
from scratchlm.models.recurrent import FusedRNN, FusedRNNConfig
from scratchlm.models.rnn import LoopRNN, LoopRNNConfig
from scratchlm.models.seq2seq import Seq2Seq, Seq2SeqConfig
from scratchlm.models.transformer_mt import TransformerMT, TransformerMTConfig
from scratchlm.models.word2vec import Word2Vec, Word2VecConfig


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str  # what the user types: --model NAME
    idea: str  # one line: what this rung adds
    task: str  # the task it is trained for (scratchlm.tasks): which data, loss, metrics and verbs apply
    config_cls: type
    model_cls: type
    config: dict[str, Any] = field(default_factory=dict)  # defaults that make this entry, over the config's own
    train: dict[str, Any] = field(default_factory=dict)  # training defaults: lr, epochs, bptt, batch_size, ...
    # A built-in corpus -> the (config, train) defaults that replace those above on it: a recipe sized to
    # that corpus, as nanoGPT keeps one config per data set.
    built_in: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)

    def defaults_for(self, corpus: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (config, train) defaults on `corpus`, a built-in corpus' name (None for a user's data)."""
        config, train = self.built_in.get(corpus, ({}, {}))
        return {**self.config, **config}, {**self.train, **train}

    def make_config(self, dims: dict[str, int], overrides: dict[str, Any] | None = None) -> Any:
        """The config: this entry's defaults, then `overrides` (--set), then `dims`, the sizes the task
        takes from the data (vocab_size, ...), which no setting can change; a dim the config has no field
        for is one this model does not use (joint_vocab for a model that never shares embeddings)."""
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        values = {**self.config, **(overrides or {}), **{k: v for k, v in dims.items() if k in known}}
        if unknown := sorted(set(values) - known):
            raise UserError(f"{self.name} has no setting {', '.join(unknown)}; its settings are "
                            f"{', '.join(sorted(known - set(dims)))}")
        return self.config_cls(**values)

    def saved_config(self, saved: dict[str, Any], dims: dict[str, Any] | None = None) -> Any:
        """A saved run's config: config.json's (completed by scratchlm.releases), the data's `dims` over it.
        Never this entry's defaults: a later release may change them, and the weights would no longer fit."""
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        if unknown := sorted(set(saved) - known):
            raise UserError(f"the saved {self.name} config has {', '.join(unknown)}, which this scratchlm's {self.name} "
                            "does not know (was the file edited?)")
        return self.config_cls(**{**saved, **{k: v for k, v in (dims or {}).items() if k in known}})

    def build(self, config: Any) -> nn.Module:
        return self.model_cls(config)

    def parameters(self, config: Any) -> int:
        """The model's parameter count, built aside on the meta device: no memory, and no draw from the
        random generator, which would leave a run started afresh and one resumed before its first
        checkpoint on different random streams."""
        with torch.device("meta"):
            return parameter_count(self.build(config))


def build_body(encoder: dict, vocab_size: int) -> nn.Module:
    """The language model a classifier's `encoder` names ({"name", "config"}: a trained run's, as saved), on
    `vocab_size` tokens."""
    spec = get_spec(encoder["name"])
    if spec.task != "lm":
        raise UserError(f"{spec.name} is a {spec.task} model; a classifier's body is a language model")
    return spec.build(spec.saved_config(encoder["config"], {"vocab_size": vocab_size}))


def ulmfit(config: LMClassifierConfig) -> nn.Module:
    return lm_classifier(config, build_body)


BOOK = "fast.ai ch. 12"
CLASSIFIER = {"lr": 3e-3, "epochs": 8, "batch_size": 64, "weight_decay": 0.01, "warmup": 0.1, "grad_clip": 1.0}
TRANSLATION = {"lr": 2e-3, "epochs": 10, "batch_size": 64, "grad_clip": 1.0, "warmup": 0.1, "weight_decay": 0.01}
# 80 pairs a batch, the rate rising over the first tenth, falling as 1/sqrt, then to 0 over the last fifth, no
# dropout (a 15-minute run is about two epochs): the best of the recipes tried (docs/recipes.md)
TRANSFORMER_MT = {"lr": 2e-3, "epochs": 20, "batch_size": 80, "schedule": "invsqrt", "warmup": 0.1, "cooldown": 0.2,
                  "grad_clip": 1.0, "weight_decay": 0.01}
# nanoGPT's CPU width (4 heads, 128 wide), two layers, rotary positions, a context of 128, 12 shuffled windows a
# batch, Muon: the best validation loss in 140 s on two cores of tiny-shakespeare of the variants tried (docs/recipes.md)
GPT_CONFIG = {"preset": "tiny", "n_layer": 2, "block_size": 128, "positions": "rotary"}
GPT_TRAIN = {"lr": 6e-3, "epochs": 2, "bptt": 128, "batch_size": 12, "shuffle": True, "schedule": "onecycle",
             "warmup": 0.02, "weight_decay": 0.1, "grad_clip": 1.0, "optimizer": "muon"}
SPECS = [
    ModelSpec("ngram", "counts, not gradients: interpolated modified Kneser-Ney over the n-1 tokens before "
              "(Chen and Goodman 1998), the baseline every neural rung must beat", "lm", NGramConfig, NGram, {},
              {"epochs": 1, "batch_size": 64, "bptt": 16},
              # order 3 predicts human numbers best: the validation numbers' longer contexts never occur in training
              {"human-numbers": ({"order": 3}, {})}),
    ModelSpec("mlp3", f"fixed 3-token window, one hidden layer shared by all positions (Bengio 2003; {BOOK} LMModel1)",
              "lm", MLPConfig, MLP3, {}, {"lr": 1e-3, "epochs": 4, "bptt": 3}),
    ModelSpec("rnn3", f"the same as a loop: an RNN is a refactored MLP ({BOOK} LMModel2)",
              "lm", LoopRNNConfig, LoopRNN, {"stateful": False, "every_token": False},
              {"lr": 1e-3, "epochs": 4, "bptt": 3}),
    ModelSpec("rnn-stateful", f"hidden state kept across batches: truncated BPTT ({BOOK} LMModel3)",
              "lm", LoopRNNConfig, LoopRNN, {"stateful": True, "every_token": False},
              {"lr": 3e-3, "epochs": 10, "bptt": 3}),
    ModelSpec("rnn", f"predicts after every token: more signal ({BOOK} LMModel4)",
              "lm", LoopRNNConfig, LoopRNN, {"stateful": True, "every_token": True},
              {"lr": 3e-3, "epochs": 15, "bptt": 16}),
    ModelSpec("rnn-deep", f"two stacked layers, fused nn.RNN ({BOOK} LMModel5)",
              "lm", FusedRNNConfig, FusedRNN, {"cell": "rnn", "n_layers": 2},
              {"lr": 3e-3, "epochs": 15, "bptt": 16}),
    ModelSpec("lstm", f"gated cells keep gradients alive: two LSTM layers, fused nn.LSTM ({BOOK} LMModel6)",
              "lm", FusedRNNConfig, FusedRNN, {"cell": "lstm", "n_layers": 2},
              {"lr": 1e-2, "epochs": 15, "bptt": 16}),
    ModelSpec("gru", "the same with GRU cells (Cho et al. 2014): two gates, no cell state, fused nn.GRU",
              "lm", FusedRNNConfig, FusedRNN, {"cell": "gru", "n_layers": 2},
              {"lr": 1e-2, "epochs": 15, "bptt": 16}),
    ModelSpec("lstm-scratch", "lstm with the cell written from its gate equations, looped in Python",
              "lm", ScratchRNNConfig, ScratchRNN, {"cell": "lstm", "n_layers": 2},
              {"lr": 1e-2, "epochs": 15, "bptt": 16}),
    ModelSpec("gru-scratch", "gru with the cell written from its gate equations, looped in Python",
              "lm", ScratchRNNConfig, ScratchRNN, {"cell": "gru", "n_layers": 2},
              {"lr": 1e-2, "epochs": 15, "bptt": 16}),
    ModelSpec("awd-lstm", f"tied weights, locked dropout, AR/TAR, weight decay (Merity et al. 2017; {BOOK} LMModel7)",
              "lm", AWDLSTMConfig, AWDLSTM,
              {"embed_p": 0.0, "input_p": 0.0, "hidden_p": 0.0, "weight_p": 0.0, "output_p": 0.5},
              {"lr": 5e-3, "epochs": 15, "bptt": 16, "weight_decay": 0.7}),
    ModelSpec("gpt", "decoder-only Transformer: causal self-attention over a 128-token context, rotary positions "
              "(Radford et al. 2019; Su et al. 2021)", "lm", GPTConfig, GPT, GPT_CONFIG, GPT_TRAIN,
              # 50k tokens give the recipe above some 50 steps: a smaller model, more steps of ordered windows and a
              # stronger decay reach 0.91 accuracy in ~18 s (docs/recipes.md)
              {"human-numbers": ({"n_layer": 2, "n_embd": 64, "block_size": 64, "positions": "learned"},
                                 {"epochs": 8, "bptt": 64, "batch_size": 6, "weight_decay": 0.5, "shuffle": False})}),
    ModelSpec("seq2seq", "encoder-decoder GRU: the decoder sees the source only through the encoder's last state "
              "(Sutskever et al. 2014; Cho et al. 2014)", "translation", Seq2SeqConfig, Seq2Seq,
              {"attention": "none", "bidirectional": False, "n_embed": 256, "n_hidden": 512}, TRANSLATION),
    ModelSpec("seq2seq-attn", "the same with attention: each target word looks back at every source word "
              "(Bahdanau et al. 2015; Luong et al. 2015)", "translation", Seq2SeqConfig, Seq2Seq,
              # no dropout: a 15-minute run is under three epochs, where it only slows learning (`--set dropout=0.2` for
              # long runs)
              {"attention": "bahdanau", "bidirectional": True, "n_embed": 256, "n_hidden": 256, "dropout": 0.0},
              TRANSLATION),
    ModelSpec("transformer-mt", "encoder-decoder Transformer: self-attention on each side, cross-attention between, "
              "no recurrence (Vaswani et al. 2017)", "translation", TransformerMTConfig, TransformerMT,
              {"dropout": 0.0}, TRANSFORMER_MT),
    ModelSpec("bag-of-embeddings", "the mean of the word vectors, then a linear layer: word order is lost",
              "classification", BagConfig, BagOfEmbeddings, {}, {**CLASSIFIER, "lr": 1e-2, "epochs": 5}),
    # 6 epochs: its held-out loss rises after the second, yet its accuracy goes on climbing (docs/recipes.md)
    ModelSpec("rnn-classifier", "a bidirectional LSTM read over the sentence, pooled over time (last, max, mean)",
              "classification", RNNClassifierConfig, RNNClassifier, {"n_embed": 64, "n_hidden": 64},
              {**CLASSIFIER, "lr": 1e-2, "epochs": 6}),
    # lr 1e-2 for 6 epochs, the body unfrozen group by group: longer, it learns its training folds by heart
    # (docs/recipes.md)
    ModelSpec("ulmfit", "a trained language model's body (train --from RUN) fine-tuned with discriminative rates "
              "and gradual unfreezing (Howard and Ruder 2018)", "classification", LMClassifierConfig, ulmfit, {},
              {**CLASSIFIER, "lr": 1e-2, "epochs": 6}),
    # word2vec's own recipe: SGD from 0.025 falling linearly to 0, 5 epochs. A batch is the pairs of 256 words: the
    # summed steps of a batch come nearer sequential SGD as it shrinks, at a cost in time (docs/recipes.md)
    ModelSpec("word2vec", "skip-gram with negative sampling or the hierarchical softmax (or CBOW), subsampling of "
              "frequent words, a dynamic window (Mikolov et al. 2013)", "embeddings", Word2VecConfig, Word2Vec, {},
              {"lr": 0.025, "epochs": 5, "schedule": "linear", "warmup": 0.0, "batch_size": 256, "weight_decay": 0.0}),
    # AdaGrad at a constant 0.5, a batch of 16,384 non-zero counts: the GloVe tool's 0.05 steps one count at a time,
    # and over batches barely moves the vectors (docs/recipes.md)
    ModelSpec("glove", "word vectors fit by weighted least squares to the log co-occurrence counts, counted once "
              "(Pennington et al. 2014)", "embeddings", GloVeConfig, GloVe, {},
              {"lr": 0.5, "epochs": 25, "schedule": "constant", "warmup": 0.0, "batch_size": 16_384, "weight_decay": 0.0}),
]
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in SPECS}
DEFAULT_MODEL = "rnn"  # what `train` trains without --model
# Config fields a task fills from the data (each task's `dims`): never a user's --set.
DATA_FIELDS = ("vocab_size", "src_vocab_size", "tgt_vocab_size", "joint_vocab", "n_classes", "encoder")


def get_spec(name: str) -> ModelSpec:
    """The entry called `name`, whatever its case (`LSTM` is lstm); its `.name` is the registry's spelling."""
    if name in REGISTRY:
        return REGISTRY[name]
    same = [spec for key, spec in REGISTRY.items() if key.lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    if near := closest(name, REGISTRY):
        raise UserError(f"unknown model {name!r}; did you mean {', '.join(near)}? (see `scratchlm models`)")
    raise UserError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)} (see `scratchlm models`)")


def settings_of(spec: ModelSpec) -> list[tuple[str, Any, str]]:
    """(name, this entry's default, what it means) for every setting of `spec` a user can `--set`.

    The meaning is the field's own comment in the config's source, so the listing cannot drift from it.
    """
    comments = field_comments(inspect.getsource(spec.config_cls))
    defaults = {f.name: f.default for f in dataclasses.fields(spec.config_cls)}
    return [(name, spec.config.get(name, default), comments.get(name, ""))
            for name, default in defaults.items() if name not in DATA_FIELDS]


def parse_settings(spec: ModelSpec, pairs: list[str]) -> dict[str, Any]:
    """`--set n_hidden=128 --set cell=gru` -> {'n_hidden': 128, 'cell': 'gru'}, typed by the config's fields."""
    hints = typing.get_type_hints(spec.config_cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in hints or key in DATA_FIELDS:
            settable = sorted(set(hints) - set(DATA_FIELDS))
            raise UserError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(settable)}")
        out[key] = parse_value(text, hints[key], key)
    return out


def parse_value(text: str, hint: Any, key: str) -> Any:
    """Turn a command-line string into the field's type (bool, int, float, str, Literal, or X | None)."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if is_union else (hint,)
    if type(None) in options and text.lower() == "none":
        return None
    for kind in (o for o in options if o is not type(None)):
        if typing.get_origin(kind) is typing.Literal:
            if text in typing.get_args(kind):
                return text
            continue
        if kind is bool:
            if text.lower() in ("true", "1", "yes", "false", "0", "no"):
                return text.lower() in ("true", "1", "yes")
            continue
        try:
            return kind(text)
        except (TypeError, ValueError):
            continue
    raise UserError(f"--set {key}={text}: not a valid value for {key} ({hint})")
