"""Text classification: a sentence (or a document) in, one label out.

The data is labelled text (`data/labelled.py`: a folder per label, a file per label, or a CSV/TSV),
held out as a stratified share or by k-fold cross-validation; the batches are length-bucketed examples;
the loss is the cross-entropy of the label; the metrics are that loss and the accuracy. The best
checkpoint is the one with the highest validation accuracy.

A classifier can start from a trained language model (`train --model ulmfit --from RUN`, Howard and
Ruder 2018): the base run's tokenizer becomes the classifier's (a word it never saw is <unk>, so the
vocabulary, and with it the embedding, always fit), its registry entry and config become the classifier's
`encoder`, and its weights fill the classifier's body before the first step (`init_model`).

The run directory holds `tokenizer.json` and `labels.json`, the label names in the order of the logits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.checkpoint import TOKENIZER, RunDir
from scratchlm.config import TrainConfig
from scratchlm.data.batches import pad
from scratchlm.data.labelled import (
    LabelledBatches,
    LabelledConfig,
    encode_texts,
    fold_assignment,
    lengths_of,
    read_labelled,
    split_examples,
)
from scratchlm.data.tokenize import Tokenizer, TokenizerSpec, tokenizer_from_file, train_tokenizer
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json
from scratchlm.models.registry import ModelSpec, get_spec
from scratchlm.tasks.base import Batch, BestCheckpoint, Run, Task, blank_texts, load_best_weights, read_run_config

LABELS = "labels.json"
LABELS_FORMAT = "scratchlm-labels/1"
DATA_OPTIONS = ("data", "encoding", "tokenizer", "vocab_size", "min_freq", "valid_fraction", "label_from_filename",
                "text_column", "label_column", "max_length", "split_seed", "folds", "fold", "base_run", "embeddings",
                "repair", "strict")
WRONG = 5  # the most confidently wrong examples `eval` shows


class Labels:
    """The label names, in the order of the classifier's outputs: the run directory's labels.json."""

    kind = "labels"

    def __init__(self, classes: Sequence[str]):
        self.classes = tuple(classes)

    @property
    def vocab_size(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        return {"format": LABELS_FORMAT, "labels": list(self.classes)}

    @classmethod
    def from_file(cls, path: Path) -> Labels:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot be read as the run's labels ({e})") from None
        if obj.get("format") != LABELS_FORMAT or not isinstance(obj.get("labels"), list):
            raise UserError(f"{path}: not a scratchlm labels file")
        return cls(obj["labels"])


class Base:
    """A trained language model's run, as `--from` names it: its entry, config, tokenizer and folder."""

    def __init__(self, path: str):
        run_dir = RunDir(path)
        config, _ = read_run_config(run_dir)
        if config.get("task") != "lm":
            raise UserError(f"--from {path}: a {config.get('task')} run; a classifier starts from a language-model run")
        self.path, self.run_dir = path, run_dir
        self.name, self.config = config["model"]["name"], config["model"]["config"]
        if not run_dir.file(TOKENIZER).exists():
            raise UserError(f"--from {path}: {TOKENIZER} is missing; the classifier takes the run's vocabulary")
        self.tokenizer = tokenizer_from_file(run_dir.file(TOKENIZER))

    def encoder(self) -> dict:
        return {"name": self.name, "config": self.config}

    def load_into(self, body: nn.Module) -> None:
        """The base run's best weights into `body`, the classifier's copy of its model (output layer taken off)."""
        spec = get_spec(self.name)
        lm = spec.build(spec.saved_config(self.config, {"vocab_size": self.tokenizer.vocab_size}))
        load_best_weights(self.run_dir, lm)
        wanted = body.state_dict()
        body.load_state_dict({k: v for k, v in lm.state_dict().items() if k in wanted})


class Vectors:
    """Word vectors from a run that has them (`word_vectors()`: a word2vec run, a word-level language model)."""

    def __init__(self, path: str):
        words, matrix = Run.load(path, device="cpu").word_vectors()
        self.path, self.matrix = path, np.asarray(matrix, dtype=np.float32)
        self.row = {w: i for i, w in enumerate(words)}

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def fill(self, embedding: nn.Embedding, tokenizer: Tokenizer) -> int:
        """Copy the vector of every word of `tokenizer` the vectors have into its row; the number copied."""
        found = [(i, self.row[w]) for i, w in enumerate(tokenizer.itos) if w in self.row]
        if found:
            rows, source = zip(*found, strict=True)
            with torch.no_grad():
                embedding.weight[list(rows)] = torch.from_numpy(self.matrix[list(source)])
        return len(found)


class ClassificationData:
    """The examples, split and tokenized: what the batches, config.json and evaluation need."""

    def __init__(self, cfg: LabelledConfig, tokenizers: dict | None):
        self.cfg = cfg
        self.labelled = labelled = read_labelled(cfg)
        self.train_index, self.valid_index = split_examples(labelled.labels, cfg)
        self.base = Base(cfg.base_run) if cfg.base_run else None
        self.vectors = Vectors(cfg.embeddings) if cfg.embeddings else None
        if tokenizers:
            self.tokenizer, self.labels = tokenizers[TOKENIZER], tokenizers[LABELS]
            if self.labels.classes != labelled.classes:
                raise UserError(f"{cfg.path}: its labels ({', '.join(labelled.classes)}) are not the run's "
                                f"({', '.join(self.labels.classes)})")
        else:
            self.labels = Labels(labelled.classes)
            self.tokenizer = self.base.tokenizer if self.base else train_tokenizer(
                [[labelled.texts[i] for i in self.train_index]], cfg.tokenizer)
        ids = encode_texts(self.tokenizer, labelled.texts, cfg.max_length)
        self.train_ids = tuple(ids[i] for i in self.train_index)
        self.valid_ids = tuple(ids[i] for i in self.valid_index)

    @property
    def tokenizers(self) -> dict:
        return {TOKENIZER: self.tokenizer, LABELS: self.labels}

    @property
    def content_hash(self) -> str:
        return self.labelled.content_hash

    def summary(self) -> dict:
        counts = np.bincount(self.labelled.labels, minlength=len(self.labels.classes))
        valid_tokens = np.concatenate(self.valid_ids)
        return {"encodings": self.labelled.encodings, "examples": len(self.labelled.texts),
                **self.labelled.screen.summary(),
                "labels": dict(zip(self.labels.classes, counts.tolist(), strict=True)),
                "train_examples": len(self.train_ids), "valid_examples": len(self.valid_ids),
                "vocab": self.tokenizer.vocab_size, "valid_unknown": float((valid_tokens == 0).mean()),
                **({"words_with_vectors": sum(w in self.vectors.row for w in self.tokenizer.itos)} if self.vectors else {})}


class ClassificationRun(Run):
    """A classifier's run: classify and eval.

        run = scratchlm.load("runs/polarity")
        run.classify(["a gorgeous , witty film", "completely lacking in good taste"])
        run.eval()                      # accuracy, per-label precision, recall and F1, confusion matrix
        scratchlm.cross_validate("runs/polarity", folds=10)   # ten runs, one per held-out fold
    """

    @classmethod
    def task_title(cls) -> str:
        return Classification.title

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tokenizers[TOKENIZER]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.tokenizers[LABELS].classes

    @property
    def data_config(self) -> LabelledConfig:
        return LabelledConfig(**self.config["data"]["config"])

    @torch.no_grad()
    def probabilities(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """(N, labels) the probability of each label for each text; batched by length, each result its own."""
        ids = encode_texts(self.tokenizer, [" ".join(t.split()) for t in texts], self.data_config.max_length)
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float64)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            rows = [ids[i] for i in chunk]
            logits, _ = self.model(pad(rows).to(self.device), lengths_of(rows).to(self.device))
            out[chunk] = F.softmax(logits.float(), -1).cpu().numpy()
        return out

    def classify(self, texts: str | Sequence[str], all_labels: bool = False) -> list[dict]:
        """Each text's most likely label and its probability (with `all_labels`, every label's). An empty text
        gets label None (with a warning), so the results stay aligned with the texts."""
        if isinstance(texts, str):
            texts = [texts]
        blank = blank_texts(texts, "result")
        probs = iter(self.probabilities([t for i, t in enumerate(texts) if i not in blank]))
        results = []
        for i, text in enumerate(texts):
            if i in blank:
                results.append({"text": text, "label": None, "probability": None,
                                **({"probabilities": None} if all_labels else {})})
                continue
            p = next(probs)
            best = int(p.argmax())
            result = {"text": text, "label": self.classes[best], "probability": float(p[best])}
            if all_labels:
                result["probabilities"] = dict(zip(self.classes, p.round(6).tolist(), strict=True))
            results.append(result)
        return results

    def examples(self, data: str | None, encoding: str | None) -> tuple[list[str], np.ndarray, str]:
        """The texts and labels (indices into `classes`) to evaluate on: the held-out split, or `data`."""
        cfg = self.data_config
        if data is None:
            labelled = read_labelled(cfg)
            index = split_examples(labelled.labels, cfg)[1]
            where = f"held-out fold {cfg.fold} of {cfg.folds}" if cfg.folds else "held-out split"
            return [labelled.texts[i] for i in index], labelled.labels[index], where
        if Path(data).is_file():  # a table, read with the run's columns
            layout = {"text_column": cfg.text_column, "label_column": cfg.label_column}
        else:
            layout = {"label_from_filename": cfg.label_from_filename}
        labelled = read_labelled(LabelledConfig(path=data, encoding=encoding, repair=cfg.repair, strict=cfg.strict,
                                                **layout))
        if unknown := sorted(set(labelled.classes) - set(self.classes)):
            raise UserError(f"{data}: the label(s) {', '.join(unknown)} are not the run's ({', '.join(self.classes)})")
        index = {c: i for i, c in enumerate(self.classes)}
        return labelled.texts, np.array([index[labelled.classes[k]] for k in labelled.labels]), data

    def eval(self, data: str | None = None, encoding: str | None = None, wrong: int = WRONG,
             confusion_png: str | Path | None = None) -> dict:
        """Accuracy, each label's precision, recall and F1, the confusion matrix (rows: the true label;
        also drawn to `confusion_png`, by default the run's confusion.png) and the `wrong` examples the
        model got wrong most confidently; on the held-out split, or on labelled `data` read as the run's."""
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        texts, truth, where = self.examples(data, encoding)
        probs = self.probabilities(texts)
        predicted = probs.argmax(1)
        labels = list(range(len(self.classes)))
        precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
        matrix = confusion_matrix(truth, predicted, labels=labels)
        loss = float(-np.log(np.clip(probs[np.arange(len(truth)), truth], 1e-12, None)).mean())
        png = Path(confusion_png) if confusion_png else self.path / "confusion.png"
        from scratchlm.plots import plot_confusion

        plot_confusion(matrix, self.classes, png, f"{self.spec.name}, {where}")
        missed = np.flatnonzero(predicted != truth)
        missed = missed[np.argsort(-probs[missed, predicted[missed]], kind="stable")][:wrong]
        return {"run": str(self.path), "data": where, "examples": len(texts),
                "accuracy": float((predicted == truth).mean()), "loss": loss, "macro_f1": float(f1.mean()),
                "per_label": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                  "support": int(support[i])} for i, c in enumerate(self.classes)},
                "confusion": {"labels": list(self.classes), "matrix": matrix.tolist()}, "confusion_png": str(png),
                "most_confidently_wrong": [{"text": texts[i], "label": self.classes[truth[i]],
                                            "predicted": self.classes[predicted[i]],
                                            "probability": float(probs[i, predicted[i]])} for i in missed]}


class Classification(Task):
    name = "classification"
    title = "classification"
    dims = ("vocab_size", "n_classes")
    sums = ("loss", "correct", "examples")
    metrics = ("loss", "accuracy")
    headline = "accuracy"
    data_config_cls = LabelledConfig
    tokenizer_files = (TOKENIZER, LABELS)
    run_class = ClassificationRun
    best = BestCheckpoint({"accuracy": "max", "loss": "min"},
                          "Accuracy on the held-out examples; `scratchlm eval` adds each label's precision, recall and F1.")

    def data_config(self, options: dict[str, Any]) -> LabelledConfig:
        check_options(options)
        given = {"tokenizer", "vocab_size", "min_freq"} & set(options)
        if options.get("base_run") and given:
            raise UserError(f"--from takes the language model's tokenizer; drop "
                            f"{', '.join('--' + k.replace('_', '-') for k in sorted(given))}")
        tokenizer = {"kind": options.get("tokenizer") or "word",
                     **{k: options[k] for k in ("vocab_size", "min_freq") if options.get(k) is not None}}
        fields_ = {k: options[k] for k in DATA_OPTIONS if k not in ("data", "tokenizer", "vocab_size", "min_freq")
                   and options.get(k) is not None}
        return LabelledConfig(path=options.get("data"), tokenizer=TokenizerSpec(**tokenizer), **fields_)

    def check_resume(self, saved: LabelledConfig, options: dict[str, Any]) -> None:
        check_options(options)
        wanted = asdict(self.data_config({**data_options_of(saved), **options}))
        for key, was in asdict(saved).items():
            if wanted[key] != was:
                raise UserError(f"--resume: the run's {key.replace('_', ' ')} is {was!r}, not {wanted[key]!r}; its data "
                                "is fixed in its config.json")

    def load_data(self, cfg: LabelledConfig, cache_dir: Path | None, tokenizers: dict | None,
                  train_cfg: TrainConfig) -> ClassificationData:
        data = ClassificationData(cfg, tokenizers)
        data.labelled.screen.warn("example")
        return data

    def model_dims(self, tokenizers: dict) -> dict[str, int]:
        return {"vocab_size": tokenizers[TOKENIZER].vocab_size, "n_classes": tokenizers[LABELS].vocab_size}

    def data_dims(self, data: ClassificationData, spec: ModelSpec) -> dict[str, Any]:
        """With --from, the base language model is the classifier's encoder, fixed as the vocabulary is."""
        dims = self.model_dims(data.tokenizers)
        names = {f.name for f in fields(spec.config_cls)}
        if data.vectors is not None:
            if "encoder" in names or "n_embed" not in names:
                raise UserError(f"--embeddings start the word vectors of a classifier that has its own; {spec.name} "
                                "does not (use bag-of-embeddings or rnn-classifier)")
            dims["n_embed"] = data.vectors.dim  # the width of the vectors given
        if data.base is None:
            return dims
        if "encoder" not in names:
            raise UserError(f"--from gives a language model's body to a classifier built on one; {spec.name} is not "
                            "(use --model ulmfit)")
        return {**dims, "encoder": data.base.encoder()}

    def init_model(self, model: nn.Module, data: ClassificationData) -> None:
        if data.base is not None:
            data.base.load_into(model.body)
        if data.vectors is not None:
            data.vectors.fill(model.embed, data.tokenizer)

    def save_tokenizers(self, run_dir: RunDir, data: ClassificationData) -> None:
        atomic_write_json(run_dir.file(TOKENIZER), data.tokenizer.to_json())
        atomic_write_json(run_dir.file(LABELS), data.labels.to_json())

    def read_tokenizers(self, run_dir: RunDir) -> dict:
        for name in self.tokenizer_files:
            if not run_dir.file(name).exists():
                what = "inputs" if name == TOKENIZER else "outputs"
                raise UserError(f"{run_dir.path}: {name} is missing, so the model's {what} cannot be read; the run "
                                "cannot be used or resumed (restore the file or train a new run)")
        return {TOKENIZER: tokenizer_from_file(run_dir.file(TOKENIZER)), LABELS: Labels.from_file(run_dir.file(LABELS))}

    def example_dims(self) -> tuple[str, dict[str, int]]:
        return "a 10,000-word vocabulary and two labels", {"vocab_size": 10_000, "n_classes": 2}

    def batches(self, data: ClassificationData, cfg: TrainConfig, model: nn.Module, world: World):
        labels = data.labelled.labels
        train = LabelledBatches(data.train_ids, labels[data.train_index], batch_size=cfg.batch_size)
        valid = LabelledBatches(data.valid_ids, labels[data.valid_index], batch_size=min(cfg.batch_size, len(data.valid_ids)),
                                drop_last=False)
        return train.shard(world.rank, world.size), valid.shard(world.rank, world.size, even=False)

    def loss(self, net: nn.Module, model: nn.Module, batch: Batch, carry: Any,
             progress: float = 0.0) -> tuple[torch.Tensor, Any, int]:
        ids, lengths, labels = batch
        _, loss = net(ids, lengths, labels)
        return loss, None, int(lengths.sum())

    def eval_sums(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        ids, lengths, labels = batch
        sums = torch.zeros(len(self.sums), dtype=torch.float64)
        if len(ids) == 0:
            return sums, None
        logits, _ = model(ids, lengths)
        sums[0] = float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        sums[1] = float((logits.argmax(-1) == labels).sum())
        sums[2] = len(labels)
        return sums, None

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["examples"], 1)
        return {"loss": sums["loss"] / n, "accuracy": sums["correct"] / n, "examples": int(sums["examples"])}

    def batch_shape(self, cfg: TrainConfig) -> str:
        return f"{cfg.batch_size} examples"

    def describe(self, cfg: LabelledConfig) -> str:
        return cfg.path

    def fold_options(self, cfg: LabelledConfig, fold: int, folds: int) -> dict[str, Any]:
        """The data options of the run that holds out fold `fold` of `folds`: the run's own, cut anew."""
        return {**data_options_of(cfg), "folds": folds, "fold": fold}

    def fold_assignment(self, cfg: LabelledConfig, folds: int) -> list[int]:
        return fold_assignment(read_labelled(cfg).labels, folds, cfg.split_seed).tolist()


def data_options_of(cfg: LabelledConfig) -> dict[str, Any]:
    """The options that make `cfg` again (the inverse of `data_config`)."""
    options = {k: v for k, v in asdict(cfg).items() if k in DATA_OPTIONS and k != "tokenizer" and v is not None}
    options["data"] = cfg.path
    if cfg.base_run is None:
        options.update(tokenizer=cfg.tokenizer.kind, min_freq=cfg.tokenizer.min_freq)
        if cfg.tokenizer.vocab_size is not None:
            options["vocab_size"] = cfg.tokenizer.vocab_size
    return options


def check_options(options: dict[str, Any]) -> None:
    if unknown := sorted(set(options) - set(DATA_OPTIONS)):
        raise UserError(f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: not an option of classification "
                        "data (a model of the classification task trains on labelled text)")


TASK = Classification()
