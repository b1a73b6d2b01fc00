"""The gpt benchmark on a CUDA GPU: nanoGPT's GPU recipe for shakespeare-char, against HF GPT2LMHeadModel.

The same three measurements as `gpt` (bench/gpt.py, which does the work), at the size nanoGPT trains on
one GPU (config/train_shakespeare_char.py: 6 layers, 6 heads, 384 wide, context 256, batch 64):

- training speed: scratchlm's `GPT` and `transformers.GPT2LMHeadModel`, same config and starting weights,
  side by side in one process, both under bf16 autocast with TF32 and fused AdamW, as `scratchlm train`
  runs on a GPU (dropout 0 for both), and a third turn for scratchlm's model under torch.compile (what
  `scratchlm train --compile` does);
- validation loss of `scratchlm train --device cuda --time 140s` with the `shakespeare-char` preset and
  nanoGPT's GPU recipe (lr 1e-3, cosine, dropout 0.2, batch 64 x 256); nanoGPT reports 1.47 after its
  5000 iterations;
- greedy generation of 500 tokens at batch 1 with the KV cache, against HF `generate(use_cache=True)`.

Skipped, keeping the figures of the last GPU run, on a machine without CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import gpt
from common import Section, log, run_child

NAME = "gpt-gpu"
TITLE = "GPT on tiny-shakespeare (char) on a GPU: against Hugging Face GPT2LMHeadModel"
ABOUT = ("As `gpt`, at nanoGPT's GPU size (6 layers, 6 heads, 384 wide, context 256, batch 64): training tokens/s "
         "of scratchlm's gpt and GPT2LMHeadModel side by side (same weights and batches, bf16 autocast, TF32, fused "
         "AdamW, dropout 0), and of scratchlm's model under torch.compile; the validation loss of `scratchlm train "
         "--device cuda --time 140s --set preset=shakespeare-char` with nanoGPT's recipe (full pass over the last 10% "
         "of the file); greedy generation of 500 tokens at batch 1 with the KV cache against HF "
         "generate(use_cache=True).")
RECIPE = ("--set", "preset=shakespeare-char", "--bptt", "256", "--batch-size", "64", "--lr", "1e-3",
          "--schedule", "cosine", "--warmup", "0.02", "--weight-decay", "0.1", "--grad-clip", "1.0", "--optimizer", "adamw",
          "--device", "cuda")
NANOGPT_GPU_LOSS = 1.47  # nanoGPT's README, after 5000 iterations


def run(quick: bool = False) -> Section:
    import torch

    if not torch.cuda.is_available():
        return Section([], ["skipped: no CUDA GPU here"])
    if not gpt.DATA.exists():
        return Section([], [f"skipped: {gpt.DATA} is not here"])
    if importlib.util.find_spec("transformers") is None:
        return Section([], ["skipped: transformers is not installed (pip install -e '.[bench]')"])
    budget = gpt.BUDGET_S / 4 if quick else gpt.BUDGET_S
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-gpt-gpu-") as tmp:
        log(f"  {NAME}: side by side with HF on {torch.cuda.get_device_name()}, training and generation ...")
        child = run_child([sys.executable, gpt.__file__, "measure", "--device", "cuda", "--compile",
                           *(["--quick"] if quick else [])], Path(tmp) / "measure")
        speed = json.loads(child.stdout)
        log(f"  {NAME}: scratchlm train --device cuda --time {budget:.0f}s ...")
        trained = gpt.train_once(budget, Path(tmp), *RECIPE)
    section = gpt.summarize(speed, trained, budget, recipe="nanoGPT's GPU recipe")
    section.notes[0] = (f"On {speed['device']}; HF's attention: {speed['hf_attention']}. "
                        f"nanoGPT reports validation loss {NANOGPT_GPU_LOSS} with this recipe after 5000 iterations.")
    section.notes[3] = (f"Validation loss after {trained['seconds']:.0f} s of `scratchlm train` ({trained['steps']} "
                        f"steps, {' '.join(RECIPE)}): {trained['valid_loss']:.4f}.")
    return section
