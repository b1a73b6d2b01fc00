"""The classification task's part of the command line: its data options, `classify`, and what `eval`
takes for it and shows. The shared verbs are in scratchlm/cli/__init__.py."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

VERBS = ("classify",)  # the task's own commands, as the end of a run names them


def add_data_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    from scratchlm.cli import add_shared_name

    g = p.add_argument_group("classification data (labelled text: a folder per label, a file per label, or a CSV/TSV)")
    g.add_argument("--label-from-filename", action="store_true", default=None,
                   help="--data is a folder of files, one per label (rt-polarity.pos, .neg), one example a line")
    g.add_argument("--text-column", help="a CSV/TSV's text column: its header name or number (default text)")
    g.add_argument("--label-column", help="a CSV/TSV's label column: its header name or number (default label)")
    g.add_argument("--from", dest="base_run", metavar="RUN",
                   help="start from a trained language model's run: its tokenizer and body (with --model ulmfit)")
    g.add_argument("--embeddings", metavar="RUN",
                   help="start the word vectors from a run that has them (word2vec; the vectors' width is n_embed)")
    add_shared_name(g, "--max-length", type=int, metavar="N", help="keep a text's first N tokens (default 400)")
    return g


def add_eval_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("classification runs")
    g.add_argument("--wrong", type=int, help="show this many of the most confidently wrong examples (default 5)")
    g.add_argument("--confusion-png", help="where to draw the confusion matrix (default RUN/confusion.png)")
    return g


def eval_text(result: dict, task=None) -> str:
    """`eval`'s result for the terminal: the scores, each label's, the confusion matrix, the misses."""
    from scratchlm.cli import table

    lines = [f"{result['data']}: {result['examples']:,} examples, accuracy {result['accuracy']:.4f}, "
             f"macro F1 {result['macro_f1']:.4f}, loss {result['loss']:.4f}", ""]
    lines.append(table(["label", "precision", "recall", "F1", "support"],
                       [[c, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]]
                        for c, m in result["per_label"].items()]))
    names = result["confusion"]["labels"]
    lines += ["", "confusion matrix (rows: the true label; columns: the predicted one)",
              table(["", *names], [[c, *row] for c, row in zip(names, result["confusion"]["matrix"], strict=True)]),
              f"(drawn in {result['confusion_png']})"]
    if result["most_confidently_wrong"]:
        lines += ["", "most confidently wrong (probability, predicted label, true label, text):"]
        lines += [f"  {w['probability']:.3f}  {w['predicted']} (is {w['label']})  {w['text']}"
                  for w in result["most_confidently_wrong"]]
    return "\n".join(lines)


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb("classify", cmd_classify, "label texts with a trained classifier: the label and its probability")
    p.add_argument("run", help="a run directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts (default: --file, else standard input)")
    p.add_argument("--file", help="a file of texts, one a line; one result a line comes out")
    p.add_argument("--all-labels", action="store_true", help="every label's probability, not only the best")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--encoding", help="--file's encoding (default: UTF-8, detected when that fails)")
    p.add_argument("--device", help="auto (default), cpu or cuda")


def cmd_classify(args: argparse.Namespace) -> int:
    from scratchlm.cli import input_texts
    from scratchlm.tasks.classification import ClassificationRun

    texts = input_texts(args.texts, args.file, args.encoding, "text")
    run = ClassificationRun.load(args.run, device=args.device or "auto")
    for result in run.classify(texts, all_labels=args.all_labels):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        elif result["label"] is None:  # an empty line in, an empty line out
            print()
        elif args.all_labels:
            shown = "  ".join(f"{label} {p:.3f}" for label, p in result["probabilities"].items())
            print(f"{result['label']}\t{shown}\t{result['text']}")
        else:
            print(f"{result['label']}\t{result['probability']:.3f}\t{result['text']}")
    return 0
