"""GPT-2 small (124M parameters, context 1024) trained on a GPU: model FLOPs utilization, against HF.

The size of the smallest GPT-2 (Radford et al. 2019: 12 layers, 12 heads, 768 wide, context 1024; the
vocabulary padded from 50,257 to 50,304, a multiple of 64, as nanoGPT pads it), trained as `scratchlm train
--device cuda --compile` trains: bf16 autocast, TF32, flash attention (SDPA), fused AdamW, torch.compile.
scratchlm's GPT and transformers' GPT2LMHeadModel with the same config and starting weights, trained side
by side in one process on the same batches (`gpt.measure_training`: alternating rounds, the first one
warming up and compiling), each eager and compiled. The batches are seeded random token ids: a step's
cost does not depend on the text, and nothing here downloads GPT-2's tokenizer.

MFU, model FLOPs utilization (Chowdhery et al. 2022, "PaLM", appendix B): the FLOPs the model needs per
token times the tokens per second, over the device's peak rate,

    flops per token = 6 N + 12 L H Q T

with N the weights that multiply (every parameter but the position table; the tied output layer counted
once, through the token embedding), L layers, H heads of size Q, T the context: 2 FLOPs a multiply-add,
times 3 for the forward pass and a backward pass twice its cost; 12 L H Q T is attention's two matrix
products (scores and the weighted sum). The peak is the dense bf16 tensor-core rate of the device, from
its datasheet (PEAK_BF16). Target: at least 40% on an H100 or H200.

Without CUDA the section is skipped and its last GPU figures are kept; `python bench/gpt2_small.py measure
--tiny` runs the same path with a tiny model on the CPU (the test suite runs it so).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import gpt
from common import Section, log, run_child

NAME = "gpt2-small"
TITLE = "GPT-2 small (124M) on a GPU: model FLOPs utilization, against Hugging Face GPT2LMHeadModel"
ABOUT = ("scratchlm's gpt and transformers' GPT2LMHeadModel at GPT-2 small's size (12 layers, 12 heads, 768 wide, "
         "context 1024, vocabulary 50,304), same starting weights, trained side by side in one process on the same "
         "batches of random token ids, each eager and under torch.compile; bf16 autocast, TF32, flash attention, "
         "fused AdamW. MFU: (6 N + 12 L H Q T) x tokens/s over the device's dense bf16 peak (PaLM, appendix B).")
GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "batch_size": 16, "vocab_size": 50_304}
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "batch_size": 4, "vocab_size": 512}
# Dense bf16 tensor-core peaks, FLOP/s, from the datasheets (the sparse figures are twice these)
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
MFU_TARGET = 0.40


def run(quick: bool = False) -> Section:
    import torch

    if not torch.cuda.is_available():
        return Section([], ["skipped: no CUDA GPU here (the path runs on the CPU with a tiny model in the tests)"])
    if importlib.util.find_spec("transformers") is None:
        return Section([], ["skipped: transformers is not installed (pip install -e '.[bench]')"])
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-gpt2-small-") as tmp:
        log(f"  {NAME}: side by side with HF on {torch.cuda.get_device_name()}, eager and compiled ...")
        child = run_child([sys.executable, __file__, "measure", "--device", "cuda", "--compile",
                           *(["--quick"] if quick else [])], Path(tmp) / "measure")
    return summarize(json.loads(child.stdout))


def flops_per_token(n_weights: int, c: dict) -> int:
    """6 N + 12 L H Q T: the FLOPs a trained token costs, forward and backward (module docstring)."""
    return 6 * n_weights + 12 * c["n_layer"] * c["n_head"] * (c["n_embd"] // c["n_head"]) * c["block_size"]


def peak_flops(device_name: str) -> float | None:
    """The device's dense bf16 peak, by its name (the longest entry that the name holds), or None."""
    known = [name for name in PEAK_BF16 if name in device_name]
    return PEAK_BF16[max(known, key=len)] if known else None


def summarize(found: dict) -> Section:
    c, peak = found["config"], found["peak_flops"]
    rows = []
    for name, label in (("scratchlm", "scratchlm gpt"), ("scratchlm_compiled", "scratchlm gpt, torch.compile"),
                        ("hf", "HF GPT2LMHeadModel"), ("hf_compiled", "HF GPT2LMHeadModel, torch.compile")):
        if name in found["train"]:
            t = found["train"][name]
            rows.append({"model": label, "tokens/s": t["tokens_per_second"], "s": t["seconds"], "steps": t["steps"],
                         "loss": t["last_loss"], "TFLOP/s": round(t["tokens_per_second"] * found["flops_per_token"] / 1e12, 1),
                         "MFU %": round(100 * t["mfu"], 1) if t.get("mfu") is not None else None})
    notes = [f"On {found['device']}, {found['torch']}; batch {c['batch_size']} x {c['block_size']} tokens, "
             f"{found['n_parameters']:,} parameters ({found['n_weights']:,} that multiply); HF's attention: "
             f"{found['hf_attention']}.",
             f"MFU = (6 N + 12 L H Q T) x tokens/s / peak = {found['flops_per_token']:,} FLOPs a token x tokens/s / "
             + (f"{peak / 1e12:g} TFLOP/s (the device's dense bf16 peak)." if peak else "an unknown peak (no MFU).")]
    train = found["train"]
    if peak and "scratchlm_compiled" in train:
        mfu = train["scratchlm_compiled"]["mfu"]
        notes.append(f"scratchlm compiled: {100 * mfu:.1f}% MFU (target >= {100 * MFU_TARGET:.0f}%: "
                     f"{'met' if mfu >= MFU_TARGET else 'not met'}).")
    for mode in ("", "_compiled"):
        if f"scratchlm{mode}" in train and f"hf{mode}" in train:
            ratio = train[f"scratchlm{mode}"]["tokens_per_second"] / train[f"hf{mode}"]["tokens_per_second"]
            notes.append(f"{'compiled' if mode else 'eager'}: scratchlm {ratio:.2f}x HF's tokens/s.")
    notes.append(f"Same starting weights: the largest logit difference at initialisation is {found['init_max_diff']:.1e}.")
    return Section(rows, notes, [found])


class RandomBatches:
    """`n` batches of token ids drawn uniformly from a seeded generator: (inputs, next tokens)."""

    def __init__(self, n: int, batch_size: int, block_size: int, vocab_size: int, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab_size, (n, batch_size, block_size + 1), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, k: int):
        return self.ids[k, :, :-1], self.ids[k, :, 1:]


def measure(device: str, tiny: bool, quick: bool, compile: bool) -> dict:
    import torch
    import transformers

    from scratchlm.speed import resolve_device

    transformers.logging.set_verbosity_error()
    c = TINY if tiny else GPT2_SMALL
    dev = resolve_device(device)  # on a GPU: TF32 and flash attention, as `scratchlm train` sets them
    ours, hf = gpt.build_pair(c["vocab_size"], c["block_size"], c, device)
    n_parameters = sum(p.numel() for p in ours.parameters())
    n_weights = n_parameters - ours.wpe.weight.numel()
    x = torch.randint(0, c["vocab_size"], (2, c["block_size"]), device=dev)
    with torch.no_grad():
        init_diff = (ours.eval()(x)[0] - hf.eval()(input_ids=x).logits).abs().max().item()
    compiled = {"scratchlm": torch.compile(copy.deepcopy(ours)), "hf": torch.compile(copy.deepcopy(hf))} if compile else None
    rounds, steps = (1, 2) if tiny else (2, 5) if quick else (4, 10)
    batches = RandomBatches(steps * (rounds + 1), c["batch_size"], c["block_size"], c["vocab_size"])
    train = gpt.measure_training(ours, hf, batches, rounds=rounds, steps=steps, device=device, compiled=compiled)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    per_token, peak = flops_per_token(n_weights, c), peak_flops(name)  # no peak for "cpu"
    for t in train.values():
        t["mfu"] = round(t["tokens_per_second"] * per_token / peak, 4) if peak else None
    return {"device": name, "torch": f"torch {torch.__version__}", "config": c, "n_parameters": n_parameters,
            "n_weights": n_weights, "flops_per_token": per_token, "peak_flops": peak,
            "hf_attention": hf.config._attn_implementation, "init_max_diff": init_diff, "train": train}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the side-by-side measurements of the gpt2-small benchmark, as JSON")
    parser.add_argument("what", choices=["measure"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, a few steps: the path, not the figures")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd copies of both models")
    args = parser.parse_args()
    print(json.dumps(measure(args.device, args.tiny, args.quick, args.compile)))
