"""word2vec against gensim's Word2Vec, side by side on WikiText-2 (valid + test, about 455k words).

Both train with the same settings: skip-gram, 100 dimensions, window 5, 5 negatives, min-count 5,
5 epochs, sample 1e-3, the rate 0.025 falling linearly (gensim to 1e-4, scratchlm to 0), gensim with
2 workers (the machine's cores). Each measurement is a fresh child: `scratchlm train --model word2vec`
for scratchlm, this file run as `python embeddings.py gensim ...` for gensim. Words/s is the corpus'
words (whitespace-split, every one, before min-count and subsampling) times the epochs over the
training seconds: scratchlm's from its metrics (evaluations left out), gensim's around `train()` (the
vocabulary built before, as scratchlm's token cache is). Both tools' vectors are scored by the same
code, scratchlm's (`scratchlm.vectors`): analogy accuracy on questions-words.txt among the 30,000
most frequent words, case-insensitive, inputs excluded (gensim's own evaluate_word_analogies gives
the same figure, kept in the details as a check), and Spearman's correlation on WordSim-353 and
SimLex-999. Five seeds each, the tools alternating, so a busy machine slows both alike.

Then words/s and peak RSS at 1x, 4x and 16x the corpus (the text repeated), one epoch, one seed:
scratchlm reads its ids from the memmap a block at a time and gensim streams LineSentence, so
neither should grow with the corpus.

On 455k words the quality figures are small and noisy (about 2,500 analogy questions are answerable and
some 40 answered right; a seed moves the accuracy by 0.2-0.3 points): read them as "no worse than gensim",
not as a ranking. So each score's verdict weighs the gap between the means against its standard error,
and a gap inside two standard errors is called noise. Three seeds could not tell 1.35% from gensim's 1.51%;
fifteen could (2.2 standard errors), which is why word2vec's default draws 64 shared negatives, not 32.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from common import Section, log, run_child, scratchlm_command, spread

NAME = "embeddings"
TITLE = "word2vec against gensim on WikiText-2: words/s, analogies, word similarity, memory"
ABOUT = ("`scratchlm train --model word2vec` (its defaults: skip-gram, 100 dimensions, window 5, 5 negatives "
         "(64 drawn per batch and shared, each weighted 5/64), min-count 5, 5 epochs, sample 1e-3) and gensim's "
         "Word2Vec with the same settings and 2 workers, "
         "on WikiText-2 valid + test, five seeds each, alternating. Words/s: the corpus' words x epochs over the "
         "training seconds. Both tools' vectors scored by scratchlm's evaluation (gensim's own analogy score agrees; "
         "see details): analogy accuracy (questions-words, top 30,000 words), Spearman on WordSim-353 and SimLex-999. "
         "The scale rows: one epoch on the corpus repeated 1, 4 and 16 times.")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPUS = [SHARED / "wikitext-2" / "valid.txt", SHARED / "wikitext-2" / "test.txt"]
ANALOGIES = SHARED / "analogies" / "questions-words.txt"
SIMILARITY = [SHARED / "analogies" / "wordsim353.tsv", SHARED / "analogies" / "simlex999.txt"]
SETTINGS = {"dim": 100, "window": 5, "negative": 5, "min_count": 5, "epochs": 5, "sample": 1e-3}
TARGET, AIM = 0.5, 1.0  # scratchlm's words/s over gensim's
COMMON_WORDS = ("king", "city", "film", "war", "music", "good")


def run(quick: bool = False) -> Section:
    if not all(p.exists() for p in [*CORPUS, ANALOGIES, *SIMILARITY]):
        return Section([], [f"skipped: WikiText-2 or the analogy files are not in {SHARED}"])
    try:
        import gensim  # noqa: F401
    except ImportError:
        return Section([], ["skipped: gensim is not installed (pip install -e '.[bench]')"])
    seeds = [0] if quick else [0, 1, 2, 3, 4]
    scales = [1, 4] if quick else [1, 4, 16]
    with tempfile.TemporaryDirectory(prefix="scratchlm-bench-embeddings-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "wikitext-2.txt"
        corpus.write_bytes(b"".join(p.read_bytes() for p in CORPUS))
        words = count_words(corpus)
        runs = {"scratchlm": [], "gensim": []}
        for seed in seeds:
            for tool in runs:
                log(f"  {NAME}: {tool}, seed {seed} ...")
                runs[tool].append(measure(tool, corpus, words, SETTINGS["epochs"], seed, tmp / f"{tool}-{seed}", True))
        scaled = []
        for times in scales:
            big = tmp / f"x{times}.txt"
            big.write_bytes(corpus.read_bytes() * times)
            for tool in runs:
                log(f"  {NAME}: {tool}, {times}x the corpus, 1 epoch ...")
                found = measure(tool, big, words * times, 1, 0, tmp / f"{tool}-x{times}", False)
                scaled.append({"tool": tool, "corpus": f"{times}x ({words * times:,} words)", **found})
            big.unlink()
    rows = [quality_row(tool, found) for tool, found in runs.items()]
    rows += [{"tool": r["tool"], "corpus": r["corpus"], "words_per_second": r["words_per_second"],
              "peak_rss_mb": round(r["peak_rss_mb"], 1)} for r in scaled]
    return Section(rows, notes(runs, scaled, words), [*[{"tool": t, **r} for t, rs in runs.items() for r in rs], *scaled])


def count_words(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(len(line.split()) for line in f)


def measure(tool: str, corpus: Path, words: int, epochs: int, seed: int, workdir: Path, score: bool) -> dict:
    """One training run in a child process: its words/s, peak RSS and (`score`) the scores of its vectors."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "out.json"
    if tool == "gensim":
        command = [sys.executable, str(Path(__file__).resolve()), "gensim", str(corpus), str(epochs), str(seed),
                   str(out), "score" if score else "no-score"]
        child = run_child(command, workdir, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        found = json.loads(out.read_text())
    else:
        run = workdir / "run"
        child = run_child(scratchlm_command("train", "--model", "word2vec", "--data", str(corpus), "--epochs", str(epochs),
                                            "--seed", str(seed), "--out", str(run), "--quiet"), workdir,
                          env={"SCRATCHLM_CACHE": str(workdir / "cache")})
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        found = {"seconds": history[-1]["seconds"], "train_loss": [h["train_loss"] for h in history]}
        if score:
            found.update(score_vectors(*load_run_vectors(run)))
    return {**found, "words_per_second": round(words * epochs / found["seconds"]), "peak_rss_mb": child.peak_rss_mb}


def load_run_vectors(run: Path):
    import scratchlm

    loaded = scratchlm.load(run, device="cpu")
    words, matrix = loaded.word_vectors()
    return words, matrix


def score_vectors(words: list[str], matrix) -> dict:
    """The scores of one set of vectors, by scratchlm's evaluation, and the nearest words of a few."""
    from scratchlm.vectors import WordVectors

    vectors = WordVectors(words, matrix)
    found = {"analogy_accuracy": vectors.eval_analogies(ANALOGIES)["accuracy"],
             "analogy_questions": vectors.eval_analogies(ANALOGIES)["questions"]}
    for path in SIMILARITY:
        found[f"{path.stem}_spearman"] = vectors.eval_similarity(path)["spearman"]
    found["nearest"] = {w: [n for n, _ in vectors.similar(w, 5)] for w in COMMON_WORDS if w in vectors.index}
    return found


def quality_row(tool: str, found: list[dict]) -> dict:
    name = "scratchlm word2vec" if tool == "scratchlm" else "gensim Word2Vec (2 workers)"
    return {"tool": name, "words_per_second": spread([f["words_per_second"] for f in found]),
            "train_s": spread([f["seconds"] for f in found]),
            "analogy_accuracy": spread([f["analogy_accuracy"] for f in found]),
            "wordsim353_spearman": spread([f["wordsim353_spearman"] for f in found]),
            "simlex999_spearman": spread([f["simlex999_spearman"] for f in found]),
            "peak_rss_mb": spread([round(f["peak_rss_mb"], 1) for f in found])}


def notes(runs: dict, scaled: list[dict], words: int) -> list[str]:
    import statistics

    def median(tool: str, key: str) -> float:
        return statistics.median(f[key] for f in runs[tool])

    ratio = median("scratchlm", "words_per_second") / median("gensim", "words_per_second")
    verdict = "met" if ratio >= TARGET else "missed"
    lines = [f"words/s: scratchlm {ratio:.2f}x gensim's (median over the seeds; target {TARGET}x, aim {AIM}x): {verdict}."]
    for key, what in (("analogy_accuracy", "analogy accuracy"), ("wordsim353_spearman", "WordSim-353 Spearman"),
                      ("simlex999_spearman", "SimLex-999 Spearman")):
        ours, theirs = [f[key] for f in runs["scratchlm"]], [f[key] for f in runs["gensim"]]
        lines.append(f"{what}: scratchlm {statistics.median(ours):.4f}, gensim {statistics.median(theirs):.4f} (medians); "
                     f"means {mean_and_error(ours)} and {mean_and_error(theirs)}: {quality_verdict(ours, theirs)}.")
    lines.append(f"{median('scratchlm', 'analogy_questions'):.0f} of the 19,544 analogy questions have all four words "
                 f"among the vocabulary of {words:,} words: on a corpus this small the scores are noisy.")
    for tool in runs:
        rss = [r["peak_rss_mb"] for r in scaled if r["tool"] == tool]
        lines.append(f"{tool} peak RSS from 1x to {len(rss) and scaled[-1]['corpus'].split('x')[0]}x the corpus: "
                     + " -> ".join(f"{r:.0f}" for r in rss) + f" MB ({rss[-1] / rss[0]:.2f}x).")
    nearest = runs["scratchlm"][0]["nearest"]
    lines.append("nearest words (scratchlm, seed 0): " + "; ".join(f"{w}: {', '.join(n)}" for w, n in nearest.items()))
    nearest = runs["gensim"][0]["nearest"]
    lines.append("nearest words (gensim, seed 0): " + "; ".join(f"{w}: {', '.join(n)}" for w, n in nearest.items()))
    return lines


def standard_error(values: list[float]) -> float:
    import statistics

    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")


def mean_and_error(values: list[float]) -> str:
    import statistics

    return f"{statistics.mean(values):.4f} +- {standard_error(values):.4f}"


def quality_verdict(ours: list[float], theirs: list[float]) -> str:
    """'at least gensim' when our mean is, else whether the gap is inside two standard errors of the difference
    of the means (the seeds' noise) or beyond them; one seed (--quick) cannot say. Two standard errors is the
    normal approximation: with five seeds a side, Student's t would ask about 2.3, so "inside the noise"
    means the seeds cannot tell the tools apart, not that they are equal."""
    import statistics

    gap = statistics.mean(theirs) - statistics.mean(ours)
    if gap <= 0:
        return "at least gensim"
    error = math.hypot(standard_error(ours), standard_error(theirs))
    if math.isnan(error):
        return "below gensim (one seed: noise cannot be told apart)"
    if error == 0:
        return "below gensim, on every seed alike"
    return f"below gensim by {gap / error:.1f} standard errors" + (", inside the noise" if gap < 2 * error else "")


def gensim_child(corpus: str, epochs: str, seed: str, out: str, score: str) -> None:
    """Train gensim's Word2Vec with SETTINGS on `corpus` (streamed by LineSentence) and write the figures."""
    import logging

    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    logging.disable(logging.WARNING)
    sentences = LineSentence(corpus)
    model = Word2Vec(vector_size=SETTINGS["dim"], window=SETTINGS["window"], negative=SETTINGS["negative"],
                     min_count=SETTINGS["min_count"], sample=SETTINGS["sample"], sg=1, workers=2, seed=int(seed))
    model.build_vocab(sentences)
    began = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=int(epochs))
    found = {"seconds": time.perf_counter() - began}
    if score == "score":
        found.update(score_vectors(list(model.wv.index_to_key), model.wv.vectors))
        found["gensim_own_analogy_accuracy"] = model.wv.evaluate_word_analogies(str(ANALOGIES), restrict_vocab=30_000)[0]
    Path(out).write_text(json.dumps(found))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if sys.argv[1] == "gensim":
        gensim_child(*sys.argv[2:])
