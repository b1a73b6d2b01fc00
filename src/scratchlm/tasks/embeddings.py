"""Word embeddings: word2vec's vectors, learnt from a text by predicting each word's neighbours, and GloVe's.

The data is the language model's word stream (`data/read.py`, the word tokenizer with `--min-count`
as its minimum frequency, ids in the token cache's memmap), with each word's count and the ids that end
a sentence (`Words`). The models of this task make their own batches from it (models/base.py,
`WordVectorModel`): word2vec the (centre, context) pairs with their negatives, laid with numpy a block at
a time (scratchlm/data/contexts.py); GloVe the non-zero co-occurrence counts. The trainer runs the loop;
the model takes each step itself (`Word2Vec.sgd_step`: the gradients written out, applied with
index_add_; GloVe's AdaGrad), at the rate of the schedule (`linear` for word2vec, which falls to zero as
word2vec's does). The training loss is the mean over every pair of the epoch. Validation: word2vec's
loss and pair accuracy (the true context scored above all k negatives) on a fixed sample of 20,000 pairs
of the text itself: word2vec has no held-out text, this is a check that the objective falls.

The verbs (similar, analogy, map, export, debias, eval on analogy and similarity files) are those of
every run with word vectors (scratchlm/vectors.py); `import_vectors` makes a run of a word2vec file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchlm.checkpoint import BEST, TOKENIZER, RunDir, save_weights
from scratchlm.config import TrainConfig
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.clean import warn_repaired
from scratchlm.data.contexts import Words
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.pipeline import OneCorpus
from scratchlm.data.read import Corpus, open_corpus
from scratchlm.data.tokenize import DOC, SPECIALS, Tokenizer, TokenizerSpec, WordTokenizer
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json
from scratchlm.models.base import WordVectorModel, parameter_count
from scratchlm.models.registry import get_spec
from scratchlm.models.word2vec import Word2Vec
from scratchlm.tasks.base import Batch, BestCheckpoint, Run, Task
from scratchlm.vectors import (
    DEFINITIONAL_PAIRS,
    EQUALIZE_PAIRS,
    NEUTRAL_WORDS,
    WordVectorVerbs,
    read_word2vec,
)

DATA_OPTIONS = ("data", "encoding", "min_count", "vocab_size", "phrases", "phrase_threshold", "repair")
COUNT_CHUNK = 1 << 20  # ids counted at a time: bincount copies its chunk as int64, 8 MB at this size


@dataclass
class CorpusConfig:
    """The text word2vec learns from; saved in config.json."""

    path: str  # a text file, a folder of text files, or the built-in human numbers
    encoding: str | None = None  # None: UTF-8, else detected; or a codec name
    min_count: int = 5  # words seen fewer times are left out (the word2vec tool's -min-count)
    vocab_size: int | None = None  # keep at most this many words, the most frequent; None: every word of min_count
    phrases: int = 0  # passes of phrase detection before the vocabulary (word2phrase: new york -> new_york)
    phrase_threshold: float = 100.0  # a pair is joined when its phrase score is above this (word2phrase's 100)
    imported: str | None = None  # the vectors file an imported run was made from (it cannot train)
    repair: bool = True  # Windows-1252 characters decoded as latin-1 (C1 controls) are repaired (data/clean.py)

    def __post_init__(self) -> None:
        if self.imported is None and self.path != HUMAN_NUMBERS:
            self.path = str(Path(self.path).expanduser().resolve())
        if self.min_count < 1:
            raise UserError(f"--min-count {self.min_count} must be at least 1")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise UserError(f"--vocab-size {self.vocab_size} must be at least 1")

    @property
    def tokenizer(self) -> TokenizerSpec:
        # the tokenizer's vocabulary also holds the specials and the newline token
        size = None if self.vocab_size is None else self.vocab_size + len(SPECIALS) + 1
        return TokenizerSpec(kind="word", min_freq=self.min_count, vocab_size=size, phrases=self.phrases,
                             phrase_threshold=self.phrase_threshold)


def trainable_rows(tokenizer: Tokenizer) -> np.ndarray:
    """The ids that are words: not a special, not the newline token."""
    itos = tokenizer.itos
    return np.array([i for i in range(len(SPECIALS), len(itos)) if itos[i] != WordTokenizer.NEWLINE], dtype=np.int64)


@dataclass
class EmbeddingData(OneCorpus):
    tokenizer: Tokenizer
    ids: np.ndarray  # the whole stream of token ids (a memmap)
    counts: np.ndarray  # (V,) occurrences of each word; 0 for the specials and the newline token
    boundary: np.ndarray  # (V,) 1 for the ids that end a sentence: the newline token and <doc>
    corpus: Corpus
    repaired_lines: int = 0  # lines whose mojibake was repaired as they were read

    def summary(self) -> dict:
        return {**self.corpus_summary(), "tokens": len(self.ids), "words": int(self.counts.sum()),
                "vocabulary": int((self.counts > 0).sum()), "lines_repaired": self.repaired_lines}

    @property
    def words(self) -> Words:
        """What the word-vector models learn from."""
        return Words(self.ids, self.counts, self.boundary)


def load_embedding_data(cfg: CorpusConfig, cache_dir: Path | None, tokenizer: Tokenizer | None = None) -> EmbeddingData:
    if cfg.imported is not None:
        raise UserError(f"this run was imported from {cfg.imported}: it holds vectors only and cannot be trained")
    corpus = open_corpus(cfg.path, cfg.encoding, cfg.repair)
    tokenizer, ids, repaired = tokenize_corpus(corpus, tokenizer or cfg.tokenizer, cache_dir)
    if tokenizer.kind != "word":
        raise UserError("word2vec learns from words: its tokenizer is the word tokenizer")
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for start in range(0, len(ids), COUNT_CHUNK):  # a chunk at a time: the memmap is never read whole
        counts += np.bincount(ids[start:start + COUNT_CHUNK], minlength=tokenizer.vocab_size)
    words = np.zeros_like(counts)
    rows = trainable_rows(tokenizer)
    words[rows] = counts[rows]
    if words.sum() == 0:
        raise UserError(f"{cfg.path}: no word is seen {cfg.min_count} times or more; lower --min-count")
    return EmbeddingData(tokenizer, ids, words, sentence_ends(tokenizer), corpus, repaired)


def sentence_ends(tokenizer: Tokenizer) -> np.ndarray:
    boundary = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    boundary[DOC] = 1
    if WordTokenizer.NEWLINE in tokenizer.stoi:
        boundary[tokenizer.stoi[WordTokenizer.NEWLINE]] = 1
    return boundary


# ---------------------------------------------------------------- the run


class EmbeddingsRun(WordVectorVerbs, Run):
    """A word2vec run (trained, or imported from a word2vec file): similar, analogy, map, export,
    debias and eval.

        run = scratchlm.load("runs/w2v")
        run.similar("king")
        run.analogy("man", "woman", "king", method="3cosmul")
        run.eval(analogies="questions-words.txt", similarity=["wordsim353.tsv"])
        run.map(top=200, out="map.png", method="tsne")
        run.export("vectors.bin", format="binary")
        run.debias(out="runs/w2v-debiased")
    """

    @classmethod
    def task_title(cls) -> str:
        return Embeddings.title

    def word_vectors(self) -> tuple[list[str], np.ndarray]:
        """The words, most frequent first, and their input vectors (V x D)."""
        rows = trainable_rows(self.tokenizers[TOKENIZER])
        itos = self.tokenizers[TOKENIZER].itos
        return [itos[i] for i in rows], self.model.word_matrix().detach().cpu().numpy()[rows]

    def eval(self, data: str | None = None, encoding: str | None = None, analogies: str | None = None,
             similarity: str | list[str] | None = None, restrict_vocab: int | None = 30_000,
             method: str = "3cosadd") -> dict:
        """Analogy accuracy (per section and overall, skipped questions counted) on `analogies`, and the
        Spearman and Pearson correlations with human scores (and the out-of-vocabulary ratio) on each
        `similarity` file. `restrict_vocab` applies to the analogies, as the published figures do."""
        if data is not None:
            raise UserError("word vectors are evaluated on --analogies FILE and --similarity FILE, not --data")
        similarity = [similarity] if isinstance(similarity, str) else list(similarity or [])
        if analogies is None and not similarity:
            raise UserError("give --analogies FILE and/or --similarity FILE (the standard ones: questions-words.txt, "
                            "wordsim353.tsv, simlex999.txt)")
        if restrict_vocab is not None and restrict_vocab < 1:
            raise UserError(f"--restrict-vocab {restrict_vocab} must be at least 1")
        result: dict[str, Any] = {"run": str(self.path)}
        if analogies is not None:
            found = self.vectors.eval_analogies(analogies, restrict_vocab, method)
            result.update({"analogy_accuracy": found["accuracy"], "analogy_correct": found["correct"],
                           "analogy_questions": found["questions"], "analogy_skipped": found["skipped"],
                           "restrict_vocab": restrict_vocab if restrict_vocab is not None else len(self.vectors),
                           "analogy_sections": found["sections"]})
        for path in similarity:
            found = self.vectors.eval_similarity(path)
            stem = Path(path).stem
            result.update({f"{stem}_spearman": found["spearman"], f"{stem}_pearson": found["pearson"],
                           f"{stem}_oov_ratio": found["oov_ratio"], f"{stem}_pairs": found["pairs"]})
        return result

    def debias(self, out: str | Path, pairs: list[tuple[str, str]] | None = None,
               equalize: list[tuple[str, str]] | None = None, specific: list[str] | None = None,
               words: list[str] | None = None, analogies: list[tuple[str, str, str]] | None = None) -> dict:
        """Hard debiasing (Bolukbasi et al. 2016) into a new run at `out`: the bias direction from the
        definitional `pairs`, every word neutralized except the gender-specific ones (the pairs, the
        equalize pairs and `specific`), then the `equalize` pairs equalized. Returns, for `words`, the
        projection on the direction before and after, and the answers of a few analogies before and after.

        What it does not fix (Gonen and Goldberg 2019): the bias lives on in the neighbourhoods. Words
        that were near each other for their gender stay near each other, and a classifier still tells
        the formerly female-biased words from the male-biased ones; the projection on one direction is
        only the most visible trace of it."""
        pairs, equalize = list(pairs or DEFINITIONAL_PAIRS), list(equalize or EQUALIZE_PAIRS)
        before = self.vectors
        direction, unknown = before.bias_direction(pairs)
        keep = {w for pair in pairs + equalize for w in pair} | set(specific or [])
        neutral = [i for i, w in enumerate(before.words) if w not in keep]
        after = before.debiased(direction, neutral, equalize)
        shown = [w for w in (words or NEUTRAL_WORDS) if w in before.index]
        projections = [{"word": w, "before": float(before.unit[before.index[w]] @ direction),
                        "after": float(after.unit[after.index[w]] @ direction)} for w in shown]
        asked = analogies or [("man", "woman", "doctor"), ("he", "she", "programmer"), ("man", "woman", "king"),
                              ("he", "she", "boss")]
        answers = []
        for a, b, c in asked:
            if all(w in before.index for w in (a, b, c)):
                answers.append({"analogy": f"{a} : {b} :: {c} : ?", "before": [w for w, _ in before.analogy(a, b, c, 3)],
                                "after": [w for w, _ in after.analogy(a, b, c, 3)]})
        write_vector_run(out, after.words, after.unit, {"debiased_from": str(self.path), "pairs": pairs,
                                                         "equalize": equalize})
        return {"out": str(out), "pairs_used": len(pairs) - len(unknown), "pairs_unknown": unknown,
                "neutralized": len(neutral), "projections": projections, "analogies": answers}


def write_vector_run(out: str | Path, words: list[str], matrix: np.ndarray, origin: dict) -> Path:
    """A run directory that holds `words` and their vectors (the verbs' run; it cannot train)."""
    from scratchlm import __version__

    run_dir = RunDir(out)
    if run_dir.exists:
        raise UserError(f"{out} already holds a run; choose another --out")
    seen, tokens, rows = set(SPECIALS) | {WordTokenizer.NEWLINE}, list(SPECIALS), []
    for i, word in enumerate(words):
        if word not in seen and word.strip() == word and word and not any(ch.isspace() for ch in word):
            seen.add(word)
            tokens.append(word)
            rows.append(i)
    if not rows:
        raise UserError("none of the words can be kept (all empty, repeated, or holding whitespace)")
    spec = get_spec("word2vec")
    config = spec.make_config({"vocab_size": len(tokens)}, {"dim": int(matrix.shape[1])})
    model = Word2Vec(config)
    with torch.no_grad():
        model.input.weight.zero_()
        model.input.weight[len(SPECIALS):] = torch.from_numpy(np.ascontiguousarray(matrix[rows], dtype=np.float32))
    source = origin.get("imported") or f"debiased from {origin.get('debiased_from')}"
    data = CorpusConfig(path=source, imported=source)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir.file(TOKENIZER), WordTokenizer(tokens).to_json())
    save_weights(run_dir.file(BEST), model, 0)
    run_dir.write_config({"task": Embeddings.name, "model": {"name": spec.name, "config": asdict(config),
                                                             "parameters": parameter_count(model)},
                          "data": {"config": asdict(data), "words": len(rows), "left_out": len(words) - len(rows)},
                          "origin": origin, "versions": {"scratchlm": __version__}})
    return run_dir.path


def import_vectors(path: str | Path, out: str | Path, binary: bool | None = None, unicode_errors: str = "strict",
                   limit: int | None = None) -> EmbeddingsRun:
    """A run made of a word2vec-format file (text or binary, told apart unless `binary` says), which
    every verb of word vectors accepts: published vectors, or another tool's."""
    vectors = read_word2vec(path, binary, unicode_errors, limit)
    write_vector_run(out, vectors.words, vectors.matrix, {"imported": str(Path(path).resolve())})
    return EmbeddingsRun.load(out)


class Embeddings(Task):
    name = "embeddings"
    title = "word-embedding"
    dims = ("vocab_size",)
    sums = ("loss", "correct", "pairs")
    metrics = ("loss", "accuracy")
    headline = "accuracy"
    data_config_cls = CorpusConfig
    tokenizer_files = (TOKENIZER,)
    run_class = EmbeddingsRun
    best = BestCheckpoint({"loss": "min"}, titles={"accuracy": "pair accuracy"},
                          why="The validation pairs are a fixed sample of the text itself: word2vec keeps no text apart, "
                              "and with the rate falling to zero the last epoch is nearly always the best.")

    def data_config(self, options: dict[str, Any]) -> CorpusConfig:
        check_options(options)
        if not options.get("data"):
            raise UserError("word2vec needs a text: give --data FILE (a folder of text files, or human-numbers)")
        return CorpusConfig(path=options["data"], encoding=options.get("encoding"),
                            **{k: options[k] for k in ("min_count", "vocab_size", "phrases", "phrase_threshold", "repair")
                               if options.get(k) is not None})

    def check_resume(self, saved: CorpusConfig, options: dict[str, Any]) -> None:
        check_options(options)
        if saved.imported is not None:
            raise UserError("this run was imported from a vectors file: it holds vectors only and cannot be trained")
        for key, value in options.items():
            was = getattr(saved, "path" if key == "data" else key)
            if key == "data" and value != HUMAN_NUMBERS:
                value = str(Path(value).expanduser().resolve())
            if value != was:
                raise UserError(f"--resume: the run's {key.replace('_', ' ')} is {was!r}, not {value!r}")

    def load_data(self, cfg: CorpusConfig, cache_dir: Path | None, tokenizers: dict[str, Tokenizer] | None,
                  train_cfg: TrainConfig) -> EmbeddingData:
        data = load_embedding_data(cfg, cache_dir, (tokenizers or {}).get(TOKENIZER))
        warn_repaired(data.repaired_lines)
        return data

    def model_dims(self, tokenizers: dict[str, Tokenizer]) -> dict[str, int]:
        return {"vocab_size": tokenizers[TOKENIZER].vocab_size}

    def example_dims(self) -> tuple[str, dict[str, int]]:
        return "a 30,000-word vocabulary", {"vocab_size": 30_000 + len(SPECIALS) + 1}

    def init_model(self, model: WordVectorModel, data: EmbeddingData) -> None:
        model.take_counts(data.counts)

    def batches(self, data: EmbeddingData, cfg: TrainConfig, model: WordVectorModel, world: World):
        """The model's own: word2vec's pairs of the stream, GloVe's co-occurrence counts."""
        return model.training_batches(data.words, cfg.batch_size, cfg.seed)

    def loss(self, net: nn.Module, model: WordVectorModel, batch: Batch, carry: Any,
             progress: float = 0.0) -> tuple[torch.Tensor, Any, int]:
        loss, size = model.batch_loss(batch)
        return loss, None, size

    def step(self, model: WordVectorModel, batch: Batch, lr: float, precision: str = "fp32") -> tuple[float, int]:
        return model.take_step(batch, lr, precision)

    def eval_sums(self, model: WordVectorModel, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        """Summed loss, right predictions (word2vec: the true context above all k negatives; GloVe: a count
        predicted within a factor of 2), and how many."""
        loss, correct, n = model.eval_sums(batch)
        return torch.stack([loss.double(), correct.double(), torch.tensor(float(n), dtype=torch.float64)]), None

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        pairs = max(sums["pairs"], 1)
        return {"loss": sums["loss"] / pairs, "accuracy": sums["correct"] / pairs, "pairs": int(sums["pairs"])}

    def batch_shape(self, cfg: TrainConfig) -> str:
        return f"the pairs of {cfg.batch_size} words"

    def matmul_rows(self, model: nn.Module, cfg: TrainConfig, world: World) -> int:
        return cfg.batch_size * 4  # about four pairs a word after subsampling

    def describe(self, cfg: CorpusConfig) -> str:
        return cfg.imported or cfg.path


def check_options(options: dict[str, Any]) -> None:
    if unknown := sorted(set(options) - set(DATA_OPTIONS)):
        hint = " (word2vec's minimum count is --min-count)" if "min_freq" in unknown else ""
        raise UserError(f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: not an option of word2vec's "
                        f"data (they are --data, --encoding, --min-count, --vocab-size, --phrases, --phrase-threshold){hint}")


TASK = Embeddings()
