"""The translation task's part of the command line: its data options, `translate`, and what `eval`
takes for it. The shared verbs are in scratchlm/cli/__init__.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

VERBS = ("translate",)  # the task's own commands, as the end of a run names them


def add_data_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("translation data (sentence pairs: --data FILE.tsv, or --src and --tgt)")
    g.add_argument("--src", help="line-aligned pairs: the source sentences, one a line")
    g.add_argument("--tgt", help="line-aligned pairs: their translations, line by line")
    g.add_argument("--columns", help="the TSV's source and target columns (default 0,1)")
    g.add_argument("--reverse", action="store_true", default=None, help="translate from the target column to the source")
    g.add_argument("--joint", action=argparse.BooleanOptionalAction, default=None,
                   help="one vocabulary for both languages (default) or one each (--no-joint)")
    g.add_argument("--max-length", type=int, metavar="N",
                   help="leave out training pairs with a side longer than N tokens (default 100)")
    return g


def add_eval_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("translation runs")
    g.add_argument("--src", help="sentences to translate and score (default: the run's held-out split)")
    g.add_argument("--ref", dest="refs", action="append", default=[],
                   help="a reference file, line-aligned with --src (repeatable)")
    g.add_argument("--beam", type=int, help="beam size (default 1: greedy)")
    g.add_argument("--length-penalty", type=float, help="GNMT length normalisation alpha (default 1; 0 none)")
    return g


def eval_text(result: dict, task) -> str:
    """`eval`'s result: the scores in a row, then sacrebleu's signature."""
    from scratchlm.cli import metrics_row

    return metrics_row(result, task)


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb("translate", cmd_translate, "translate sentences with a trained translation model")
    p.add_argument("run", help="a run directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sentences (default: --file, else standard input)")
    p.add_argument("--file", help="a file of sentences, one a line; one translation a line comes out")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy)")
    p.add_argument("--n-best", type=int, default=1, help="print the N best translations of each, separated by |||")
    p.add_argument("--length-penalty", type=float, default=1.0, help="GNMT length normalisation alpha (default 1)")
    p.add_argument("--max-length-ratio", type=float, default=2.0,
                   help="stop after this many target tokens per source token, plus 10 (default 2)")
    p.add_argument("--attention-map", metavar="PNG", help="draw the attention of the first sentence as a heat map")
    p.add_argument("--attention-layer", type=int, metavar="N",
                   help="a Transformer's cross-attention of decoder layer N, from 1 (default: the last)")
    p.add_argument("--attention-head", type=int, metavar="H",
                   help="a Transformer's head H of that layer, from 1 (default: the mean of its heads)")
    p.add_argument("--encoding", help="--file's encoding (default: UTF-8, detected when that fails)")
    p.add_argument("--device", help="auto (default), cpu or cuda")


def cmd_translate(args: argparse.Namespace) -> int:
    from scratchlm.cli import input_texts
    from scratchlm.errors import UserError
    from scratchlm.tasks.translation import TranslationRun, attention_rows

    if (args.attention_layer is not None or args.attention_head is not None) and not args.attention_map:
        raise UserError("--attention-layer and --attention-head choose what --attention-map PNG draws; give it too")
    texts = input_texts(args.texts, args.file, args.encoding, "sentence")
    run = TranslationRun.load(args.run, device=args.device or "auto")
    picture = None
    if args.attention_map:  # before any output: a wrong layer or head is refused with nothing printed
        shown = next(text for text in texts if text.strip())
        first = run.translate([shown], beam=args.beam, length_penalty=args.length_penalty, attention=True)[0]
        if first["attention"] is None:
            raise UserError(f"{run.spec.name} has no attention to draw; train seq2seq-attn or transformer-mt")
        rows, layers = attention_rows(first["attention"], args.attention_layer, args.attention_head)
        picture = (first, rows, f"{run.spec.name}: " + (layers or "attention over the source"))
    results = run.translate(texts, beam=args.beam, n_best=args.n_best, length_penalty=args.length_penalty,
                            max_length_ratio=args.max_length_ratio)
    for result in results:
        print(" ||| ".join(result) if args.n_best > 1 else result)
    if picture:
        from scratchlm.plots import plot_attention

        first, rows, title = picture
        plot_attention(first["source_tokens"], first["target_tokens"], rows, args.attention_map, title)
        print(f"attention map: {args.attention_map}", file=sys.stderr)
    return 0


