"""Labelled text for classification: read in any of three layouts, checked, split, tokenized, batched.

    a folder per label (fastai's IMDB layout)   reviews/pos/0001.txt, reviews/neg/0002.txt: one file, one example
    a file per label (--label-from-filename)    rt-polarity/rt-polarity.pos, rt-polarity.neg: one line, one example;
                                                the label is what differs between the names (pos, neg)
    a CSV or TSV table                          a header row; --text-column and --label-column name the
                                                columns (default text and label), or give their numbers

Every file goes through the reader of the rest of scratchlm (`data/read.py`): UTF-8, else a byte-order
mark, else a detected encoding (rt-polarity is Windows-1252), or `--encoding`. A data set with a single
label, a label without examples, or a column that is not there is refused in one line. Each example is
screened (`data/clean.py`): Windows-1252 mojibake is repaired, and one that cannot be used (a control
character, a table row without its columns or its label) is left out with one warning, or, with
`strict`, refuses the data.

The examples are held out either as a seeded, stratified share (`valid_fraction`), or by k-fold
cross-validation (Kim 2014's protocol for rt-polarity): `fold_assignment` gives each example one of k
folds from the seed alone (stratified: each fold has the labels in their overall proportions), and the
run of fold i is trained on the others and evaluated on it.

Batches (`LabelledBatches`) hold examples of similar length together (sorted within pools of 50
batches, so little padding), drawn anew each epoch from (seed, epoch) alone:

    ids      (B, T)  token ids, PAD on the right      lengths (B,)   labels (B,)
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from scratchlm.data.batches import BucketedBatches, pad
from scratchlm.data.clean import Screen
from scratchlm.data.read import open_corpus, text_files
from scratchlm.data.tokenize import Tokenizer, TokenizerSpec
from scratchlm.errors import UserError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
NOT_LABELS = {"readme", "license", "licence", "copying"}  # files beside the labels' files, read by people
SPLIT_NAMES = {"train", "test", "valid", "validation", "dev", "unsup"}  # fastai's IMDB: imdb/train/pos ...


@dataclass
class LabelledConfig:
    """Where the labelled examples come from and how they are held out; saved in config.json."""

    path: str | None = None  # a folder (a subfolder or, with label_from_filename, a file per label) or a CSV/TSV
    label_from_filename: bool = False  # a folder of files, one per label, one example a line
    text_column: str | None = None  # a table's text column: a header name or a number (default "text")
    label_column: str | None = None  # a table's label column: a header name or a number (default "label")
    encoding: str | None = None  # None: UTF-8, else detected; or a codec name
    tokenizer: TokenizerSpec = field(default_factory=lambda: TokenizerSpec(kind="word"))
    max_length: int | None = 400  # an example's first tokens kept; None keeps all
    valid_fraction: float = 0.1  # share held out (stratified) when no folds are given
    split_seed: int = 0  # which examples are held out, and the fold of each
    folds: int | None = None  # k-fold cross-validation: the examples are cut into this many folds ...
    fold: int | None = None  # ... and this one (0-based) is held out
    base_run: str | None = None  # a trained language model's run: its tokenizer (and encoder) are the classifier's
    embeddings: str | None = None  # a run with word vectors (word2vec): they start the classifier's embedding
    repair: bool = True  # Windows-1252 characters decoded as latin-1 (C1 controls) are repaired (data/clean.py)
    strict: bool = False  # an unusable example refuses the data; else it is left out with a warning

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):
            self.tokenizer = TokenizerSpec(**self.tokenizer)
        if self.path is None:
            raise UserError("give the labelled examples as --data: a folder with a subfolder per label, a folder of "
                            "files one per label (--label-from-filename), or a CSV/TSV file")
        self.path = str(Path(self.path).expanduser().resolve())
        for name in ("base_run", "embeddings"):
            if getattr(self, name) is not None:
                setattr(self, name, str(Path(getattr(self, name)).expanduser().resolve()))
        if self.base_run is not None and self.embeddings is not None:
            raise UserError("--from and --embeddings both give the classifier its word vectors; give one")
        if not 0 < self.valid_fraction < 1:
            raise UserError(f"--valid-fraction {self.valid_fraction} must be between 0 and 1")
        if self.max_length is not None and self.max_length < 1:
            raise UserError(f"--max-length {self.max_length} must be at least 1")
        if self.folds is not None and not 2 <= self.folds <= 100:
            raise UserError(f"--folds {self.folds} must be between 2 and 100")
        if (self.fold is None) != (self.folds is None) or (self.fold is not None and not 0 <= self.fold < self.folds):
            raise UserError("a held-out fold needs folds = k and fold in 0 .. k-1")


@dataclass
class Labelled:
    """The examples as text, in a fixed order, with their labels (indices into `classes`)."""

    texts: list[str]
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]  # label names, sorted
    content_hash: str
    encodings: list[str]
    screen: Screen  # the lines repaired and the examples left out


def read_labelled(cfg: LabelledConfig) -> Labelled:
    """Every usable example of the folder or table, screened (see the module docstring)."""
    screen = Screen(repair=cfg.repair, strict=cfg.strict)
    path = Path(cfg.path)
    if not path.exists():
        raise UserError(f"{cfg.path}: no such file or folder (give a folder with a subfolder per label, "
                        "a folder of files one per label with --label-from-filename, or a CSV/TSV file)")
    if path.is_dir():
        if cfg.text_column or cfg.label_column:
            raise UserError(f"{cfg.path}: --text-column and --label-column are for a CSV/TSV file; this is a folder")
        read = read_files_per_label if cfg.label_from_filename else read_folders
        named = read(path, cfg.encoding, screen)
    else:
        if cfg.label_from_filename:
            raise UserError(f"{cfg.path}: --label-from-filename reads a folder of files, one per label; this is one file")
        named = read_table(path, cfg, screen)
    return check_labels(cfg.path, *named, screen)


def read_file(path: Path, encoding: str | None) -> tuple[str, str, str]:
    """A file's text, its encoding, and its hash (an empty file gives empty text: the caller names it)."""
    if path.stat().st_size == 0:
        return "", "", hashlib.sha256(b"").hexdigest()
    corpus = open_corpus(str(path), encoding)
    return "".join(corpus.sources[0].blocks()), corpus.sources[0].encoding, corpus.content_hash


def read_folders(root: Path, encoding: str | None, screen: Screen):
    """fastai's layout: root/LABEL/*.txt, each file one example."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root}: no subfolders, one per label; for a folder of files one per label "
                        "(rt-polarity.pos, rt-polarity.neg) add --label-from-filename")
    if {f.name.lower() for f in folders} <= SPLIT_NAMES:
        raise UserError(f"{root}: its subfolders ({', '.join(f.name for f in folders)}) are splits, not labels; "
                        f"pass the training split, e.g. --data {root / folders[0].name}")
    texts, labels, digest, encodings = [], [], hashlib.sha256(), set()
    for folder in folders:
        files = text_files(folder)
        if not files:
            raise UserError(f"{folder}: the label {folder.name!r} has no examples (no text files in its folder)")
        for file in files:
            text, used, file_hash = read_file(file, encoding)
            digest.update(f"{file.relative_to(root)}\0{file_hash}\0".encode())
            if text.strip() and (text := screen.line(" ".join(text.split()), str(file))) is not None:
                texts.append(text)
                labels.append(folder.name)
                encodings.add(used)
    return texts, labels, digest.hexdigest(), sorted(encodings)


def label_names(files: list[Path]) -> list[str]:
    """rt-polarity.pos, rt-polarity.neg -> pos, neg (the suffixes differ); pos.txt, neg.txt -> pos, neg."""
    suffixes = [f.suffix.lstrip(".") for f in files]
    if len({f.stem for f in files}) == 1 and all(suffixes):
        return suffixes
    return [f.stem for f in files]


def read_files_per_label(root: Path, encoding: str | None, screen: Screen):
    """A file per label, one example a line."""
    files = [p for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() not in {".md", ".rst"} and p.stem.lower() not in NOT_LABELS]
    if not files:
        raise UserError(f"{root}: no files, one per label, in the folder")
    names = label_names(files)
    if len(set(names)) < len(names):
        raise UserError(f"{root}: two files give the same label ({', '.join(f.name for f in files)}); "
                        "name each file after its label")
    texts, labels, digest, encodings = [], [], hashlib.sha256(), set()
    for file, name in zip(files, names, strict=True):
        text, used, file_hash = read_file(file, encoding)
        digest.update(f"{file.name}\0{file_hash}\0".encode())
        screened = (screen.line(" ".join(line.split()), f"{file}:{i}") if line.strip() else None
                    for i, line in enumerate(text.splitlines(), 1))
        lines = [line for line in screened if line is not None]
        if not lines:
            raise UserError(f"{file}: the label {name!r} has no examples (the file holds no non-empty line)")
        texts += lines
        labels += [name] * len(lines)
        encodings.add(used)
    return texts, labels, digest.hexdigest(), sorted(encodings)


def column_index(path: Path, header: list[str], given: str | None, default: str, option: str) -> int:
    name = given if given is not None else default
    if name in header:
        return header.index(name)
    if name.isdigit() and int(name) < len(header):
        return int(name)
    shown = ", ".join(repr(h) for h in header)
    hint = f"; choose one with {option}" if given is None else ""
    raise UserError(f"{path}: no column {name!r} (its columns are {shown}){hint}")


def read_table(path: Path, cfg: LabelledConfig, screen: Screen):
    """A CSV (comma) or TSV (tab) file with a header row; other file names are read as CSV."""
    text, used, digest = read_file(path, cfg.encoding)
    if not text.strip():
        raise UserError(f"{path}: the file is empty; give a CSV/TSV file with a header row and examples")
    rows = list(csv.reader(io.StringIO(text), delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ",")))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    header = [h.strip() for h in rows[0]]
    text_at = column_index(path, header, cfg.text_column, "text", "--text-column")
    label_at = column_index(path, header, cfg.label_column, "label", "--label-column")
    if text_at == label_at:
        raise UserError(f"{path}: the text and the label are the same column ({header[text_at]!r})")
    texts, labels = [], []
    for i, row in enumerate(rows[1:], 2):
        if len(row) <= max(text_at, label_at):
            screen.reject(f"{path}:{i}", f"has {len(row)} column(s), the header {len(header)}")
            continue
        label = row[label_at].strip()
        if not label:
            screen.reject(f"{path}:{i}", "the label is empty")
            continue
        if row[text_at].strip() and (text := screen.line(" ".join(row[text_at].split()), f"{path}:{i}")) is not None:
            texts.append(text)
            labels.append(label)
    return texts, labels, digest, [used]


def check_labels(where: str, texts: list[str], names: list[str], digest: str, encodings: list[str],
                 screen: Screen) -> Labelled:
    classes = tuple(sorted(set(names)))
    if len(classes) < 2:
        what = f"the label {classes[0]!r}" if classes else "no label"
        raise UserError(f"{where}: every example has {what}; a classifier needs at least two labels")
    index = {c: i for i, c in enumerate(classes)}
    return Labelled(texts, np.array([index[n] for n in names], dtype=np.int64), classes, digest, encodings, screen)


# ---------------------------------------------------------------- held-out examples


def fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) the fold of each example: stratified, shuffled from `seed` alone (scikit-learn's StratifiedKFold)."""
    from sklearn.model_selection import StratifiedKFold

    if np.bincount(labels).min() < folds:
        raise UserError(f"{folds} folds need at least {folds} examples of every label; "
                        f"the smallest label has {np.bincount(labels).min()}")
    out = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        out[held] = k
    return out


def split_examples(labels: np.ndarray, cfg: LabelledConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out examples' indices, each in file order."""
    if cfg.folds is not None:
        assignment = fold_assignment(labels, cfg.folds, cfg.split_seed)
        return np.flatnonzero(assignment != cfg.fold), np.flatnonzero(assignment == cfg.fold)
    from sklearn.model_selection import train_test_split

    if np.bincount(labels).min() < 2:
        raise UserError("every label needs at least two examples: one to learn from and one to hold out")
    n_valid = max(round(len(labels) * cfg.valid_fraction), len(np.unique(labels)))
    if n_valid >= len(labels) - len(np.unique(labels)) + 1:
        raise UserError(f"{len(labels)} examples are too few to hold out {cfg.valid_fraction:g} of them")
    train, valid = train_test_split(np.arange(len(labels)), test_size=n_valid, stratify=labels,
                                    random_state=cfg.split_seed)
    return np.sort(train), np.sort(valid)


def encode_texts(tokenizer: Tokenizer, texts: list[str], max_length: int | None) -> list[np.ndarray]:
    """Each text's ids, its first `max_length`; an example with no token at all is one <unk>."""
    out = []
    for text in texts:
        ids = tokenizer.encode_block(text)[:max_length]
        out.append(ids if len(ids) else np.zeros(1, dtype=np.int64))
    return out


# ---------------------------------------------------------------- batches


@dataclass(frozen=True)
class LabelledBatches(BucketedBatches):
    """Batches of examples, bucketed by length; see the module docstring."""

    ids: tuple[np.ndarray, ...]  # each example's token ids
    labels: np.ndarray  # (N,) each example's label
    examples: ClassVar[str] = "training example(s)"
    stream: ClassVar[int] = 11

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids])

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, lengths, labels) of batch k."""
        index = self.indices(k)
        return pad([self.ids[i] for i in index]), lengths_of([self.ids[i] for i in index]), torch.as_tensor(
            self.labels[index], dtype=torch.long)


def lengths_of(rows: list[np.ndarray]) -> torch.Tensor:
    return torch.tensor([len(r) for r in rows], dtype=torch.long)
