"""A trained run, rebuilt from its directory alone, and the verbs that use it.

    run = Run.load("runs/hn-rnn")
    run.generate("one . two .", tokens=20)
    for piece in run.stream("ROMEO:", tokens=200, temperature=0.8): print(piece, end="")
    run.score(["one . two . three", "three . two . one"])
    run.eval()
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from scratchlm.checkpoint import BEST, LAST, TOKENIZER, RunDir, load_weights, weights_ok
from scratchlm.data.batches import lm_batches
from scratchlm.data.cache import tokenize_corpus
from scratchlm.data.pipeline import DataConfig, load_lm_data
from scratchlm.data.read import open_corpus
from scratchlm.data.tokenize import DOC, Tokenizer, tokenizer_from_file
from scratchlm.errors import UserError
from scratchlm.generate import find_stop, generate_ids, stop_prefix_length, token_logprobs
from scratchlm.models.registry import ModelSpec, get_spec
from scratchlm.speed import resolve_device, tune_cpu_threads
from scratchlm.trainer import TrainConfig, evaluate


@dataclass
class Run:
    """Everything a run directory holds, loaded: config, tokenizer and the best weights."""

    path: Path
    config: dict
    spec: ModelSpec
    tokenizer: Tokenizer
    model: torch.nn.Module
    device: torch.device

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", task: str | None = None) -> Run:
        """Rebuild a run from its directory; `task` refuses a run of another kind with a clear message."""
        run_dir = RunDir(path)
        run_dir.recover()
        config = run_dir.read_config()
        if task is not None and config.get("task") != task:
            raise UserError(f"{path} is a {config.get('task')} run; this verb needs a {task} run")
        spec = get_spec(config["model"]["name"])
        tokenizer = tokenizer_from_file(run_dir.file(TOKENIZER))
        model = spec.build(spec.make_config(tokenizer.vocab_size, config["model"]["config"]))
        load_best_weights(run_dir, model)
        device_ = resolve_device(device)
        tune_cpu_threads(device_, sum(p.numel() for p in model.parameters()))  # as in training
        return cls(Path(path), config, spec, tokenizer, model.to(device_).eval(), device_)

    @property
    def window(self) -> int | None:
        """How many tokens the model reads per prediction: None when it carries a state instead."""
        if self.model.window is not None:
            return self.model.window
        return None if self.model.carries_state else self.config["train"]["bptt"]

    @property
    def metrics(self) -> list[dict]:
        return RunDir(self.path).read_metrics()

    def encode_checked(self, text: str, what: str) -> list[int]:
        if unknown := self.tokenizer.unknown_pieces(text):
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UserError(f"the {what} has {len(unknown)} piece(s) outside the vocabulary of {self.path}: {shown}")
        return self.tokenizer.encode(text)

    def stream(self, prompt: str = "", tokens: int = 100, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, repetition_penalty: float = 1.0,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """The generated text piece by piece, as the tokens are made (the prompt is not repeated).

        Generation ends after `tokens` tokens, or as soon as the new text contains one of the `stop`
        strings; the text before it is given, the stop string itself is not.

        The arguments are checked here, at the call, not when the first piece is asked for: a caller
        (the CLI echoes the prompt first) learns of a bad one before it has shown anything.
        """
        stop = [stop] if isinstance(stop, str) else list(stop)
        check_sampling(tokens, temperature, top_k, top_p, repetition_penalty, stop)
        prompt_ids = [DOC] + self.encode_checked(prompt, "prompt")
        return self.pieces(prompt_ids, tokens, temperature, top_k, top_p, seed, repetition_penalty, stop)

    def pieces(self, prompt_ids: list[int], tokens: int, temperature: float, top_k: int | None,
               top_p: float | None, seed: int | None, repetition_penalty: float = 1.0,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """The text of the new tokens after `prompt_ids`, as `stream` gives it."""
        # Decode the prompt and the new tokens together, so the tokenizer places the spaces between them.
        ids = list(prompt_ids)
        start = len(self.tokenizer.decode(ids))
        shown = 0  # characters of the new text given so far
        for token in generate_ids(self.model, prompt_ids, tokens, self.window, temperature, top_k, top_p, seed,
                                  repetition_penalty):
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
        """The prompt's continuation as one string."""
        return "".join(self.stream(prompt, tokens, **sampling))

    def score(self, texts: list[str]) -> list[dict]:
        """Log-probability (natural log) and perplexity of each text, read from the start of a document."""
        results = []
        for text in texts:
            ids = [DOC] + self.encode_checked(text, "sentence")
            if len(ids) < 2:
                raise UserError("cannot score an empty sentence")
            logprobs = token_logprobs(self.model, ids, self.window)
            total = logprobs.sum().item()
            results.append({"text": text, "tokens": len(ids) - 1, "logprob": total,
                            "perplexity": math.exp(-total / (len(ids) - 1))})
        return results

    def eval(self, data: str | None = None, encoding: str | None = None) -> dict:
        """Loss, accuracy and perplexity on the run's validation split, or on all of `data` if given."""
        data_cfg = DataConfig(**self.config["data"]["config"])
        train_cfg = TrainConfig(**self.config["train"])
        if data is None:
            ids = load_lm_data(data_cfg, tokenizer=self.tokenizer, align=train_cfg.bptt).valid_ids
        else:
            _, ids = tokenize_corpus(open_corpus(data, encoding), self.tokenizer)
        stream = lm_batches(ids, train_cfg.batch_size, train_cfg.bptt, self.model.carries_state, shrink=True)
        result = evaluate(self.model, stream, self.device)
        return {"run": str(self.path), "data": data or "validation split", **result}


def load_best_weights(run_dir: RunDir, model: torch.nn.Module) -> None:
    """model.safetensors, or the latest weights when there is no best yet or the best file is damaged."""
    best, last = run_dir.file(BEST), run_dir.file(LAST)
    if not best.exists() and not last.exists():
        raise UserError(f"{run_dir.path}: has no weights yet (training stopped before its first evaluation); "
                        "continue it with `scratchlm train --resume`")
    if not best.exists():
        load_weights(last, model)
        return
    try:
        load_weights(best, model)
    except UserError as e:
        if not last.exists() or "damaged" not in str(e) or not weights_ok(last):
            raise
        warnings.warn(f"{best} is damaged; using the latest weights, {LAST}, instead", stacklevel=3)
        load_weights(last, model)


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
