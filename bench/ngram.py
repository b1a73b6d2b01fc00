"""The Kneser-Ney n-gram rung (orders 2-5) against the neural rungs, on human numbers and on WikiText-2.

A count model is the baseline a neural language model must beat: it learns in one pass of counting,
with no gradient step, so its seconds are the counting and its perplexity the bar. Every row is one
`scratchlm train` process and, on WikiText-2, one `scratchlm eval RUN --data test.txt` process.

- Human numbers: `ngram` at orders 2 to 5 (and stupid backoff at order 5) beside mlp3, lstm and awd-lstm
  with their registry defaults, on the same split (the last 20% of the stream); validation accuracy,
  perplexity and training seconds.
- WikiText-2: trained on valid.txt (its last 10% held out, as bench/wikitext.py does), scored on test.txt:
  `ngram` at orders 2 to 5 on the vocabulary of every word of valid.txt (13,781 tokens), beside the
  reference LSTM of bench/wikitext.py on that same vocabulary; and ngram order 5 with `--min-freq 2`
  (9,215 tokens) beside the 10-minute AWD-LSTM on that one. Perplexities are comparable only within
  one vocabulary: a smaller one turns more words into <unk>, an easy guess.

Stupid backoff's scores do not sum to 1; its perplexity is that of the scores renormalised in every
context (see models/ngram.py), so it is shown, but is not the figure of the method Brants et al. ran.
`--quick` scores the first quarter of test.txt and gives the neural recipes a quarter of their budgets.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import wikitext
from common import Section, log, run_child, scratchlm_command

NAME = "ngram"
TITLE = "Kneser-Ney n-grams (orders 2-5) against the neural rungs: human numbers, WikiText-2"
ABOUT = ("One `scratchlm train` process per row (seed 0); on WikiText-2 also `scratchlm eval RUN --data test.txt`. "
         "ngram rows count their training data once (train s is the counting, tokens/s its speed); the neural "
         "rows are their registry defaults on human numbers and bench/wikitext.py's recipes on WikiText-2. "
         "Test perplexity is exp(mean token loss) over test.txt; eval s is the wall time of the eval process. "
         "Perplexities compare only on the same vocabulary (the vocabulary column).")

ORDERS = (2, 3, 4, 5)
NEURAL_ON_HUMAN_NUMBERS = ("mlp3", "lstm", "awd-lstm")


def ngram(order: int, *more: str) -> list[str]:
    return ["--model", "ngram", "--set", f"order={order}", *more]


def run(quick: bool = False) -> Section:
    rows, details = [], []
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-ngram-") as folder:
        tmp = Path(folder)
        human = [(f"ngram order {k}", ngram(k)) for k in ORDERS]
        human += [("ngram order 5, stupid backoff", ngram(5, "--set", "smoothing=stupid-backoff"))]
        human += [(model, ["--model", model]) for model in NEURAL_ON_HUMAN_NUMBERS]
        for name, args in human:
            row = train("human-numbers", name, args, None, tmp)
            rows.append(row)
        if (wikitext.DATA / "valid.txt").exists():
            test = test_file(tmp, quick)
            scale = 0.25 if quick else 1.0
            reference, best = wikitext.RECIPES["reference"], wikitext.RECIPES["best-10min"]
            text = [(f"ngram order {k}", ngram(k)) for k in ORDERS]
            text += [("ngram order 5, stupid backoff", ngram(5, "--set", "smoothing=stupid-backoff")),
                     (f"lstm ({reference[0]})", [*reference[1], "--time", f"{reference[2] * scale:.0f}s"]),
                     ("ngram order 5, min-freq 2", ngram(5, "--min-freq", "2")),
                     (f"awd-lstm ({best[0]})", [*best[1], "--time", f"{best[2] * scale:.0f}s"])]
            for name, args in text:
                row = train(str(wikitext.DATA / "valid.txt"), name, [*args, "--tokenizer", "word"], test, tmp)
                rows.append(row)
        else:
            log(f"  {NAME}: {wikitext.DATA} is not here; WikiText-2 skipped")
    for row in rows:
        details.append(dict(row))
        row.pop("history", None)
    return Section(rows, notes(rows, quick), details)


def train(data: str, name: str, args: list[str], test: Path | None, tmp: Path) -> dict:
    """One run (and, given `test`, its test perplexity): a row of the table."""
    out = tmp / f"run-{sum(1 for _ in tmp.glob('run-*'))}"
    env = {"SCRATCHLM_CACHE": str(tmp / "cache")}
    corpus = "human numbers" if data == "human-numbers" else "WikiText-2"
    log(f"  {NAME}: {corpus}, {name} ...")
    trained = run_child(scratchlm_command("train", "--data", data, *args, "--seed", "0", "--out", str(out), "--quiet"),
                        tmp / "logs" / f"{out.name}-train", env=env)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((out / "config.json").read_text())
    last = history[-1]
    row = {"corpus": corpus, "model": name, "vocabulary": config["model"]["config"]["vocab_size"],
           "train_s": last["seconds"], "tokens_per_second": last["tokens_per_second"],
           "valid_accuracy": max(h["valid_accuracy"] for h in history),
           "valid_perplexity": min(h["valid_perplexity"] for h in history),
           "peak_rss_mb": round(trained.peak_rss_mb, 1)}
    if test is not None:
        tested = run_child(scratchlm_command("eval", str(out), "--data", str(test), "--json"),
                           tmp / "logs" / f"{out.name}-eval", env=env)
        row.update(test_perplexity=json.loads(tested.stdout)["perplexity"], eval_s=round(tested.wall_seconds, 1))
    row["history"] = history
    shown = f"test perplexity {row['test_perplexity']:.1f}" if test else f"accuracy {row['valid_accuracy']:.3f}"
    log(f"    {shown}, perplexity {row['valid_perplexity']:.2f} on validation, {row['train_s']:.1f} s")
    return row


def test_file(tmp: Path, quick: bool) -> Path:
    """test.txt, or (quick) its first quarter, cut at a line."""
    test = wikitext.DATA / "test.txt"
    if not quick:
        return test
    lines = test.read_text(encoding="utf-8").splitlines(keepends=True)
    part = tmp / "test-quarter.txt"
    part.write_text("".join(lines[: len(lines) // 4]), encoding="utf-8")
    return part


def notes(rows: list[dict], quick: bool) -> list[str]:
    out = []
    if quick and any(r["corpus"] == "WikiText-2" for r in rows):
        out.append("Quick run: the first quarter of test.txt, and a quarter of each neural recipe's budget.")
    for corpus in ("human numbers", "WikiText-2"):
        here = [r for r in rows if r["corpus"] == corpus]
        if not here:
            continue
        metric = "test_perplexity" if corpus == "WikiText-2" else "valid_perplexity"
        for vocabulary in sorted({r["vocabulary"] for r in here}):
            same = [r for r in here if r["vocabulary"] == vocabulary and "stupid" not in r["model"]]
            counts = [r for r in same if r["model"].startswith("ngram")]
            neural = [r for r in same if not r["model"].startswith("ngram")]
            if counts and neural:
                kn, nn = min(counts, key=lambda r: r[metric]), min(neural, key=lambda r: r[metric])
                verdict = "behind" if kn[metric] > nn[metric] else "ahead of"
                out.append(f"{corpus}, vocabulary {vocabulary:,}: the best count model, {kn['model']} "
                           f"({kn[metric]:.1f} after {kn['train_s']:.2f} s of counting), is {verdict} the best neural "
                           f"rung, {nn['model'].split(' (')[0]} ({nn[metric]:.1f} after {nn['train_s']:.0f} s).")
    if five := [r for r in rows if r["corpus"] == "WikiText-2" and r["model"] == "ngram order 5"]:
        out.append(f"Counting speed, Kneser-Ney order 5 on valid.txt's training part: {five[0]['tokens_per_second']:,.0f} "
                   "tokens/s (the counting and the tables, on one process; target at least 1,000,000).")
    out.append("Published for comparison, on another corpus (Penn Treebank, about 1M training words): KN-5 test "
               "perplexity 141 (Mikolov and Zweig 2012) against about 80-120 for LSTMs.")
    return out
