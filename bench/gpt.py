"""The gpt rung against Hugging Face's GPT2LMHeadModel, on tiny-shakespeare at the character level.

Three measurements, after nanoGPT's CPU recipe for shakespeare-char (4 layers, 4 heads, 128 wide,
context 64, batch 12, dropout 0):

- training speed: scratchlm's `GPT` and `transformers.GPT2LMHeadModel` built with the same config and
  the same starting weights (copied across, and checked to give the same logits), trained side by
  side in one process on the same batches with the same AdamW, in alternating rounds so that both see
  the same load on a shared machine. The target: at least 1.5x HF's tokens/s.
- validation loss: scratchlm's own training path (`scratchlm train --time 140s`, the registry's gpt
  recipe) and the full pass over the last 10% of the file that it evaluates (nanoGPT's split). nanoGPT
  reaches 1.87 after 2000 iterations, about 140 s; the target: at most 1.70 in the same 140 s.
- generation speed: 500 new tokens, greedy, batch 1, with the KV cache, from the same weights:
  scratchlm's `generate_ids` against HF's `generate(use_cache=True)`. HF's positions end at
  `n_positions`, so both models get a 512-token context here. The target: at least 2x HF's tokens/s.

The two speed measurements run in one child process (`python bench/gpt.py measure`), printing JSON.
The benchmark is skipped when the data or `transformers` (the `bench` extra) is missing.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import Section, log, run_child, scratchlm_command

NAME = "gpt"
TITLE = "GPT on tiny-shakespeare (char): against Hugging Face GPT2LMHeadModel"
ABOUT = ("Training tokens/s of scratchlm's gpt and transformers' GPT2LMHeadModel with the same config (4 layers, "
         "4 heads, 128 wide, context 64, batch 12, dropout 0, tied embeddings, biases, exact GELU) and the same "
         "starting weights, trained side by side in one process on the same batches, alternating rounds; the "
         "validation loss of `scratchlm train --time 140s` with the registry's gpt recipe (full pass over the "
         "last 10% of the file); and greedy generation of 500 tokens at batch 1 with the KV cache, scratchlm "
         "against HF generate(use_cache=True), same weights, 512-token context. Loss: the training loss of the last "
         "side-by-side step (alike when both compute the same), or the best full-pass validation loss of the run.")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
# nanoGPT's shakespeare-char shapes: its CPU recipe, and on a GPU its config/train_shakespeare_char.py
RECIPES = {"cpu": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12},
           "cuda": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 64}}
NANOGPT = RECIPES["cpu"]
TRAIN_SPEED_TARGET, LOSS_TARGET, GENERATE_SPEED_TARGET = 1.5, 1.70, 2.0
BUDGET_S = 140  # nanoGPT's 2000 iterations on a CPU
NANOGPT_LOSS = 1.87
PROMPT = "ROMEO:"


def run(quick: bool = False) -> Section:
    if not DATA.exists():
        return Section([], [f"skipped: {DATA} is not here"])
    if importlib.util.find_spec("transformers") is None:
        return Section([], ["skipped: transformers is not installed (pip install -e '.[bench]')"])
    budget = BUDGET_S / 4 if quick else BUDGET_S
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-gpt-") as tmp:
        log(f"  {NAME}: side by side with HF, training and generation ...")
        child = run_child([sys.executable, __file__, "measure", *(["--quick"] if quick else [])], Path(tmp) / "measure")
        speed = json.loads(child.stdout)
        log(f"  {NAME}: scratchlm train --time {budget:.0f}s ...")
        trained = train_once(budget, Path(tmp))
    return summarize(speed, trained, budget)


def summarize(speed: dict, trained: dict, budget: float, recipe: str = "registry recipe") -> Section:
    """The table, one row per measurement, and the verdicts, from what `measure` and `train_once` found."""
    train, gen = speed["train"], speed["generate"]
    rows = [row("training", "scratchlm gpt", train["scratchlm"]), row("training", "HF GPT2LMHeadModel", train["hf"]),
            *([row("training", "scratchlm gpt, torch.compile", train["scratchlm_compiled"])]
              if "scratchlm_compiled" in train else []),
            row(f"scratchlm train --time {budget:.0f}s", f"scratchlm gpt, {recipe}", trained),
            row("generation, 500 tokens", "scratchlm gpt", gen["scratchlm"]),
            row("generation, 500 tokens", "HF GPT2LMHeadModel", gen["hf"]),
            row(f"generation, 2000 tokens, context {speed['recipe']['block_size']}", "scratchlm gpt", gen["long"])]
    return Section(rows, notes(speed, trained, budget), [speed, trained])


def row(measure: str, model: str, found: dict) -> dict:
    return {"measure": measure, "model": model, "tokens/s": found["tokens_per_second"], "seconds": found["seconds"],
            "steps": found.get("steps"), "loss": found.get("valid_loss", found.get("last_loss"))}


def train_once(seconds: float, tmp: Path, *options: str) -> dict:
    """`scratchlm train` with the registry recipe (or `options` over it); the best full-pass validation
    loss it logged."""
    out = tmp / "run"
    child = run_child(scratchlm_command("train", "--data", str(DATA), "--model", "gpt", "--tokenizer", "char",
                                        "--time", f"{seconds:.0f}s", "--seed", "0", "--out", str(out), "--quiet",
                                        *options),
                      tmp / "train", env={"SCRATCHLM_CACHE": str(tmp / "cache")})
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((out / "config.json").read_text())
    best = min(history, key=lambda row: row["valid_loss"])
    return {"what": "scratchlm train --time", "model": "scratchlm gpt (registry recipe)",
            "tokens_per_second": history[-1]["tokens_per_second"], "seconds": history[-1]["seconds"],
            "valid_loss": round(best["valid_loss"], 4), "steps": history[-1]["step"],
            "recipe": {k: config["train"][k] for k in ("optimizer", "lr", "schedule", "warmup", "weight_decay",
                                                       "batch_size", "bptt", "shuffle", "grad_clip")},
            "model_config": config["model"]["config"], "peak_rss_mb": round(child.peak_rss_mb, 1)}


def notes(speed: dict, trained: dict, budget: float) -> list[str]:
    train, gen = speed["train"], speed["generate"]

    def ratio_of(name: str) -> float | None:  # tokens/s over HF's
        return train[name]["tokens_per_second"] / train["hf"]["tokens_per_second"] if name in train else None

    train_ratio = ratio_of("scratchlm")
    gen_ratio = gen.get("ratio") or gen["scratchlm"]["tokens_per_second"] / gen["hf"]["tokens_per_second"]
    pairs = gen.get("pair_ratios", [])
    verdict = lambda ok: "met" if ok else "not met"
    return [
        f"Threads: {speed['threads']['training']} for training, {speed['threads']['generation']} for generation "
        "(scratchlm's choices for this size, speed.tune_cpu_threads, given to both); load average "
        f"{speed['load_start']:.2f} at the start of the side-by-side run, {speed['load_end']:.2f} at its end.",
        f"Same starting weights: the largest logit difference at initialisation is {speed['init_max_diff']:.1e}.",
        f"Training speed: scratchlm {train_ratio:.2f}x HF's tokens/s (target >= {TRAIN_SPEED_TARGET}x: "
        f"{verdict(train_ratio >= TRAIN_SPEED_TARGET)})"
        + (f"; compiled (`--compile`), {compiled_ratio:.2f}x." if (compiled_ratio := ratio_of("scratchlm_compiled"))
           else "."),
        f"Validation loss after {trained['seconds']:.0f} s of `scratchlm train` ({trained['steps']} steps, recipe "
        f"{trained['recipe']}): {trained['valid_loss']:.4f} (nanoGPT {NANOGPT_LOSS} in {BUDGET_S} s; target <= "
        f"{LOSS_TARGET}: {verdict(trained['valid_loss'] <= LOSS_TARGET)}"
        + (f"; quick run, {budget:.0f} s only" if budget < BUDGET_S else "") + ").",
        f"Generation: scratchlm {gen_ratio:.2f}x HF's tokens/s, the median of {len(pairs)} alternating pairs "
        f"({', '.join(f'{r:.2f}' for r in pairs)}) (target >= {GENERATE_SPEED_TARGET}x: "
        f"{verdict(gen_ratio >= GENERATE_SPEED_TARGET)}). The two give the same greedy tokens for the first "
        f"{gen['same_tokens']} of {gen['scratchlm']['tokens']} (random weights: where two logits nearly tie, "
        "float rounding in the cached steps can pick either).",
        f"Long generation: {gen['long']['tokens']} tokens through a {speed['recipe']['block_size']}-token context (the "
        "context jumps to its newest half when full; HF's positions end at n_positions, so it has no row).",
    ]


# ---------------------------------------------------------------- the child process: both models side by side


def build_pair(vocab_size: int, block_size: int, c: dict = NANOGPT, device: str = "cpu"):
    """scratchlm's GPT and HF's GPT2LMHeadModel with the same config and the same weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratchlm.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=c["n_layer"], n_head=c["n_head"],
                         n_embd=c["n_embd"], dropout=0.0, bias=True))
    config = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=c["n_embd"], n_layer=c["n_layer"],
                        n_head=c["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        activation_function="gelu", tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    hf = GPT2LMHeadModel(config)
    copy_weights(ours, hf)
    return ours.to(device), hf.to(device)


def copy_weights(ours, hf) -> None:
    """Our nn.Linear weights are (out, in); HF's Conv1D keeps (in, out), hence the transposes."""
    import torch

    theirs = hf.transformer
    pairs = [(theirs.wte.weight, ours.wte.weight), (theirs.wpe.weight, ours.wpe.weight),
             (theirs.ln_f.weight, ours.ln_f.weight), (theirs.ln_f.bias, ours.ln_f.bias)]
    for h, b in zip(theirs.h, ours.h, strict=True):
        pairs += [(h.ln_1.weight, b.ln_1.weight), (h.ln_1.bias, b.ln_1.bias),
                  (h.ln_2.weight, b.ln_2.weight), (h.ln_2.bias, b.ln_2.bias)]
        for hl, bl in ((h.attn.c_attn, b.attn.c_attn), (h.attn.c_proj, b.attn.c_proj),
                       (h.mlp.c_fc, b.mlp.c_fc), (h.mlp.c_proj, b.mlp.c_proj)):
            pairs += [(hl.weight, bl.weight.t()), (hl.bias, bl.bias)]
    with torch.no_grad():
        for target, source in pairs:
            target.copy_(source)


def measure_training(ours, hf, batches, rounds: int, steps: int, device: str = "cpu", compiled=None) -> dict:
    """Alternating rounds of `steps` steps each, the same batches for both; tokens/s over all rounds.
    On a GPU both run under bf16 autocast with AdamW's fused kernel, as `scratchlm train` does there.
    `compiled`: torch.compile'd copies ({"scratchlm": ..., "hf": ...}), each a turn of its own each round
    (compiling in round 0), named NAME_compiled."""
    import torch
    import torch.nn.functional as F

    from scratchlm.speed import autocast, fused_adamw, to_device

    dev = torch.device(device)
    precision = "bf16" if dev.type == "cuda" else "fp32"

    def step_ours(model, x, y):
        return model(x, y)[1]

    def step_hf(model, x, y):  # the same loss over all T positions (HF's `labels` would drop the last)
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    models = {"scratchlm": (ours, step_ours), "hf": (hf, step_hf)}
    for name, model in (compiled or {}).items():
        models[f"{name}_compiled"] = (model, models[name][1])
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1,
                                          fused=fused_adamw(dev)) for name, (m, _) in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    losses = {name: [] for name in models}
    tokens = 0
    for r in range(rounds + 1):  # round 0 warms up both and is not counted
        chunk = [to_device(batches.batch((r * steps + i) % len(batches)), dev) for i in range(steps)]
        for name, (model, loss_of) in models.items():
            model.train()
            synchronize(dev)
            start = time.perf_counter()
            for x, y in chunk:
                with autocast(dev, precision):
                    loss = loss_of(model, x, y)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizers[name].step()
            synchronize(dev)
            if r:
                seconds[name] += time.perf_counter() - start
                losses[name].append(loss.item())
        tokens += sum(x.numel() for x, _ in chunk) if r else 0
    return {name: {"what": "training", "model": name, "tokens_per_second": round(tokens / seconds[name], 1),
                   "seconds": round(seconds[name], 2), "steps": rounds * steps, "last_loss": round(losses[name][-1], 4)}
            for name in models}


def measure_generation(ours, hf, prompt: list[int], tokens: int, repeats: int) -> dict:
    """Greedy, batch 1, with the KV cache: `repeats` alternating pairs (scratchlm, then HF); the median
    tokens/s of each, and the median of the pairs' ratios, which a load that changes between pairs
    cannot tilt as it can two medians taken apart."""
    import torch

    from scratchlm.generate import generate_ids

    ours.eval()
    hf.eval()
    dev = next(ours.parameters()).device
    times = {"scratchlm": [], "hf": []}
    out = {}
    for _ in range(repeats):
        start = time.perf_counter()
        out["scratchlm"] = list(generate_ids(ours, prompt, tokens, None))  # ends on .item(): synchronized
        times["scratchlm"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            ids = hf.generate(torch.tensor([prompt], device=dev), max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, use_cache=True, pad_token_id=0)
        synchronize(dev)
        times["hf"].append(time.perf_counter() - start)
        out["hf"] = ids[0, len(prompt):].tolist()
    rows = {name: {"what": "generation", "model": name, "tokens": tokens,
                   "tokens_per_second": round(tokens / statistics.median(t), 1),
                   "seconds": round(statistics.median(t), 3)} for name, t in times.items()}
    ratios = [hf_s / ours_s for ours_s, hf_s in zip(times["scratchlm"], times["hf"], strict=True)]
    same = next((i for i, (a, b) in enumerate(zip(out["scratchlm"], out["hf"], strict=True)) if a != b), tokens)
    return {**rows, "same_tokens": same, "pair_ratios": [round(r, 3) for r in ratios],
            "ratio": round(statistics.median(ratios), 3)}


def measure_long(model, prompt: list[int], tokens: int) -> dict:
    from scratchlm.generate import generate_ids

    start = time.perf_counter()
    list(generate_ids(model.eval(), prompt, tokens, None, temperature=0.8, top_k=20, seed=0))
    seconds = time.perf_counter() - start
    return {"what": "long generation", "model": "scratchlm", "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1), "seconds": round(seconds, 3)}


def synchronize(device) -> None:
    """Wait for the GPU's queued work, so that a host clock reads the time it took (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(quick: bool, device: str = "cpu", compile: bool = False) -> dict:
    import torch
    import transformers

    from scratchlm.data.batches import lm_batches
    from scratchlm.data.pipeline import DataConfig, load_lm_data
    from scratchlm.data.tokenize import DOC, TokenizerSpec
    from scratchlm.speed import resolve_device, tune_cpu_threads

    transformers.logging.set_verbosity_error()
    data = load_lm_data(DataConfig(path=str(DATA), tokenizer=TokenizerSpec(kind="char")), align=64)
    V = data.tokenizer.vocab_size
    load_start = os.getloadavg()[0]
    c = RECIPES[device]
    dev = resolve_device(device)  # on a GPU: TF32 and flash attention, as `scratchlm train` sets them
    ours, hf = build_pair(V, c["block_size"], c, device)
    n_parameters = sum(p.numel() for p in ours.parameters())
    # the thread counts scratchlm picks (speed.tune_cpu_threads), given to both: training reads
    # batch x context rows per matmul, generation one
    tune_cpu_threads(dev, n_parameters, c["batch_size"] * c["block_size"])
    threads = {"training": torch.get_num_threads()}
    x = torch.randint(0, V, (2, c["block_size"]), device=dev)
    with torch.no_grad():
        init_diff = (ours.eval()(x)[0] - hf.eval()(input_ids=x).logits).abs().max().item()
    batches = lm_batches(data.train_ids, c["batch_size"], c["block_size"], carries_state=False)
    compiled = {"scratchlm": torch.compile(copy.deepcopy(ours))} if compile else None  # the same starting weights
    train = measure_training(ours, hf, batches, rounds=4 if quick else 10, steps=20, device=device, compiled=compiled)
    tune_cpu_threads(dev, n_parameters, 1)
    threads["generation"] = torch.get_num_threads()
    prompt = [DOC] + data.tokenizer.encode(PROMPT)
    ours_long, hf_long = build_pair(V, 512, c, device)
    generate = measure_generation(ours_long, hf_long, prompt, 500, repeats=3 if quick else 7)
    generate["long"] = measure_long(ours, prompt, 2000)
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "recipe": c,
            "hf_attention": hf.config._attn_implementation, "threads": threads, "vocab_size": V,
            "init_max_diff": init_diff, "train": train, "generate": generate,
            "load_start": load_start, "load_end": os.getloadavg()[0]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the side-by-side measurements of the gpt benchmark, as JSON")
    parser.add_argument("what", choices=["measure"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=list(RECIPES), default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd copy of scratchlm's model")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick, args.device, args.compile)))
