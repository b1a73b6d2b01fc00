"""Four ways to learn word vectors on one corpus: skip-gram with negative sampling, skip-gram with the
hierarchical softmax, CBOW with negative sampling, and GloVe, each beside gensim where gensim has it.

The corpus is WikiText-2 valid + test (about 455k words), as in bench/embeddings.py; every method keeps
the words seen 5 times or more and learns 100 dimensions. word2vec's three keep the defaults of
`scratchlm train --model word2vec` (window 5, 5 negatives, sample 1e-3, 5 epochs, the rate 0.025 falling
to 0), only the objective changing (`--set loss=hs`, `--set cbow=true`); gensim's take the same
settings (hs=1 negative=0; sg=0) with 2 workers. GloVe is scratchlm's alone (gensim has none): its
defaults, window 10, x_max 100, alpha 3/4, AdaGrad at 0.5 over batches of 16,384 counts, 25 epochs.

Each run is a fresh child. Seconds: the training loop's (scratchlm's metrics, gensim's around
`train()`), and the child's whole wall time beside them, which adds reading, tokenizing and, for GloVe,
counting the co-occurrences. Every set of vectors is scored by the same code, scratchlm's: analogy
accuracy on questions-words.txt among the 30,000 most frequent words, and Spearman's correlation on
WordSim-353 and SimLex-999. On 455k words a few hundred analogy questions are answerable and a seed
moves the scores by a point or more: the medians over three seeds say which methods are close, not a
ranking to the third decimal.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from common import Section, log, run_child, scratchlm_command, spread
from embeddings import ANALOGIES, CORPUS, SHARED, SIMILARITY, load_run_vectors, score_vectors

NAME = "embedding-methods"
TITLE = "skip-gram (negative sampling, hierarchical softmax), CBOW and GloVe on WikiText-2, beside gensim"
ABOUT = ("Each method on WikiText-2 valid + test (min-count 5, 100 dimensions), three seeds: word2vec's defaults with "
         "only the objective changed (--set loss=hs, --set cbow=true), GloVe's defaults (window 10, 25 epochs of "
         "AdaGrad), and gensim's Word2Vec with the same settings where it has the method (sg/hs/negative, 2 workers). "
         "Scored by one evaluator: analogy accuracy (questions-words, top 30,000 words), Spearman on WordSim-353 and "
         "SimLex-999; seconds of training and of the whole child.")
# (the method, scratchlm's model and settings, gensim's arguments or None)
METHODS = [
    ("skip-gram, negative sampling", "word2vec", {}, {"sg": 1, "hs": 0, "negative": 5}),
    ("skip-gram, hierarchical softmax", "word2vec", {"loss": "hs"}, {"sg": 1, "hs": 1, "negative": 0}),
    ("CBOW, negative sampling", "word2vec", {"cbow": "true"}, {"sg": 0, "hs": 0, "negative": 5}),
    ("GloVe", "glove", {}, None),
]
W2V = {"dim": 100, "window": 5, "min_count": 5, "epochs": 5, "sample": 1e-3}


def run(quick: bool = False, epochs: dict[str, int] | None = None) -> Section:
    """`quick`: one seed. `epochs` ({model: epochs}) shortens the runs, for a first look at the plumbing."""
    if not all(p.exists() for p in [*CORPUS, ANALOGIES, *SIMILARITY]):
        return Section([], [f"skipped: WikiText-2 or the analogy files are not in {SHARED}"])
    try:
        import gensim  # noqa: F401

        have_gensim = True
    except ImportError:
        have_gensim = False
    seeds = [0] if quick else [0, 1, 2]
    found: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-methods-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "wikitext-2.txt"
        corpus.write_bytes(b"".join(p.read_bytes() for p in CORPUS))
        for seed in seeds:
            for index, (method, model, settings, gensim_args) in enumerate(METHODS):
                n = (epochs or {}).get(model)
                log(f"  {NAME}: {method}, scratchlm, seed {seed} ...")
                found.setdefault((method, "scratchlm"), []).append(
                    scratchlm_run(model, settings, corpus, seed, tmp / f"{model}-{index}-{seed}", n))
                if gensim_args is not None and have_gensim:
                    log(f"  {NAME}: {method}, gensim, seed {seed} ...")
                    found.setdefault((method, "gensim"), []).append(
                        gensim_run(gensim_args, corpus, seed, tmp / f"gensim-{index}-{seed}", n))
    rows = [{"method": method, "tool": tool, "train_s": spread([r["seconds"] for r in runs]),
             "wall_s": spread([r["wall_seconds"] for r in runs]),
             "analogy_accuracy": spread([r["analogy_accuracy"] for r in runs]),
             "wordsim353_spearman": spread([r["wordsim353_spearman"] for r in runs]),
             "simlex999_spearman": spread([r["simlex999_spearman"] for r in runs])}
            for (method, tool), runs in found.items()]
    notes = verdicts(found)
    if not have_gensim:
        notes.append("gensim is not installed (pip install -e '.[bench]'): scratchlm's rows only")
    details = [{"method": m, "tool": t, **r} for (m, t), runs in found.items() for r in runs]
    return Section(rows, notes, details)


def scratchlm_run(model: str, settings: dict, corpus: Path, seed: int, workdir: Path, epochs: int | None) -> dict:
    run = workdir / "run"
    args = ["train", "--model", model, "--data", str(corpus), "--seed", str(seed), "--out", str(run), "--quiet",
            "--min-count", str(W2V["min_count"])]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    if epochs:
        args += ["--epochs", str(epochs)]
    child = run_child(scratchlm_command(*args), workdir, env={"SCRATCHLM_CACHE": str(workdir / "cache")})
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"seconds": history[-1]["seconds"], "wall_seconds": child.wall_seconds, **score_vectors(*load_run_vectors(run))}


def gensim_run(arguments: dict, corpus: Path, seed: int, workdir: Path, epochs: int | None) -> dict:
    out = workdir / "out.json"
    command = [sys.executable, str(Path(__file__).resolve()), "gensim", json.dumps(arguments), str(corpus),
               str(epochs or W2V["epochs"]), str(seed), str(out)]
    child = run_child(command, workdir, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    return {**json.loads(out.read_text()), "wall_seconds": child.wall_seconds}


def verdicts(found: dict[tuple[str, str], list[dict]]) -> list[str]:
    import statistics

    def median(method: str, tool: str, key: str) -> float | None:
        runs = found.get((method, tool))
        return statistics.median(r[key] for r in runs) if runs else None

    lines = []
    for method, _, _, _ in METHODS:
        ours, theirs = median(method, "scratchlm", "wordsim353_spearman"), median(method, "gensim", "wordsim353_spearman")
        if theirs is not None:
            speed = median(method, "gensim", "seconds") / median(method, "scratchlm", "seconds")
            lines.append(f"{method}: WordSim-353 {ours:.3f} against gensim's {theirs:.3f}; training at {speed:.2f}x "
                         "gensim's speed (medians).")
    keys = ("analogy_accuracy", "wordsim353_spearman", "simlex999_spearman")
    word2vec = [m for m, model, _, _ in METHODS if model == "word2vec"]
    for key in keys:
        values = [median(m, "scratchlm", key) for m in word2vec]
        glove = median("GloVe", "scratchlm", key)
        inside = min(values) <= glove <= max(values)
        lines.append(f"GloVe's {key.replace('_', ' ')} {glove:.3f}, word2vec's from {min(values):.3f} to "
                     f"{max(values):.3f}: {'within' if inside else 'above' if glove > max(values) else 'below'} their spread.")
    return lines


def gensim_child(arguments: str, corpus: str, epochs: str, seed: str, out: str) -> None:
    """gensim's Word2Vec with W2V and `arguments` (sg, hs, negative) on `corpus`; the figures to `out`."""
    import logging

    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    logging.disable(logging.WARNING)
    sentences = LineSentence(corpus)
    model = Word2Vec(vector_size=W2V["dim"], window=W2V["window"], min_count=W2V["min_count"], sample=W2V["sample"],
                     workers=2, seed=int(seed), **json.loads(arguments))
    model.build_vocab(sentences)
    began = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=int(epochs))
    found = {"seconds": time.perf_counter() - began, **score_vectors(list(model.wv.index_to_key), model.wv.vectors)}
    Path(out).write_text(json.dumps(found))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if sys.argv[1] == "gensim":
        gensim_child(*sys.argv[2:])
