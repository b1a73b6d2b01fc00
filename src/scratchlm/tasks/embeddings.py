"""Word embeddings: word2vec's vectors, learnt from a text by predicting each word's neighbours.

The data is the language model's word stream (`data/read.py`, the word tokenizer with `--min-count`
as its minimum frequency, ids in the token cache's memmap); a newline or a document start ends a
sentence, which no window crosses, and the rare words (`<unk>`) are left out before the windows are
laid, as the word2vec tool drops them. The batches are made from the memmap in blocks, with numpy:

    stream      ... the cat sat on the mat \\n a dog ...      (a block: 64 batches of batch_size words)
    subsample   ... cat sat on mat \\n dog ...                 word w kept with p = (sqrt(f/t) + 1) t/f
    windows     each kept word draws its reach b in 1..window (word2vec's dynamic window, which weights
                near words more) and pairs with the kept words within b of it in its sentence
    negatives   drawn from the counts^(3/4), once per batch (shared) or k per pair

Batch k holds the pairs whose centre lies in words [k * batch_size, (k + 1) * batch_size) of the
stream; its block is drawn from (seed, epoch, block) alone, so a resumed run rebuilds it exactly and
memory stays flat whatever the corpus size. The trainer runs the loop; the task's `step` takes the SGD
step itself (`Word2Vec.sgd_step`: the gradients written out, applied with index_add_), at the rate of
the `linear` schedule, which falls to zero as word2vec's does. The training loss is the mean over
every pair of the epoch. Validation: the negative-sampling loss and pair accuracy (the true context
scored above all k negatives) on a fixed sample of 20,000 pairs of the text itself, with k negatives
each: word2vec has no held-out text, this is a check that the objective falls.

The verbs (similar, analogy, map, export, debias, eval on analogy and similarity files) are those of
every run with word vectors (scratchlm/vectors.py); `import_vectors` makes a run of a word2vec file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchlm.checkpoint import BEST, TOKENIZER, RunDir, save_weights
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.clean import warn_repaired
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.pipeline import OneCorpus
from scratchlm.data.read import Corpus, open_corpus
from scratchlm.data.tokenize import DOC, PAD, SPECIALS, Tokenizer, TokenizerSpec, WordTokenizer
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.files import atomic_write_json
from scratchlm.models.base import parameter_count
from scratchlm.models.registry import get_spec
from scratchlm.models.word2vec import Word2Vec
from scratchlm.tasks.base import Batch, Run, Task
from scratchlm.trainer import TrainConfig
from scratchlm.vectors import (
    DEFINITIONAL_PAIRS,
    EQUALIZE_PAIRS,
    NEUTRAL_WORDS,
    WordVectorVerbs,
    read_word2vec,
)

DATA_OPTIONS = ("data", "encoding", "min_count", "vocab_size", "phrases", "phrase_threshold", "repair")
BLOCK = 64  # batches made together: one numpy pass lays the windows of 64 x batch_size words
VALID_PAIRS = 20_000  # the fixed sample of pairs each evaluation scores
VALID_BLOCKS = 8  # ... taken from this many blocks spread over the stream
NEGATIVE_POWER = 0.75  # the unigram distribution raised to 3/4 (Mikolov et al. 2013b, 2.2)
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


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """The chance each word survives subsampling: (sqrt(f / t) + 1) t / f for frequency f (the word2vec
    tool's form of Mikolov et al. 2013b, eq. 5, which keeps a word of frequency t with probability 1 + ...
    capped at 1); 0 for what is not a word, 1 for every word when `sample` is 0."""
    keep = np.zeros(len(counts))
    words = counts > 0
    if sample == 0:
        keep[words] = 1.0
        return keep
    threshold = sample * counts.sum()
    c = counts[words].astype(np.float64)
    keep[words] = np.minimum((np.sqrt(c / threshold) + 1) * threshold / c, 1.0)
    return keep


def negative_cdf(counts: np.ndarray) -> np.ndarray:
    """The cumulative distribution of counts^(3/4): a uniform draw u is the word searchsorted(cdf, u)."""
    weights = counts.astype(np.float64) ** NEGATIVE_POWER
    return np.cumsum(weights / weights.sum())


def draw_negatives(cdf: np.ndarray, rng: np.random.Generator, shape) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), len(cdf) - 1)


def lay_windows(words: np.ndarray, keep: np.ndarray, boundary: np.ndarray, window: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Subsample a piece of the stream and lay each kept word's dynamic window over it.

    Returns (at, kept, neighbour, valid): the positions of the kept words in the piece, their ids, and
    (kept x 2 window) the index into `kept` of each neighbour at offsets -window..-1, 1..window, with
    `valid` marking those within the word's reach b (drawn in 1..window) and in its sentence.
    """
    sentence = np.cumsum(boundary[words])
    at = np.flatnonzero(rng.random(len(words)) < keep[words])
    kept, sentence = words[at].astype(np.int64), sentence[at]
    n = len(kept)
    reach = rng.integers(1, window + 1, n)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    neighbour = np.arange(n)[:, None] + offsets  # (n, 2 window)
    valid = (np.abs(offsets) <= reach[:, None]) & (neighbour >= 0) & (neighbour < n)
    neighbour = np.where(valid, neighbour, 0)
    valid &= sentence[neighbour] == sentence[:, None]
    return at, kept, neighbour, valid


class ContextBatches:
    """One epoch's batches, made a block at a time from the stream (see the module docstring).

    A batch is (inputs, mask, targets, negatives): skip-gram's centres, an empty mask and the context
    words; CBOW's context words (B x 2 window, padded, `mask` marking the real ones) and the centres.
    `negatives` is (M,) shared by the batch's pairs, or (B, k).
    """

    def __init__(self, data: EmbeddingData, config: Any, batch_size: int, seed: int, epoch: int = 0):
        self.ids, self.boundary, self.config, self.batch_size = data.ids, data.boundary, config, batch_size
        self.seed, self.epoch = seed, epoch
        self.keep = keep_probability(data.counts, config.sample)
        self.cdf = negative_cdf(data.counts)
        self.cached: tuple[int, list[Batch]] | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.ids) / self.batch_size)

    def for_epoch(self, epoch: int, seed: int) -> ContextBatches:
        batches = ContextBatches.__new__(ContextBatches)
        batches.__dict__.update(self.__dict__, epoch=epoch, seed=seed, cached=None)
        return batches

    def batch(self, k: int) -> Batch:
        block = k // BLOCK
        if self.cached is None or self.cached[0] != block:
            self.cached = (block, self.make_block(block))
        return self.cached[1][k % BLOCK]

    def batches(self, start: int = 0):
        for k in range(start, len(self)):
            yield self.batch(k)

    def make_block(self, block: int) -> list[Batch]:
        cfg, size = self.config, self.batch_size
        first = block * BLOCK * size
        words = np.asarray(self.ids[first:first + BLOCK * size])
        rng = np.random.default_rng([self.seed, self.epoch, block])
        at, kept, neighbour, valid = lay_windows(words, self.keep, self.boundary, cfg.window, rng)
        n_batches = min(BLOCK, len(self) - block * BLOCK)
        if cfg.cbow:
            rows = np.flatnonzero(valid.any(1))
            inputs = np.where(valid[rows], kept[neighbour[rows]], PAD)
            mask, targets = valid[rows].astype(np.float32), kept[rows]
        else:
            rows, column = np.nonzero(valid)  # row-major: the pairs come centre by centre, in text order
            inputs, targets = kept[rows], kept[neighbour[rows, column]]
            mask = None
        ends = np.searchsorted(at[rows] // size, np.arange(1, n_batches + 1))  # pairs up to each batch's end
        starts = np.concatenate([[0], ends[:-1]])
        if cfg.shared_negatives:
            negatives = draw_negatives(self.cdf, rng, (n_batches, cfg.shared_negatives))
        else:
            negatives = draw_negatives(self.cdf, rng, (len(rows), cfg.negative))
        empty = torch.empty(0)
        out = []
        for b, (s, e) in enumerate(zip(starts, ends, strict=True)):
            out.append((torch.from_numpy(inputs[s:e]), empty if mask is None else torch.from_numpy(mask[s:e]),
                        torch.from_numpy(targets[s:e]),
                        torch.from_numpy(negatives[b] if cfg.shared_negatives else negatives[s:e])))
        return out


class ValidationPairs:
    """A fixed sample of (centre, context) pairs with k negatives each, the same at every evaluation."""

    def __init__(self, data: EmbeddingData, config: Any, seed: int, batch_size: int = 4096):
        ids, boundary = data.ids, data.boundary
        keep, cdf = keep_probability(data.counts, config.sample), negative_cdf(data.counts)
        span = BLOCK * 512
        starts = np.linspace(0, max(len(ids) - span, 0), VALID_BLOCKS).astype(np.int64)
        centres, contexts = [], []
        for i, start in enumerate(dict.fromkeys(starts.tolist())):
            rng = np.random.default_rng([seed, 7919, i])
            _, kept, neighbour, valid = lay_windows(np.asarray(ids[start:start + span]), keep, boundary, config.window, rng)
            rows, column = np.nonzero(valid)
            pick = rng.permutation(len(rows))[:VALID_PAIRS // VALID_BLOCKS]
            centres.append(kept[rows[pick]])
            contexts.append(kept[neighbour[rows[pick], column[pick]]])
        centre, context = np.concatenate(centres), np.concatenate(contexts)
        negatives = draw_negatives(cdf, np.random.default_rng([seed, 7919, VALID_BLOCKS]), (len(centre), config.negative))
        self.items = [tuple(torch.from_numpy(a[s:s + batch_size]) for a in (centre, context, negatives))
                      for s in range(0, len(centre), batch_size)]

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, k: int) -> Batch:
        return self.items[k]

    def batches(self, start: int = 0):
        yield from self.items[start:]


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
    verbs = ("similar", "analogy", "map", "export", "debias")
    metric_titles = {"accuracy": "pair accuracy"}
    own_step = True
    mean_loss_over_tokens = True
    best_by_why = ("The validation pairs are a fixed sample of the text itself: word2vec keeps no text apart, and "
                   "with the rate falling to zero the last epoch is nearly always the best.")

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

    def init_model(self, model: nn.Module, data: EmbeddingData) -> None:
        if hasattr(model, "build_tree"):  # the hierarchical softmax's Huffman tree, from the counts
            model.build_tree(data.counts)

    def batches(self, data: EmbeddingData, cfg: TrainConfig, model: nn.Module, world: World):
        if world.size > 1:
            raise UserError("word2vec trains in one process (its steps are too small to split); run it without torchrun")
        if hasattr(model, "training_batches"):  # a model that learns from the counts, not the pairs (GloVe)
            return model.training_batches(data.ids, data.counts, data.boundary, cfg.batch_size, cfg.seed)
        train, valid = ContextBatches(data, model.config, cfg.batch_size, cfg.seed), ValidationPairs(data, model.config, cfg.seed)
        if len(valid) == 0:
            raise UserError("no word of the text has another beside it in its sentence (one word a line?); word2vec "
                            "learns a word from its neighbours")
        return train, valid

    def loss(self, net: nn.Module, model: nn.Module, batch: Batch, carry: Any,
             progress: float = 0.0) -> tuple[torch.Tensor, Any, int]:
        if hasattr(model, "batch_loss"):
            loss, entries = model.batch_loss(batch)
            return loss, None, entries
        inputs, mask, targets, negatives = batch
        h = model.hidden(inputs, mask if mask.numel() else None)
        if model.config.loss == "hs":
            return -model.log_probability(h, targets).mean(), None, len(targets)
        positive, negative = model.scores(h, targets, negatives)
        return model.pair_loss(positive, negative, negatives.dim() == 1).mean(), None, len(targets)

    def step(self, model: nn.Module, batch: Batch, lr: float, precision: str = "fp32") -> tuple[float, int]:
        if hasattr(model, "take_step"):  # GloVe: its step has no matrix product for bf16 to speed up
            return model.take_step(batch, lr)
        inputs, mask, targets, negatives = batch
        loss = model.sgd_step(inputs, mask if mask.numel() else None, targets, negatives, lr, bf16=precision == "bf16")
        return loss, len(targets)

    def eval_sums(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        if hasattr(model, "eval_sums"):  # GloVe: J, and the counts predicted within a factor of 2, as "accuracy"
            loss, correct, n = model.eval_sums(batch)
            return torch.stack([loss.double(), correct.double(), torch.tensor(float(n), dtype=torch.float64)]), None
        centres, contexts, negatives = batch
        loss, correct = model.pair_sums(centres, contexts, negatives)
        return torch.stack([loss.double(), correct.double(), torch.tensor(float(len(centres)), dtype=torch.float64)]), None

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
