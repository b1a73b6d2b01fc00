"""Language modelling: predict the next token of a stream. Every rung of the ladder, AWD-LSTM and GPT.

The data is one token stream (a file, a folder of files, or the built-in human numbers) split in order
into training and validation parts; the batches are its rows (`LMStream`, carrying a recurrent state
from batch to batch) or consecutive windows (`WindowBatches`); the loss is the mean cross-entropy of
the next token; the metrics are loss, accuracy and perplexity over every validation token, and bits
per character (the summed loss in bits over the characters those tokens stand for), the one figure that
compares char, word and BPE models of the same text (Graves 2013; the Hutter prize's unit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.checkpoint import TOKENIZER
from scratchlm.config import TrainConfig
from scratchlm.data.batches import lm_batches
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.clean import warn_repaired
from scratchlm.data.human_numbers import NAME as HUMAN_NUMBERS
from scratchlm.data.pipeline import DataConfig, LMData, load_lm_data
from scratchlm.data.read import open_corpus
from scratchlm.data.tokenize import DOC, EOS, Tokenizer, TokenizerSpec, train_tokenizer
from scratchlm.distributed import World
from scratchlm.errors import UserError
from scratchlm.generate import find_stop, generate_ids, stop_prefix_length, token_logprobs
from scratchlm.tasks.base import Batch, BestCheckpoint, Run, Task, blank_texts
from scratchlm.trainer import evaluate
from scratchlm.vectors import WordVectorVerbs

# The API's data options (`scratchlm.train(data=..., tokenizer=...)`, the CLI's --data, --tokenizer, ...)
DATA_OPTIONS = ("data", "encoding", "valid_data", "valid_fraction", "tokenizer", "vocab_size", "min_freq", "repair")


class LMRun(WordVectorVerbs, Run):
    """A language model's run: generate, stream, score and eval.

        run = scratchlm.load("runs/hn-rnn")
        run.generate("one . two .", tokens=20)
        for piece in run.stream("ROMEO:", tokens=200, temperature=0.8): print(piece, end="")
        run.score(["one . two . three", "three . two . one"])
        run.eval()
    """

    @classmethod
    def task_title(cls) -> str:
        return LanguageModelling.title

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tokenizers[TOKENIZER]

    def word_vectors(self) -> tuple[list[str], Any]:
        """The input embedding's rows of a word-level model: its words (specials and the newline token
        left out), most frequent first, and their vectors; the verbs similar, analogy, map, export use them."""
        if self.tokenizer.kind != "word":
            raise UserError(f"{self.path} reads {self.tokenizer.kind} tokens; word vectors need a word-level run "
                            "(--tokenizer word)")
        matrix = self.model.word_matrix()
        if matrix is None:
            raise UserError(f"{self.path}: {self.spec.name} has no input embedding to read word vectors from")
        rows = [i for i, t in enumerate(self.tokenizer.itos) if i >= DOC + 1 and t != "\n"]
        return [self.tokenizer.itos[i] for i in rows], matrix.detach().cpu().numpy()[rows]

    def export(self, out: str | Path, format: str = "text") -> list[str]:
        """`hf`: the model as a Hugging Face folder (config.json, model.safetensors; for a BPE run also
        tokenizer.json in the `tokenizers` format) that `transformers` loads with equal logits, for a model
        with such a counterpart (`to_hf`: gpt as GPT2LMHeadModel, or as GPTNeoXForCausalLM with rotary
        positions). Else the word vectors' formats."""
        if format != "hf":
            return super().export(out, format)
        from safetensors.torch import save_file

        from scratchlm.files import atomic_write, atomic_write_json, replacing

        folder = Path(out)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UserError(f"{folder} exists and is not an empty folder; choose another --out")
        exported = self.model.to_hf()  # before the folder is made: a model it cannot write leaves nothing behind
        if exported is None:
            raise UserError(f"{self.path}: {self.spec.name} has no Hugging Face counterpart; "
                            "--format hf exports gpt runs (as GPT-2, or GPT-NeoX with rotary positions)")
        config, weights = exported
        folder.mkdir(parents=True, exist_ok=True)
        with replacing(folder / "model.safetensors") as tmp:
            save_file(weights, str(tmp), metadata={"format": "pt"})
        atomic_write_json(folder / "config.json", config)
        written = [folder / "config.json", folder / "model.safetensors"]
        if self.tokenizer.kind == "bpe":
            atomic_write(folder / "tokenizer.json", self.tokenizer.hf.to_str().encode())
            written.append(folder / "tokenizer.json")
        return [str(p) for p in written]

    @property
    def window(self) -> int | None:
        """How many tokens the model reads per prediction: None when it carries a state instead."""
        if self.model.window is not None:
            return self.model.window
        return None if self.model.carries_state else self.config["train"]["bptt"]

    def encode_checked(self, text: str, what: str) -> list[int]:
        if unknown := self.tokenizer.unknown_pieces(text):
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UserError(f"the {what} has {len(unknown)} piece(s) outside the vocabulary of {self.path}: {shown}")
        return self.tokenizer.encode(text)

    def stream(self, prompt: str = "", tokens: int = 100, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, repetition_penalty: float = 1.0,
               stop: Sequence[str] = (), ignore_eos: bool = False) -> Iterator[str]:
        """The generated text piece by piece, as the tokens are made (the prompt is not repeated).

        Generation ends after `tokens` tokens, at an `<eos>` token (unless `ignore_eos`), or as soon as
        the new text contains one of the `stop` strings; the text before it is given, the stop string
        itself is not.

        The arguments are checked here, at the call, not when the first piece is asked for: a caller
        (the CLI echoes the prompt first) learns of a bad one before it has shown anything.
        """
        stop = [stop] if isinstance(stop, str) else list(stop)
        check_sampling(tokens, temperature, top_k, top_p, repetition_penalty, stop)
        prompt_ids = [DOC] + self.encode_checked(prompt, "prompt")
        return self.pieces(prompt_ids, tokens, temperature, top_k, top_p, seed, repetition_penalty, stop, ignore_eos)

    def pieces(self, prompt_ids: list[int], tokens: int, temperature: float, top_k: int | None,
               top_p: float | None, seed: int | None, repetition_penalty: float = 1.0,
               stop: Sequence[str] = (), ignore_eos: bool = False) -> Iterator[str]:
        """The text of the new tokens after `prompt_ids`, as `stream` gives it."""
        # Decode the prompt and the new tokens together, so the tokenizer places the spaces between them.
        ids = list(prompt_ids)
        start = len(self.tokenizer.decode(ids))
        shown = 0  # characters of the new text given so far
        for token in generate_ids(self.model, prompt_ids, tokens, self.window, temperature, top_k, top_p, seed,
                                  repetition_penalty):
            if token == EOS and not ignore_eos:
                break
            ids.append(token)
            text = self.tokenizer.decode(ids)
            if text.endswith("\ufffd"):  # wait for the rest of a multi-byte character split across tokens
                continue
            new = text[start:]
            at = find_stop(new, stop) if stop else None
            ready = len(new) - stop_prefix_length(new, stop) if at is None else at  # hold back a possible stop
            if ready > shown:
                yield new[shown:ready]
                shown = ready
            if at is not None:
                return
        new = self.tokenizer.decode(ids)[start:]  # the end: what was held back, and a split last character
        at = find_stop(new, stop) if stop else None
        if shown < (end := len(new) if at is None else at):
            yield new[shown:end]

    def generate(self, prompt: str = "", tokens: int = 100, **sampling) -> str:
        """The prompt's continuation as one string, without the prompt (`prompt + run.generate(prompt)`
        is the whole text, as `scratchlm generate` prints it)."""
        return "".join(self.stream(prompt, tokens, **sampling))

    def score(self, texts: str | list[str]) -> list[dict]:
        """Log-probability (natural log) and perplexity of each text, read from the start of a document. An empty
        text scores 0 tokens and no perplexity (with a warning), so the results stay aligned with the texts."""
        if isinstance(texts, str):
            texts = [texts]
        blank = blank_texts(texts, "score")
        results = []
        for i, text in enumerate(texts):
            ids = [DOC] + self.encode_checked(text, "sentence")
            if i in blank or len(ids) < 2:
                results.append({"text": text, "tokens": 0, "logprob": 0.0, "perplexity": None})
                continue
            logprobs = token_logprobs(self.model, ids, self.window)
            total = logprobs.sum().item()
            results.append({"text": text, "tokens": len(ids) - 1, "logprob": total,
                            "perplexity": math.exp(-total / (len(ids) - 1))})
        return results

    def eval(self, data: str | None = None, encoding: str | None = None) -> dict:
        """Loss, accuracy and perplexity on the run's validation split, or on all of `data` if given.

        Read and computed as in training (the run's token cache, precision and batch shape), so on the
        validation split the numbers are those of the run's last evaluation with the same weights.
        """
        data_cfg = DataConfig(**self.config["data"]["config"])
        train_cfg = self.train_config
        cache_dir = self.config["data"].get("cache_dir")
        if data is None:
            ids = load_lm_data(data_cfg, cache_dir, tokenizer=self.tokenizer, align=train_cfg.bptt).valid_ids
        else:
            ids = tokenize_corpus(open_corpus(data, encoding, data_cfg.repair), self.tokenizer, cache_dir).ids
        batches = CharCounted(lm_batches(ids, train_cfg.batch_size, train_cfg.bptt, self.model.carries_state,
                                         shrink=True), self.tokenizer)
        precision = self.config.get("resolved", {}).get("precision", "fp32")
        result = evaluate(self.model, batches, self.task, self.device, precision)
        return {"run": str(self.path), "data": data or "validation split", **result}


class LanguageModelling(Task):
    name = "lm"
    title = "language-model"
    dims = ("vocab_size",)
    sums = ("loss", "correct", "tokens", "chars")
    metrics = ("loss", "accuracy", "perplexity", "bpc")
    headline = "accuracy"
    data_config_cls = DataConfig
    tokenizer_files = (TOKENIZER,)
    run_class = LMRun
    best = BestCheckpoint({"loss": "min", "accuracy": "max"},
                          "The lowest loss need not be the best accuracy: the loss also weighs how sure each guess was.")

    def data_config(self, options: dict[str, Any]) -> DataConfig:
        check_options(options)
        path = options.get("data") or HUMAN_NUMBERS
        tokenizer = {"kind": "word" if path == HUMAN_NUMBERS else "char",  # the book's words; else characters
                     **{k: options[k] for k in ("vocab_size", "min_freq") if options.get(k) is not None}}
        if options.get("tokenizer"):
            tokenizer["kind"] = options["tokenizer"]
        return DataConfig(path=path, encoding=options.get("encoding"), valid_path=options.get("valid_data"),
                          valid_fraction=options.get("valid_fraction"), tokenizer=TokenizerSpec(**tokenizer),
                          **({"repair": options["repair"]} if options.get("repair") is not None else {}))

    def built_in(self, cfg: DataConfig) -> str | None:
        return HUMAN_NUMBERS if cfg.path == HUMAN_NUMBERS else None

    def check_resume(self, saved: DataConfig, options: dict[str, Any]) -> None:
        check_options(options)
        given = {"path": options.get("data"), "encoding": options.get("encoding"),
                 "valid_path": options.get("valid_data"), "valid_fraction": options.get("valid_fraction"),
                 "repair": options.get("repair")}
        if given["path"] and given["path"] != HUMAN_NUMBERS:
            given["path"] = str(Path(given["path"]).expanduser().resolve())
        for key, value in given.items():
            if value is not None and getattr(saved, key) != value:
                raise UserError(f"--resume: the run's data {key} is {getattr(saved, key)!r}, not {value!r}")
        for key, option in (("kind", "tokenizer"), ("vocab_size", "vocab_size"), ("min_freq", "min_freq")):
            value = options.get(option)
            if value is not None and getattr(saved.tokenizer, key) != TokenizerSpec(**{key: value}).__dict__[key]:
                raise UserError(f"--resume: the run's tokenizer {key} is {getattr(saved.tokenizer, key)!r}, not {value!r}")

    def load_data(self, cfg: DataConfig, cache_dir: Path | None, tokenizers: dict[str, Tokenizer] | None,
                  train_cfg: TrainConfig) -> LMData:
        """The id streams, split at a multiple of the window; a run's own tokenizer when resuming."""
        data = load_lm_data(cfg, cache_dir, tokenizer=(tokenizers or {}).get(TOKENIZER), align=train_cfg.bptt)
        warn_repaired(data.repaired_lines)
        return data

    def model_dims(self, tokenizers: dict[str, Tokenizer]) -> dict[str, int]:
        return {"vocab_size": tokenizers[TOKENIZER].vocab_size}

    def example_dims(self) -> tuple[str, dict[str, int]]:
        tokenizer = train_tokenizer(open_corpus(HUMAN_NUMBERS).texts(), TokenizerSpec(kind="word"))
        return (f"human-numbers' {tokenizer.vocab_size} tokens (words and specials)",
                {"vocab_size": tokenizer.vocab_size})

    def batches(self, data: LMData, cfg: TrainConfig, model: nn.Module, world: World):
        """This process' rows of the training and validation streams (all of them for a single process)."""
        if cfg.random_bptt and not model.carries_state:
            raise UserError(f"--random-bptt varies the window of a stateful model; {type(model).__name__} "
                            "does not carry its state")
        if cfg.shuffle and model.carries_state:
            raise UserError(f"--shuffle reorders the windows of a model without a carried state; "
                            f"{type(model).__name__} carries its state from one batch's rows to the next")
        if model.window is not None and cfg.bptt != model.window:
            raise UserError(f"the model reads exactly {model.window} tokens; drop --bptt or set it to {model.window}")
        train = lm_batches(data.train_ids, cfg.batch_size, cfg.bptt, model.carries_state)
        valid = lm_batches(data.valid_ids, cfg.batch_size, cfg.bptt, model.carries_state, shrink=True)
        return train.shard(world.rank, world.size), CharCounted(valid.shard(world.rank, world.size, even=False),
                                                                data.tokenizer)

    def loss(self, net: nn.Module, model: nn.Module, batch: Batch, carry: Any,
             progress: float = 0.0) -> tuple[torch.Tensor, Any, int]:
        x, y = batch
        _, loss, carry = net(x, y, carry if model.carries_state else None)
        return loss, carry, x.numel()

    def eval_sums(self, model: nn.Module, batch: Batch, carry: Any) -> tuple[torch.Tensor, Any]:
        """Summed loss, right guesses, tokens and the characters they stand for (CharCounted batches)."""
        x, y, chars = batch
        if len(x) == 0:  # a process with no validation rows (fewer rows than processes) adds zeros
            return torch.zeros(len(self.sums), dtype=torch.float64), carry
        logits, _, carry = model(x, state=carry if model.carries_state else None)
        targets = y[:, -logits.size(1):]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
        correct = (logits.argmax(-1) == targets).sum()
        return torch.stack([loss.double(), correct.double(), loss.new_tensor(targets.numel(), dtype=torch.float64),
                            chars[:, -logits.size(1):].sum().double()]), carry

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        """Means over tokens, not over batches: a shorter last batch counts for what it holds.
        Perplexity is exp(mean loss); bits per character the summed loss in bits over the characters."""
        mean = sums["loss"] / sums["tokens"]
        return {"loss": mean, "accuracy": sums["correct"] / sums["tokens"], "perplexity": math.exp(min(mean, 700)),
                "bpc": sums["loss"] / math.log(2) / max(sums["chars"], 1), "tokens": int(sums["tokens"])}

    def count(self, model: nn.Module, batches) -> int:
        """The whole training stream at once (the rows or windows of `batches` are cut from it)."""
        model.fit_counts(batches.ids)
        return len(batches.ids)

    def epoch_batches(self, batches, epoch: int, cfg: TrainConfig):
        """The same windows every epoch, or drawn anew: random-length ones with --random-bptt (stateful
        models), shuffled ones with --shuffle (the others)."""
        return batches.for_epoch(epoch, cfg.seed) if cfg.random_bptt or cfg.shuffle else batches

    def lr_scale(self, batch: Batch, cfg: TrainConfig) -> float:
        """A shorter random window gets a proportionally smaller step (Merity et al. 2017, 4.1)."""
        return batch[0].size(1) / cfg.bptt if cfg.random_bptt else 1.0

    def batch_shape(self, cfg: TrainConfig) -> str:
        return f"{cfg.batch_size} x {cfg.bptt}"

    def matmul_rows(self, model: nn.Module, cfg: TrainConfig, world: World) -> int:
        """The batch for a recurrence, which goes one time step at a time; batch x window for a model that
        reads its window at once (a Transformer)."""
        return cfg.batch_size // world.size * (1 if model.carries_state else cfg.bptt)

    def format_metrics(self, metrics: dict[str, float]) -> dict[str, str]:
        shown = {"loss": "{:.4f}", "accuracy": "{:.4f}", "perplexity": "{:.3f}", "bpc": "{:.4f}"}
        return {k: form.format(metrics[k]) for k, form in shown.items() if k in metrics}


class CharCounted:
    """Validation batches that also give, for each target token, the characters of text it stands for
    (Tokenizer.char_counts): the denominator of bits per character."""

    def __init__(self, batches, tokenizer: Tokenizer):
        self.inner = batches
        self.counts = torch.from_numpy(tokenizer.char_counts())

    def __len__(self) -> int:
        return len(self.inner)

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self.inner.batch(k)
        return x, y, self.counts[y]

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for x, y in self.inner.batches(start):
            yield x, y, self.counts[y]


def check_options(options: dict[str, Any]) -> None:
    if unknown := sorted(set(options) - set(DATA_OPTIONS)):
        raise UserError(f"{', '.join(unknown)}: not an option of language-model data (they are "
                        f"{', '.join(DATA_OPTIONS)})")


def check_sampling(tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                   repetition_penalty: float = 1.0, stop: Sequence[str] = ()) -> None:
    if not 0 <= tokens <= 10_000_000:
        raise UserError(f"--tokens {tokens} must be between 0 and 10,000,000")
    if not 0 <= temperature <= 100:
        raise UserError(f"--temperature {temperature} must be between 0 (greedy) and 100")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k {top_k} must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"--top-p {top_p} must be in (0, 1]")
    if not 0 < repetition_penalty <= 100:
        raise UserError(f"--repetition-penalty {repetition_penalty} must be in (0, 100]; 1 is none, 1.2 a usual start")
    if any(not s for s in stop):
        raise UserError("--stop needs a non-empty string")


TASK = LanguageModelling()
