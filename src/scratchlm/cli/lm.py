"""The language model's part of the command line: its data options, `generate` and `score`, and what
`eval` takes for it. The shared verbs are in scratchlm/cli/__init__.py."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable

VERBS = ("generate", "score")  # the task's own commands, as the end of a run names them


def add_data_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("language-model data")
    g.add_argument("--valid-data", help="a separate validation file (default: the end of --data)")
    return g


def add_eval_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """`eval --data FILE` (shared) is all a language model takes."""
    return p.add_argument_group("language-model runs")


def eval_text(result: dict, task) -> str:
    """`eval`'s result as one row of numbers."""
    from scratchlm.cli import metrics_row

    return metrics_row(result, task)


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb("generate", cmd_generate, "continue a prompt with a trained language model")
    p.add_argument("run", help="a run directory")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--tokens", type=int, default=100, help="new tokens to generate at most (default 100)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; 0.8 is a good start")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample from the smallest set reaching probability p")
    p.add_argument("--seed", type=int, help="make sampling repeatable")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="P",
                   help="lower the tokens already in the text (CTRL); 1 (default) is none, 1.2 a usual start")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when the text contains TEXT, not printed (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="go on past an <eos> token (default: stop there)")
    p.add_argument("--device", help="auto (default), cpu or cuda")

    p = verb("score", cmd_score, "log-probability and perplexity of each sentence")
    p.add_argument("run", help="a run directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to score (default: --file, else standard input)")
    p.add_argument("--file", help="a file of sentences, one a line; one result a line comes out")
    p.add_argument("--encoding", help="--file's encoding (default: UTF-8, detected when that fails)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--device", help="auto (default), cpu or cuda")


def cmd_generate(args: argparse.Namespace) -> int:
    from scratchlm.tasks.lm import LMRun

    run = LMRun.load(args.run, device=args.device or "auto")
    # The stream checks its arguments when made: a bad one fails before the prompt is echoed.
    pieces = run.stream(args.prompt or "", args.tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, seed=args.seed, repetition_penalty=args.repetition_penalty,
                        stop=args.stop, ignore_eos=args.ignore_eos)
    with warnings.catch_warnings():  # a warning (a prompt cropped to the context) as one line, as errors are
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_: print(f"scratchlm: warning: {message}", file=sys.stderr)
        if args.prompt:
            sys.stdout.write(args.prompt)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from scratchlm.cli import input_texts, table
    from scratchlm.tasks.lm import LMRun

    texts = input_texts(args.texts, args.file, args.encoding, "sentence")
    results = LMRun.load(args.run, device=args.device or "auto").score(texts)
    if args.json:
        print(json.dumps(results, indent=2))
    else:  # a text's line breaks as \n: one row a text
        print(table(["logprob", "perplexity", "tokens", "text"],
                    [["-", "-", 0, ""] if r["perplexity"] is None else
                     [f"{r['logprob']:.3f}", f"{r['perplexity']:.3f}", r["tokens"], r["text"].replace("\n", "\\n")]
                     for r in results]))
    return 0
