"""The word-embedding task's part of the command line: its data option, the verbs of word vectors
(similar, analogy, map, export, import-vectors, debias), and what `eval` takes for it and shows. The
verbs take any run with word vectors: word2vec's, an imported file's, a word-level language model's.
The shared verbs are in scratchlm/cli/__init__.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

VERBS = ("similar", "analogy", "map", "export", "debias")  # the task's own commands, as the end of a run names them


def add_data_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("word-embedding data (word2vec, GloVe: a text file or a folder of them)")
    g.add_argument("--min-count", type=int, help="leave out words seen fewer times (default 5)")
    g.add_argument("--phrases", type=int, metavar="N",
                   help="N passes of phrase detection before training: frequent pairs become one token, new_york")
    g.add_argument("--phrase-threshold", type=float, metavar="T", help="join a pair scoring above T (default 100)")
    return g


def add_eval_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("runs with word vectors")
    g.add_argument("--analogies", metavar="FILE", help="analogy questions (questions-words.txt): accuracy per section")
    g.add_argument("--similarity", metavar="FILE", action="append", default=[],
                   help="word pairs with human scores (wordsim353.tsv, simlex999.txt): Spearman, Pearson (repeatable)")
    g.add_argument("--restrict-vocab", type=int, help="analogies among the N most frequent words (default 30000)")
    g.add_argument("--analogy-method", dest="method", help="3cosadd (default) or 3cosmul")
    return g


def eval_text(result: dict, task=None) -> str:
    """`eval`'s result for the terminal: each analogy section, the overall accuracy, each similarity file."""
    from scratchlm.cli import table

    lines = []
    if "analogy_sections" in result:
        rows = [[s["section"], f"{s['accuracy']:.4f}", s["correct"], s["questions"], s["skipped"]]
                for s in result["analogy_sections"]]
        rows.append(["overall", f"{result['analogy_accuracy']:.4f}", result["analogy_correct"],
                     result["analogy_questions"], result["analogy_skipped"]])
        lines += [f"analogies among the {result['restrict_vocab']:,} most frequent words (skipped: a word outside them)",
                  table(["section", "accuracy", "correct", "asked", "skipped"], rows), ""]
    stems = [k.removesuffix("_spearman") for k in result if k.endswith("_spearman")]
    if stems:
        lines.append(table(["similarity", "spearman", "pearson", "pairs", "oov ratio"],
                           [[s, f"{result[s + '_spearman']:.4f}", f"{result[s + '_pearson']:.4f}", result[s + "_pairs"],
                             f"{result[s + '_oov_ratio']:.3f}"] for s in stems]))
    return "\n".join(lines).rstrip()


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb("similar", cmd_similar, "the nearest words to a word (cosine similarity of the word vectors)")
    p.add_argument("run", help="a run with word vectors: word2vec, imported vectors, a word-level language model")
    p.add_argument("word")
    p.add_argument("-n", type=int, default=10, help="how many (default 10)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = verb("analogy", cmd_analogy, "a is to b as c is to ?: `scratchlm analogy RUN man woman king`")
    p.add_argument("run", help="a run with word vectors")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("c")
    p.add_argument("-n", type=int, default=5, help="how many answers (default 5)")
    p.add_argument("--method", default="3cosadd", help="3cosadd (default: b - a + c) or 3cosmul (Levy and Goldberg 2014)")
    p.add_argument("--include-inputs", action="store_true", help="let a, b and c be answers too (hidden by default)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = verb("map", cmd_map, "a labelled 2-D picture of word vectors (PCA or t-SNE)")
    p.add_argument("run", help="a run with word vectors")
    p.add_argument("--words", help="comma-separated words to draw")
    p.add_argument("--top", type=int, help="draw the N most frequent words instead")
    p.add_argument("--method", default="pca", help="pca (default) or tsne")
    p.add_argument("--out", default="map.png", help="the picture (default map.png)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE's seed (default 0)")

    p = verb("export", cmd_export, "write the word vectors as word2vec text or binary, or TSV for a projector; "
             "or a gpt run as a Hugging Face GPT-2 or GPT-NeoX folder (--format hf)")
    p.add_argument("run", help="a run with word vectors, or a gpt run for --format hf")
    p.add_argument("--out", required=True, help="the file to write (tsv: also OUT-metadata.tsv, the words; hf: a folder)")
    p.add_argument("--format", default="text", help="text (default), binary, tsv, or hf")

    p = verb("import-vectors", cmd_import, "make a run of a word2vec-format file (text or binary), for every verb above")
    p.add_argument("file", help="vectors in the word2vec format: a `COUNT DIM` line, then a word and its numbers")
    p.add_argument("--out", required=True, help="the run directory to create")
    p.add_argument("--binary", action=argparse.BooleanOptionalAction, default=None,
                   help="the file is binary (or --no-binary: text); default: told from the file")
    p.add_argument("--unicode-errors", default="strict",
                   help="a word that is not UTF-8: strict (default: stop and say where), replace or ignore")
    p.add_argument("--limit", type=int, help="read only the first N words (the most frequent, in published files)")

    p = verb("debias", cmd_debias, "hard-debias word vectors (Bolukbasi et al. 2016) into a new run")
    p.add_argument("run", help="a run with word vectors")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--pairs", help="definitional pairs, two words a line (default: Bolukbasi et al.'s she/he, ...)")
    p.add_argument("--equalize", help="pairs to equalize, two words a line (default: woman/man, queen/king, ...)")
    p.add_argument("--words", help="comma-separated words whose projection on the bias direction to report")
    p.add_argument("--json", action="store_true", help="JSON instead of text")


def vector_run(path: str):
    """The run at `path`, if it has word vectors; else one line saying which runs do."""
    from scratchlm.errors import UserError
    from scratchlm.run import Run
    from scratchlm.vectors import WordVectorVerbs

    run = Run.load(path, device="cpu")
    if not isinstance(run, WordVectorVerbs):
        raise UserError(f"{path} is a {run.task.title} run, which has no word vectors (word2vec runs, imported "
                        "vectors and word-level language models have)")
    return run


def words_of(text: str | None) -> list[str] | None:
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def show_pairs(found: list[tuple[str, float]], as_json: bool, header: str) -> None:
    from scratchlm.cli import table

    if as_json:
        print(json.dumps([{"word": w, "score": s} for w, s in found], indent=2))
    else:
        print(table([header, "word"], [[f"{s:.4f}", w] for w, s in found]))


def cmd_similar(args: argparse.Namespace) -> int:
    show_pairs(vector_run(args.run).similar(args.word, args.n), args.json, "cosine")
    return 0


def cmd_analogy(args: argparse.Namespace) -> int:
    found = vector_run(args.run).analogy(args.a, args.b, args.c, args.n, args.method.lower(), args.include_inputs)
    if not args.json:
        print(f"{args.a} : {args.b} :: {args.c} : ?  ({args.method.lower()}"
              f"{', inputs included' if args.include_inputs else ''})")
    show_pairs(found, args.json, "score")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    result = vector_run(args.run).map(words_of(args.words), args.top, args.out, args.method.lower(), args.seed)
    hidden = len(result["words"]) - result["labelled"]
    print(f"{len(result['words'])} words drawn by {result['method']} in {result['out']}"
          + (f" ({hidden} unlabelled: their labels would cover others')" if hidden else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from scratchlm.run import Run

    format = args.format.lower()
    run = Run.load(args.run, device="cpu") if format == "hf" else vector_run(args.run)
    written = run.export(args.out, format)
    print("wrote " + " and ".join(written))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from scratchlm.tasks.embeddings import import_vectors

    run = import_vectors(args.file, args.out, args.binary, args.unicode_errors, args.limit)
    words = run.config["data"]
    left = f" ({words['left_out']:,} left out: repeated, empty, or holding whitespace)" if words["left_out"] else ""
    print(f"{words['words']:,} words of {run.model.config.dim} dimensions imported into {run.path}{left}")
    return 0


def cmd_debias(args: argparse.Namespace) -> int:
    from scratchlm.vectors import read_pairs

    result = vector_run(args.run).debias(args.out, read_pairs(args.pairs) if args.pairs else None,
                        read_pairs(args.equalize) if args.equalize else None, words=words_of(args.words))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from scratchlm.cli import table

    print(f"bias direction from {result['pairs_used']} pairs; {result['neutralized']:,} words neutralized; "
          f"written to {result['out']}")
    if result["pairs_unknown"]:
        print("pairs left out (a word unknown): " + ", ".join(f"{a}/{b}" for a, b in result["pairs_unknown"]))
    print("\nprojection on the bias direction (+: the first word of the first pair's side)")
    print(table(["word", "before", "after"], [[p["word"], f"{p['before']:+.4f}", f"{p['after']:+.4f}"]
                                               for p in result["projections"]]))
    if result["analogies"]:
        print()
        print(table(["analogy", "before", "after"], [[a["analogy"], ", ".join(a["before"]), ", ".join(a["after"])]
                                                     for a in result["analogies"]]))
    print("\nHard debiasing removes the bias from one direction only: neighbourhoods keep it (Gonen and Goldberg 2019).",
          file=sys.stderr)
    return 0
