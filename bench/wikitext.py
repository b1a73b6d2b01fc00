"""Word-level WikiText-2: train on valid.txt, report the perplexity on test.txt.

Only the validation and test splits of WikiText-2 are here (217k and 245k words), so the models train on
valid.txt (its last 10% held out to pick the best checkpoint) and are scored on test.txt, which they never
see. Two figures, each from one `scratchlm train --time T` process and a `scratchlm eval --data test.txt`:

- the reference: a 2-layer, 200-unit LSTM with tied embeddings and dropout 0.2, batch 20, BPTT 35, the
  configuration of PyTorch's word_language_model example, which reaches a test perplexity of about 347
  after 7.4 minutes on this machine. The target: that perplexity in half the time (222 s) or less.
- the best recipe found for a 10-minute budget (aim: a test perplexity of at most 200).

Test words never seen in valid.txt are read as <unk>; with `--min-freq 2` the words seen once in training
are <unk> too, so the model learns what an unknown word looks like.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import Section, log, run_child, scratchlm_command

NAME = "wikitext"
TITLE = "WikiText-2, word level: train on valid.txt, test perplexity"
ABOUT = ("Each row is one `scratchlm train --time T` run on ../shared/data/wikitext-2/valid.txt (10% of it held "
         "out for checkpoint selection) and `scratchlm eval RUN --data test.txt` on the best checkpoint. Train s "
         "is the run's own training time, evaluations not counted; test perplexity is exp(mean token loss) over "
         "the whole of test.txt.")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikitext-2"
REFERENCE_PERPLEXITY, REFERENCE_SECONDS = 347.0, 7.4 * 60  # PyTorch's example on this machine
AIM = 200.0
TIED_LSTM = ["--model", "lstm", "--set", "n_hidden=200", "--set", "tie_weights=true", "--set", "dropout=0.2",
             "--batch-size", "20", "--bptt", "35"]
RECIPES = {
    # name: (what it is, command-line arguments, training seconds)
    "reference": ("lstm 2x200 tied, dropout 0.2, batch 20, bptt 35, lr 3e-3 one-cycle",
                  [*TIED_LSTM, "--lr", "3e-3"], REFERENCE_SECONDS / 2),
    "best-10min": ("awd-lstm 2x400 tied, weight dropout 0.2, output 0.3, batch 32, bptt 35, min-freq 2",
                   ["--model", "awd-lstm", "--set", "n_embed=400", "--set", "n_hidden=400", "--set", "embed_p=0.05",
                    "--set", "input_p=0.2", "--set", "hidden_p=0.1", "--set", "weight_p=0.2", "--set", "output_p=0.3",
                    "--batch-size", "32", "--bptt", "35", "--lr", "3e-3", "--weight-decay", "0.1", "--min-freq", "2"],
                   600.0),
}


def run(quick: bool = False) -> Section:
    if not (DATA / "valid.txt").exists():
        return Section([], [f"skipped: {DATA} is not here"])
    scale = 0.25 if quick else 1.0
    rows, details = [], []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-wikitext-") as tmp:
        for name, (what, args, seconds) in RECIPES.items():
            row = train_and_test(name, what, args, seconds * scale, Path(tmp))
            rows.append({k: v for k, v in row.items() if k != "history"})
            details.append(row)
    return Section(rows, notes(rows, scale), details)


def train_and_test(name: str, what: str, args: list[str], seconds: float, tmp: Path) -> dict:
    out = tmp / name
    log(f"  {NAME}: {name}, {seconds:.0f} s ...")
    env = {"SCRATCHLM_CACHE": str(tmp / "cache")}
    trained = run_child(scratchlm_command("train", "--data", str(DATA / "valid.txt"), "--tokenizer", "word", *args,
                                          "--time", f"{seconds:.0f}s", "--seed", "0", "--out", str(out), "--quiet"),
                        tmp / "logs" / f"{name}-train", env=env)
    tested = run_child(scratchlm_command("eval", str(out), "--data", str(DATA / "test.txt"), "--json"),
                       tmp / "logs" / f"{name}-eval", env=env)
    test = json.loads(tested.stdout)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((out / "config.json").read_text())
    last = history[-1]
    row = {"recipe": name, "what": what, "parameters": config["model"]["parameters"],
           "vocabulary": config["model"]["config"]["vocab_size"], "train_s": last["seconds"],
           "epochs": round(last["epoch"], 2), "tokens_per_second": last["tokens_per_second"],
           "valid_perplexity": min(h["valid_perplexity"] for h in history), "test_perplexity": test["perplexity"],
           "peak_rss_mb": round(trained.peak_rss_mb, 1), "history": history}
    log(f"    test perplexity {row['test_perplexity']:.1f} after {row['train_s']:.0f} s ({row['epochs']} epochs)")
    return row


def notes(rows: list[dict], scale: float) -> list[str]:
    by_name = {r["recipe"]: r for r in rows}
    out = [f"Data: {DATA.name}/valid.txt to train, test.txt to score; seed 0."]
    if scale != 1:
        out.append(f"Quick run: every budget scaled by {scale}; the targets below are for the full budgets.")
    if ref := by_name.get("reference"):
        verdict = "met" if ref["test_perplexity"] <= REFERENCE_PERPLEXITY else "not met"
        out.append(f"Reference target, test perplexity <= {REFERENCE_PERPLEXITY:.0f} within {REFERENCE_SECONDS / 2:.0f} s "
                   f"(half of PyTorch's example's {REFERENCE_SECONDS / 60:.1f} min): {ref['test_perplexity']:.1f} after "
                   f"{ref['train_s']:.0f} s, {verdict}.")
    if best := by_name.get("best-10min"):
        verdict = "met" if best["test_perplexity"] <= AIM else "not met"
        out.append(f"Best in a 10-minute budget: test perplexity {best['test_perplexity']:.1f} (aim <= {AIM:.0f}: {verdict}).")
    return out
