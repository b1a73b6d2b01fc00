"""Translation: an encoder reads the source sentence, a decoder writes the target token by token.

The data is sentence pairs (a TSV file or two aligned files, `data/pairs.py`), split by source sentence;
the batches are length-bucketed pairs; the loss is the decoder's cross-entropy under teacher forcing
(its input is the target shifted right behind <bos>, its last prediction <eos>; padding is ignored);
the metrics are that loss and, from greedy decoding of a fixed slice of the held-out sources (1,000)
against all of their references, BLEU and chrF (sacrebleu, detokenized, its default settings). BLEU and chrF are added up
as sacrebleu's sufficient statistics (n-gram matches and totals), so several processes and many
batches give the corpus score exactly. The best checkpoint is the one with the highest BLEU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.config import TrainConfig
from scratchlm.data.batches import pad
from scratchlm.data.pairs import (
    PairBatches,
    Pairs,
    PairsConfig,
    encode_lines,
    held_out_sources,
    read_pairs,
    train_tokenizers,
)
from scratchlm.data.read import read_lines
from scratchlm.data.tokenize import BOS, EOS, PAD, SPECIALS, Tokenizer, TokenizerSpec
from scratchlm.decode import beam_search, greedy
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.tasks.base import Batch, BestCheckpoint, Run, Task, blank_texts

SOURCE, TARGET = "tokenizer-source.json", "tokenizer-target.json"
DATA_OPTIONS = ("data", "src", "tgt", "columns", "reverse", "encoding", "tokenizer", "vocab_size", "min_freq",
                "joint", "max_length", "valid_fraction", "repair", "strict")
BLEU_STATS, CHRF_STATS = 10, 18  # sacrebleu's sufficient statistics per sentence (BLEU 4-gram, chrF 6+2 orders)
MAX_LENGTH = (2.0, 10)  # decoding stops after 2 x the source's tokens + 10 at most
VALID_SLICE = 1000  # held-out sources decoded at each evaluation during training (`eval` reads them all)


def max_lengths(src_lengths: torch.Tensor, ratio: float = MAX_LENGTH[0]) -> torch.Tensor:
    return (src_lengths.float() * ratio).long() + MAX_LENGTH[1]


class TranslationData:
    """The pairs, split and tokenized: what the batches, config.json and evaluation need."""

    def __init__(self, pairs: Pairs, cfg: PairsConfig, source: Tokenizer, target: Tokenizer,
                 train_index: np.ndarray, held: dict[str, list[str]]):
        self.pairs, self.cfg, self.source, self.target, self.held = pairs, cfg, source, target, held
        src = encode_lines(source, [pairs.sources[i] for i in train_index])
        tgt = encode_lines(target, [pairs.targets[i] for i in train_index])
        keep = [i for i in range(len(src)) if cfg.max_length is None or max(len(src[i]), len(tgt[i])) <= cfg.max_length]
        self.train_src, self.train_tgt = [src[i] for i in keep], [tgt[i] for i in keep]
        self.too_long = len(src) - len(keep)
        sources = list(held)
        slice_ = np.random.default_rng([cfg.split_seed, 1]).permutation(len(sources))[:VALID_SLICE]
        self.valid_sources = [sources[i] for i in sorted(slice_)]  # a fixed slice, the same at every evaluation
        self.valid_src = encode_lines(source, self.valid_sources)
        self.valid_tgt = encode_lines(target, [held[s][0] for s in self.valid_sources])

    @property
    def tokenizers(self) -> dict[str, Tokenizer]:
        return {SOURCE: self.source, TARGET: self.target}

    @property
    def content_hash(self) -> str:
        return self.pairs.content_hash

    def summary(self) -> dict:
        return {"encodings": self.pairs.encodings, "pairs": len(self.pairs.sources), **self.pairs.screen.summary(),
                "train_pairs": len(self.train_src),
                "left_out_too_long": self.too_long, "valid_sources": len(self.valid_sources),
                "valid_pairs": sum(len(refs) for refs in self.held.values()),
                "source_vocab": self.source.vocab_size, "target_vocab": self.target.vocab_size}


def split(pairs: Pairs, cfg: PairsConfig) -> tuple[np.ndarray, dict[str, list[str]]]:
    """The training pairs' indices, and each held-out source with all its translations, in file order."""
    held_set = held_out_sources(pairs.sources, cfg)
    held: dict[str, list[str]] = {}
    train_index = []
    for i, (s, t) in enumerate(zip(pairs.sources, pairs.targets, strict=True)):
        if s in held_set:
            held.setdefault(s, []).append(t)
        else:
            train_index.append(i)
    return np.array(train_index, dtype=np.int64), held


def split_data(cfg: PairsConfig, tokenizers: dict[str, Tokenizer] | None = None) -> TranslationData:
    """Read the pairs, hold out whole source sentences, and tokenize (training a vocabulary unless given)."""
    pairs = read_pairs(cfg)
    train_index, held = split(pairs, cfg)
    if tokenizers:
        source, target = tokenizers[SOURCE], tokenizers[TARGET]
    else:
        source, target = train_tokenizers(pairs, train_index, cfg)
    return TranslationData(pairs, cfg, source, target, train_index, held)


class TranslationRun(Run):
    """A translation model's run: translate and eval.

        run = scratchlm.load("runs/fr")
        run.translate(["I am cold.", "Where is the station?"], beam=4)
        run.translate(["I am cold."], attention=True)   # with the attention weights, for a heat map
        run.eval(beam=4)                                 # BLEU and chrF on the held-out sentences
    """

    @classmethod
    def task_title(cls) -> str:
        return Translation.title

    @property
    def source(self) -> Tokenizer:
        return self.tokenizers[SOURCE]

    @property
    def target(self) -> Tokenizer:
        return self.tokenizers[TARGET]

    def translate(self, texts: Sequence[str], beam: int = 1, n_best: int = 1, length_penalty: float = 1.0,
                  max_length_ratio: float = MAX_LENGTH[0], batch_size: int = 64, attention: bool = False) -> list:
        """Each text's translation (a string); with `n_best` > 1 a list of the best; with `attention`,
        dicts with the source and target tokens and the attention weights: (target x source) for an RNN's
        attention, (target x layers x heads x source) for a Transformer's cross-attention (`attention_rows`
        picks one picture out of them).

        Sentences are decoded in batches sorted by length; the result of each never depends on the others.
        An empty text gets an empty translation (with a warning), so the results stay aligned with the texts.
        """
        if isinstance(texts, str):
            texts = [texts]
        check_decoding(beam, n_best, length_penalty, max_length_ratio)
        ids = encode_lines(self.source, [t.strip() for t in texts])
        blank = blank_texts(texts, "translation") | {i for i, x in enumerate(ids) if len(x) == 0}
        empty = self.result(np.zeros(0, dtype=np.int64), [], None, attention)
        out: list = [[empty] * n_best if i in blank else None for i in range(len(texts))]
        order = sorted((i for i in range(len(texts)) if i not in blank), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            src = pad([ids[i] for i in chunk]).to(self.device)
            lengths = torch.tensor([len(ids[i]) for i in chunk], device=self.device)
            limit = max_lengths(lengths, max_length_ratio)
            if beam == 1 and n_best == 1:
                found = [[(tokens, 0.0, weights)] for tokens, weights in
                         zip(*greedy(self.model, src, lengths, limit, attention=True), strict=True)]
            else:
                found = beam_search(self.model, src, lengths, beam, limit, length_penalty, n_best, attention=True)
            for i, hypotheses in zip(chunk, found, strict=True):
                out[i] = [self.result(ids[i], tokens, weights, attention) for tokens, _, weights in hypotheses]
        return [r if n_best > 1 else r[0] for r in out]

    def teacher_forcing(self, target: str) -> dict[str, list[str]]:
        """One target sentence as training shows it to the decoder, token by token: what the decoder reads
        (the target shifted right behind <bos>) and what each step is scored on (the target, then <eos>).
        Without the shift the decoder would learn to copy its input; without <eos> it would never stop."""
        ids = encode_lines(self.target, [target.strip()])[0].tolist()
        pieces = [self.target.decode([i]) for i in ids]
        return {"decoder_input": [SPECIALS[BOS], *pieces], "targets": [*pieces, SPECIALS[EOS]]}

    def result(self, src: np.ndarray, tokens: list[int], weights, attention: bool):
        text = self.target.decode(tokens)
        if not attention:
            return text
        return {"translation": text, "source_tokens": [self.source.decode([int(t)]) for t in src],
                "target_tokens": [self.target.decode([t]) for t in tokens],
                "attention": None if weights is None else weights.cpu().numpy()}

    def eval(self, data: str | None = None, encoding: str | None = None, src: str | None = None,
             refs: Sequence[str] = (), beam: int = 1, length_penalty: float = 1.0) -> dict:
        """BLEU and chrF (sacrebleu, detokenized, against every reference) on the held-out split, or on
        `src` with one or more reference files `refs` (line-aligned with it); and the signature."""
        from sacrebleu.metrics import BLEU, CHRF

        if data is not None:
            raise UserError("a translation run is evaluated on its held-out split, or on --src FILE --ref FILE")
        if src is None:
            if refs:
                raise UserError("--ref goes with --src: the sentences to translate and their references")
            cfg = PairsConfig(**self.config["data"]["config"])
            held = split(read_pairs(cfg), cfg)[1]  # the training pairs need no tokenizing here
            sources, references = list(held), list(held.values())
            where = "held-out split"
        else:
            if not refs:
                raise UserError("--src needs at least one --ref file: the references, line by line")
            sources = [s.strip() for s in read_lines(src, encoding)[0]]
            columns = [[r.strip() for r in read_lines(ref, encoding)[0]] for ref in refs]
            for ref, column in zip(refs, columns, strict=True):
                if len(column) != len(sources):
                    raise UserError(f"--ref {ref} has {len(column):,} lines and --src {src} has {len(sources):,}; "
                                    "they must be line-aligned")
            references = [list(r) for r in zip(*columns, strict=True)]
            where = src
        hypotheses = self.translate(sources, beam=beam, length_penalty=length_penalty)
        streams = reference_streams(references)
        bleu, chrf = BLEU(), CHRF()
        return {"run": str(self.path), "data": where, "sentences": len(sources), "beam": beam,
                "bleu": bleu.corpus_score(hypotheses, streams).score, "chrf": chrf.corpus_score(hypotheses, streams).score,
                "signature": f"BLEU {bleu.get_signature()}; chrF {chrf.get_signature()}"}


def attention_rows(weights: np.ndarray, layer: int | None = None, head: int | None = None) -> tuple[np.ndarray, str]:
    """One (target x source) picture out of a translation's attention, and the words that name it.

    weights: (T, S), an RNN's one attention, or (T, layers, heads, S), a Transformer's cross-attention;
    layer and head count from 1; the default is the last layer, and the mean of its heads (head None).
    """
    if weights.ndim == 2:
        if layer is not None or head is not None:
            raise UserError("this model has one attention: --attention-layer and --attention-head are for a "
                            "Transformer's layers of heads")
        return weights, ""
    T, L, H, S = weights.shape
    layer = L if layer is None else layer
    if not 1 <= layer <= L:
        raise UserError(f"--attention-layer {layer}: the decoder has layers 1 to {L}")
    if head is not None and not 1 <= head <= H:
        raise UserError(f"--attention-head {head}: each layer has heads 1 to {H}")
    rows = weights[:, layer - 1].mean(axis=1) if head is None else weights[:, layer - 1, head - 1]
    return rows, f"cross-attention, layer {layer} of {L}, " + (f"mean of {H} heads" if head is None else f"head {head} of {H}")


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream j holds the j-th reference of every sentence (None where it has fewer)."""
    most = max(len(r) for r in references)
    return [[r[j] if j < len(r) else None for r in references] for j in range(most)]


def check_decoding(beam: int, n_best: int, length_penalty: float, max_length_ratio: float) -> None:
    if not 1 <= beam <= 1000:
        raise UserError(f"--beam {beam} must be between 1 (greedy) and 1000")
    if not 1 <= n_best <= beam and not (n_best == 1 and beam == 1):
        raise UserError(f"--n-best {n_best} must be between 1 and the beam size ({beam})")
    if not 0 <= length_penalty <= 10:
        raise UserError(f"--length-penalty {length_penalty} must be between 0 (none) and 10; 1 is usual")
    if not 0 < max_length_ratio <= 100:
        raise UserError(f"--max-length-ratio {max_length_ratio} must be in (0, 100]")


class Translation(Task):
    name = "translation"
    title = "translation"
    dims = ("src_vocab_size", "tgt_vocab_size", "joint_vocab")
    sums = ("loss", "correct", "tokens", *(f"bleu{i}" for i in range(BLEU_STATS)), *(f"chrf{i}" for i in range(CHRF_STATS)))
    metrics = ("loss", "bleu", "chrf", "accuracy")
    headline = "bleu"
    data_config_cls = PairsConfig
    tokenizer_files = (SOURCE, TARGET)
    run_class = TranslationRun
    best = BestCheckpoint({"bleu": "max", "loss": "min"}, titles={"bleu": "BLEU", "chrf": "chrF"},
                          why="BLEU is read from greedy translations of a fixed slice of the held-out sentences, against "
                              "all their references; `scratchlm eval` reads them all.")

    def data_config(self, options: dict[str, Any]) -> PairsConfig:
        check_options(options)
        tokenizer = {"kind": options.get("tokenizer") or "bpe"}
        tokenizer["vocab_size"] = options.get("vocab_size") or (8000 if tokenizer["kind"] == "bpe" else None)
        if options.get("min_freq") is not None:
            tokenizer["min_freq"] = options["min_freq"]
        fields = {k: options[k] for k in ("src", "tgt", "reverse", "encoding", "joint", "max_length", "valid_fraction",
                                          "repair", "strict") if options.get(k) is not None}
        if options.get("columns") is not None:
            fields["columns"] = parse_columns(options["columns"])
        return PairsConfig(path=options.get("data"), tokenizer=TokenizerSpec(**tokenizer), **fields)

    def check_resume(self, saved: PairsConfig, options: dict[str, Any]) -> None:
        check_options(options)
        saved_tokenizer = {"tokenizer": saved.tokenizer.kind, "vocab_size": saved.tokenizer.vocab_size,
                           "min_freq": saved.tokenizer.min_freq}
        for key, value in options.items():
            if key in saved_tokenizer:
                value, was = (value.lower() if key == "tokenizer" else value), saved_tokenizer[key]
            elif key == "columns":
                value, was = parse_columns(value), saved.columns
            else:
                field = "path" if key == "data" else key
                if field in ("path", "src", "tgt"):
                    value = str(Path(value).expanduser().resolve())
                was = getattr(saved, field)
            if value != was:
                raise UserError(f"--resume: the run's {key.replace('_', ' ')} is {was!r}, not {value!r}; its data "
                                "is fixed in its config.json")

    def load_data(self, cfg: PairsConfig, cache_dir: Path | None, tokenizers: dict[str, Tokenizer] | None,
                  train_cfg: TrainConfig) -> TranslationData:
        data = split_data(cfg, tokenizers)
        data.pairs.screen.warn("pair")
        return data

    def model_dims(self, tokenizers: dict[str, Tokenizer]) -> dict[str, int | bool]:
        """The vocabulary sizes, and whether both languages share one vocabulary (a joint one: the same
        tokenizer in training, the same file contents once read back), which tying source and target
        embeddings needs."""
        source, target = tokenizers[SOURCE], tokenizers[TARGET]
        joint = source is target or source.to_json() == target.to_json()
        return {"src_vocab_size": source.vocab_size, "tgt_vocab_size": target.vocab_size, "joint_vocab": joint}

    def example_dims(self) -> tuple[str, dict[str, int | bool]]:
        return "a joint 8,000-token BPE vocabulary", {"src_vocab_size": 8000, "tgt_vocab_size": 8000, "joint_vocab": True}

    def batches(self, data: TranslationData, cfg: TrainConfig, model: nn.Module, world: World):
        train = PairBatches(tuple(data.train_src), tuple(data.train_tgt), batch_size=cfg.batch_size)
        valid = PairBatches(tuple(data.valid_src), tuple(data.valid_tgt), batch_size=min(cfg.batch_size, len(data.valid_src)),
                            drop_last=False, references=tuple(tuple(data.held[s]) for s in data.valid_sources),
                            decode=data.target.decode)
        return train.shard(world.rank, world.size), valid.shard(world.rank, world.size, even=False)

    def loss(self, net: nn.Module, model: nn.Module, batch: Batch, carry: Any,
             progress: float = 0.0) -> tuple[torch.Tensor, Any, int]:
        src, lengths, tgt_in, targets, weight = batch
        _, loss, _ = net(src, lengths, tgt_in, targets)  # scheduled sampling follows the run (Model.follow_progress)
        return loss * weight, None, int((targets != PAD).sum())

    def eval_sums(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        from sacrebleu.metrics import BLEU, CHRF

        src, lengths, tgt_in, targets, references = batch
        sums = torch.zeros(len(self.sums), dtype=torch.float64)
        if len(src) == 0:
            return sums, None
        logits, _, _ = model(src, lengths, tgt_in)
        mask = targets != PAD
        flat = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        sums[0] = float(flat[mask.reshape(-1)].sum())
        sums[1] = float(((logits.argmax(-1) == targets) & mask).sum())
        sums[2] = float(mask.sum())
        hypotheses = [references.decode(tokens) for tokens in greedy(model, src, lengths, max_lengths(lengths))]
        streams = reference_streams(references.texts)
        sums[3:3 + BLEU_STATS] = torch.tensor(np.sum(BLEU()._extract_corpus_statistics(hypotheses, streams), axis=0))
        sums[3 + BLEU_STATS:] = torch.tensor(np.sum(CHRF()._extract_corpus_statistics(hypotheses, streams), axis=0))
        return sums, None

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        from sacrebleu.metrics import BLEU, CHRF

        mean = sums["loss"] / max(sums["tokens"], 1)
        bleu = BLEU()._compute_score_from_stats([sums[f"bleu{i}"] for i in range(BLEU_STATS)]).score
        chrf = CHRF()._compute_score_from_stats([sums[f"chrf{i}"] for i in range(CHRF_STATS)]).score
        return {"loss": mean, "bleu": bleu, "chrf": chrf, "accuracy": sums["correct"] / max(sums["tokens"], 1),
                "perplexity": math.exp(min(mean, 700)), "tokens": int(sums["tokens"])}

    def batch_shape(self, cfg: TrainConfig) -> str:
        return f"{cfg.batch_size} pairs"

    def format_metrics(self, metrics: dict[str, float]) -> dict[str, str]:
        shown = {"loss": "{:.4f}", "bleu": "{:.2f}", "chrf": "{:.2f}", "accuracy": "{:.4f}"}
        return {k: form.format(metrics[k]) for k, form in shown.items() if k in metrics}

    def describe(self, cfg: PairsConfig) -> str:
        return cfg.path or f"{cfg.src} / {cfg.tgt}"


def parse_columns(text: str | Sequence[int]) -> tuple[int, int]:
    if not isinstance(text, str):
        return tuple(text)
    try:
        columns = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise UserError(f"--columns {text}: give two column numbers, e.g. 0,1") from None
    if len(columns) != 2:
        raise UserError(f"--columns {text}: give two column numbers, e.g. 0,1")
    return columns


def check_options(options: dict[str, Any]) -> None:
    if unknown := sorted(set(options) - set(DATA_OPTIONS)):
        raise UserError(f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: not an option of translation "
                        "data (a model of the translation task trains on sentence pairs)")


TASK = Translation()
