"""English to French on Tatoeba's eng-fra.tsv: every translation model under the same time budget.

Each model trains with `scratchlm train --data eng-fra.tsv --model M --time BUDGET` (the task's split:
whole source sentences held out, 5%), then `scratchlm eval RUN --beam K` gives BLEU and chrF
(sacrebleu's defaults, detokenized, against every reference of each held-out source) for greedy
decoding and beam 4. For the plain encoder-decoder, the attentional one and the Transformer, held-out
BLEU is also read by source length (Bahdanau et al. 2015, figure 2: one context vector cannot carry a
long sentence), and for the attentional RNN and the Transformer a small sweep of beam size and length
penalty. The Transformer (`transformer-mt`, its registry recipe: pre-norm 3+3 layers, width 256, the
joint 8k byte-level BPE with every embedding tied, label smoothing 0.1, the inverse-square-root
schedule from 2e-3 cooled down to 0 over the last fifth, ~750 target tokens a batch, no dropout)
runs beside the RNNs in the same run, so "it beats seq2seq-attn at equal time" is read off one table.

The seed project's character-level Keras LSTM encoder-decoder on 10,000 pairs reached BLEU 4.6 after
15 minutes on this machine (5.6 after 25): each row says how far above it a model is.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import BenchError, Section, carried_over, log, measured_apart, run_child, scratchlm_command

NAME = "translation"
TITLE = "Translation, English to French (Tatoeba eng-fra.tsv): BLEU and chrF under one time budget"
ABOUT = ("Runs `scratchlm train --data eng-fra.tsv --model M --time BUDGET` per model, then `scratchlm eval RUN "
         "--beam K` (sacrebleu defaults, detokenized, cased, every reference of each held-out source). Train s is "
         "training time, evaluations not counted.")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eng-fra" / "eng-fra.tsv"
BUDGET_S = 900.0
SEED_BASELINE = 4.6  # the seed notes' char-level Keras LSTM encoder-decoder after 15 minutes
TARGET, AIM = 33.0, 36.0  # seq2seq-attn
TRANSFORMER_TARGET, TRANSFORMER_AIM = 42.0, 45.0  # transformer-mt: a plain nn.Transformer reached 42.4 in 14 minutes
MODELS = {
    # name: (what it is, arguments)
    "seq2seq": ("GRU encoder-decoder, the context vector only", ["--model", "seq2seq"]),
    "seq2seq-rev-bi": ("the same, reversed source and bidirectional encoder",
                       ["--model", "seq2seq", "--set", "reverse_source=true", "--set", "bidirectional=true"]),
    "seq2seq-attn": ("bidirectional GRU, Bahdanau (additive) attention", ["--model", "seq2seq-attn"]),
    "seq2seq-attn-general": ("bidirectional GRU, Luong general attention, input feeding",
                             ["--model", "seq2seq-attn", "--set", "attention=general", "--set", "input_feeding=true"]),
    "seq2seq-attn-dot": ("GRU, Luong dot attention", ["--model", "seq2seq-attn", "--set", "attention=dot",
                                                       "--set", "bidirectional=false"]),
    "transformer-mt": ("Transformer, pre-norm 3+3 layers, width 256, tied joint BPE, label smoothing 0.1",
                       ["--model", "transformer-mt"]),
}
BY_LENGTH = ("seq2seq", "seq2seq-attn", "transformer-mt")
SWEPT = ("seq2seq-attn", "transformer-mt")
SWEEP = [(1, 1.0), (2, 1.0), (4, 0.0), (4, 0.6), (4, 1.0), (8, 1.0)]
LENGTH_BINS = [(1, 5), (6, 8), (9, 11), (12, 15), (16, 100)]


def run(quick: bool = False, models: list[str] | None = None, kept: dict | None = None) -> Section:
    """`models`: race only these of MODELS, e.g. the Transformer and the attentional RNN; `kept`: the section
    recorded before (bench/run.py passes it with --models), whose rows for the models not raced now are
    carried over with the date each was measured, so the two-hour race can be run in parts."""
    if not DATA.exists():
        return Section([], [f"skipped: {DATA} is not here"])
    if unknown := sorted(set(models or []) - set(MODELS)):
        raise BenchError(f"unknown translation model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    budget = BUDGET_S * (0.2 if quick else 1.0)
    raced = {}
    today = datetime.now(UTC).date().isoformat()
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-translation-") as tmp:
        for name, (what, args) in MODELS.items():
            if not models or name in models:
                raced[name] = {**train_and_score(name, what, args, budget, Path(tmp)), "measured": today}
    carried = {d["model"]: d for d in carried_over(kept, quick, "model", lambda m: m in MODELS and m not in raced)}
    details = [raced.get(name) or carried[name] for name in MODELS if name in raced or name in carried]
    rows = [{k: v for k, v in d.items() if k not in ("history", "by_length", "sweep", "signature")} for d in details]
    plot(details)
    peer = against_nn_transformer(rounds=2 if quick else 4)
    return Section(rows, notes(details, budget, peer), [*details, peer])


def plot(details: list[dict]) -> None:
    """bench/results/translation.png: held-out BLEU (the training slice) against seconds of training."""
    from scratchlm.plots import plot_curves

    curves = {d["model"]: ([h["seconds"] for h in d["history"]], [h["bleu"] for h in d["history"]]) for d in details
              if "history" in d}
    plot_curves(curves, Path(__file__).resolve().parent / "results" / "translation.png", "seconds of training",
                "held-out BLEU (greedy, 1,000 sources)", "eng-fra: BLEU against training time")


def train_and_score(name: str, what: str, args: list[str], seconds: float, tmp: Path) -> dict:
    out = tmp / name
    log(f"  {NAME}: {name}, {seconds:.0f} s ...")
    run_child(scratchlm_command("train", "--data", str(DATA), *args, "--time", f"{seconds:.0f}s", "--seed", "0",
                                "--out", str(out), "--quiet"), tmp / "logs" / f"{name}-train")
    scores = {beam: evaluate(out, tmp, name, beam) for beam in (1, 4)}
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((out / "config.json").read_text())
    last = history[-1]
    row = {"model": name, "what": what, "parameters": config["model"]["parameters"], "train_s": last["seconds"],
           "epochs": round(last["epoch"], 2), "tokens_per_second": last["tokens_per_second"],
           "bleu_greedy": round(scores[1]["bleu"], 2), "bleu_beam4": round(scores[4]["bleu"], 2),
           "chrf_greedy": round(scores[1]["chrf"], 2), "chrf_beam4": round(scores[4]["chrf"], 2),
           "x_seed_baseline": round(scores[1]["bleu"] / SEED_BASELINE, 1), "signature": scores[1]["signature"],
           "history": [{"seconds": h["seconds"], "bleu": h["valid_bleu"]} for h in history]}
    if name in BY_LENGTH:
        row["by_length"] = by_length(out, tmp, name)
    if name in SWEPT:
        row["sweep"] = [{"beam": b, "length_penalty": a, "bleu": round(evaluate(out, tmp, name, b, a)["bleu"], 2)}
                        for b, a in SWEEP]
    log(f"    BLEU {row['bleu_greedy']:.2f} greedy, {row['bleu_beam4']:.2f} beam 4 after {row['train_s']:.0f} s")
    return row


def evaluate(out: Path, tmp: Path, name: str, beam: int, length_penalty: float = 1.0) -> dict:
    done = run_child(scratchlm_command("eval", str(out), "--beam", str(beam), "--length-penalty", str(length_penalty),
                                       "--json"), tmp / "logs" / f"{name}-eval-{beam}-{length_penalty}")
    return json.loads(done.stdout)


BY_LENGTH_SCRIPT = """
import json, sys
import scratchlm
from sacrebleu.metrics import BLEU
from scratchlm.data.pairs import PairsConfig
from scratchlm.tasks.translation import reference_streams, split_data
run = scratchlm.load(sys.argv[1], device="cpu")
data = split_data(PairsConfig(**run.config["data"]["config"]), run.tokenizers)
sources = list(data.held)
hypotheses = run.translate(sources)
out = []
for low, high in json.loads(sys.argv[2]):
    pick = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
    if pick:
        bleu = BLEU().corpus_score([hypotheses[i] for i in pick], reference_streams([data.held[sources[i]] for i in pick]))
        out.append({"words": f"{low}-{high}", "sentences": len(pick), "bleu": round(bleu.score, 2)})
print(json.dumps(out))
"""


def by_length(out: Path, tmp: Path, name: str) -> list[dict]:
    """Held-out BLEU by the source's length in words (greedy)."""
    import sys

    done = run_child([sys.executable, "-c", BY_LENGTH_SCRIPT, str(out), json.dumps(LENGTH_BINS)],
                     tmp / "logs" / f"{name}-by-length")
    return json.loads(done.stdout)


def against_nn_transformer(rounds: int = 4, steps: int = 3) -> dict:
    """Seconds per training step of transformer-mt's recipe against torch.nn.Transformer of the same shape
    (pre-norm, 3+3 layers, width 256, 4 heads, 1,024 wide inside, dropout 0.1, sinusoidal positions, one
    tied 8k embedding, label smoothing 0.1), AdamW, on one batch of 160 pairs (sources of 3-8 tokens,
    targets of 10), in this process, the two alternating round by round."""
    import time
    import warnings

    import torch
    import torch.nn.functional as F
    from torch import nn

    from scratchlm.data.tokenize import PAD
    from scratchlm.models.registry import get_spec
    from scratchlm.models.transformer_mt import sinusoids

    V, B, S, T = 8000, 160, 8, 10
    torch.manual_seed(0)
    spec = get_spec("transformer-mt")
    ours = spec.build(spec.make_config({"src_vocab_size": V, "tgt_vocab_size": V, "joint_vocab": True}))

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, 256)
            with warnings.catch_warnings():  # "enable_nested_tensor is True, but ...": pre-norm layers take none
                warnings.simplefilter("ignore", UserWarning)
                self.transformer = nn.Transformer(256, 4, 3, 3, 1024, 0.1, batch_first=True, norm_first=True)
            self.out = nn.Linear(256, V, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, src, lengths, tgt_in, targets):
            pad = torch.arange(src.size(1))[None] >= lengths[:, None]
            x = self.embed(src) * 16 + sinusoids(torch.arange(src.size(1)), 256)
            y = self.embed(tgt_in) * 16 + sinusoids(torch.arange(tgt_in.size(1)), 256)
            causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1))
            h = self.transformer(x, y, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad,
                                 tgt_is_causal=True)
            logits = self.out(h)
            return None, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=PAD, label_smoothing=0.1), None

    models = {"transformer-mt": ours, "nn.Transformer": Peer()}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    src, lengths = torch.randint(5, V, (B, S)), torch.randint(3, S + 1, (B,))
    tgt = torch.randint(5, V, (B, T))

    def step(name: str) -> None:
        loss = models[name](src, lengths, tgt, tgt)[1]
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()

    seconds = dict.fromkeys(models, 0.0)
    for name in models:
        step(name)  # warm-up
    for r in range(rounds):
        for name in list(models)[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            for _ in range(steps):
                step(name)
            seconds[name] += time.perf_counter() - start
    per_step = {name: seconds[name] / (rounds * steps) for name in models}
    return {"model": "step time against nn.Transformer", "threads": torch.get_num_threads(),
            "seconds_per_step": {k: round(v, 3) for k, v in per_step.items()},
            "ratio": round(per_step["transformer-mt"] / per_step["nn.Transformer"], 3)}


def notes(details: list[dict], budget: float, peer: dict | None = None) -> list[str]:
    by_name = {d["model"]: d for d in details}
    out = [f"Budget {budget:.0f} s of training per model, seed 0, 2 CPU threads; BLEU {details[0]['signature']}."]
    if left_out := [name for name in MODELS if name not in by_name]:
        out.append(f"Not measured: {', '.join(left_out)} (bench/run.py --models raced the others).")
    if apart := measured_apart(details):
        out.append(apart)
    attn, tmt = by_name.get("seq2seq-attn"), by_name.get("transformer-mt")
    for name, row, target, aim in (("seq2seq-attn", attn, TARGET, AIM),
                                   ("transformer-mt", tmt, TRANSFORMER_TARGET, TRANSFORMER_AIM)):
        if row:
            best = max(row["bleu_greedy"], row["bleu_beam4"])
            verdict = "a quick run" if budget < BUDGET_S else "met" if best >= target else "not met"
            beam = "at least as good as" if row["bleu_beam4"] >= row["bleu_greedy"] else "below"
            out.append(f"{name} target, BLEU >= {target} within 15 minutes (aim {aim}): {best:.2f}, {verdict}; "
                       f"beam 4 {beam} greedy.")
    if attn and tmt:
        out.append(f"transformer-mt against seq2seq-attn at equal time: {tmt['bleu_greedy']:.2f} against "
                   f"{attn['bleu_greedy']:.2f} greedy BLEU, {tmt['tokens_per_second']:,.0f} against "
                   f"{attn['tokens_per_second']:,.0f} tokens/s.")
    for name in SWEPT:
        if sweep := by_name.get(name, {}).get("sweep"):
            out.append(f"Beam and length penalty sweep ({name}): " + ", ".join(
                f"beam {s['beam']} alpha {s['length_penalty']:g}: {s['bleu']:.2f}" for s in sweep))
    for name in BY_LENGTH:
        if rows := by_name.get(name, {}).get("by_length"):
            out.append(f"{name} BLEU by source length (words): " + ", ".join(
                f"{r['words']}: {r['bleu']:.1f} ({r['sentences']})" for r in rows))
    if peer:
        out.append(f"A training step of transformer-mt takes {peer['ratio']:.2f}x the time of torch.nn.Transformer of "
                   f"the same shape ({peer['seconds_per_step']['transformer-mt']:.2f} s against "
                   f"{peer['seconds_per_step']['nn.Transformer']:.2f} s, 160 pairs, {peer['threads']} threads).")
    out.append(f"The seed's char-level Keras LSTM encoder-decoder: BLEU {SEED_BASELINE} after 15 minutes; "
               "x_seed_baseline is each model's greedy BLEU over it.")
    return out
