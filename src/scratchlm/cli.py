"""The command line: one verb per job, each a thin layer over the Python API.

A user's mistake (`UserError`, or a bad argument) becomes one line on stderr and exit code 2; Ctrl-C
during training saves and exits with 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence

from scratchlm.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (the default prints the whole usage first)."""

    def error(self, message: str) -> None:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def duration(text: str) -> float:
    """'90', '90s', '5m', '1h30m' -> seconds."""
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not text.strip() or not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="human-numbers (built in), a text file, or a folder of text files")
    g.add_argument("--encoding", help="the files' encoding (default: UTF-8, detected when that fails)")
    g.add_argument("--tokenizer", help="char, word or bpe (default: word for human-numbers, char otherwise)")
    g.add_argument("--vocab-size", type=int, help="keep this many tokens (bpe: merges up to this size)")
    g.add_argument("--min-freq", type=int, help="drop tokens seen fewer times (char, word)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a registry name (see `scratchlm models`); default rnn")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model setting, e.g. --set n_hidden=128 (repeatable)")


def add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="passes over the training data (default: the model's)")
    g.add_argument("--time", type=duration, help="training time budget: 90s, 5m, 1h")
    g.add_argument("--lr", type=float, help="peak learning rate (default: the model's)")
    g.add_argument("--schedule", help="onecycle (default), cosine or constant")
    g.add_argument("--warmup", type=float, help="share of the run rising to the peak rate (default 0.25)")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay on matrices (default 0.01)")
    g.add_argument("--optimizer", help="adamw (default) or muon: Muon for the hidden matrices, AdamW for the rest")
    g.add_argument("--batch-size", type=int, help="rows per batch (default 64)")
    g.add_argument("--bptt", type=int, help="tokens per row per batch (default: the model's)")
    g.add_argument("--random-bptt", action="store_true", default=None,
                   help="vary the window around --bptt each batch (AWD-LSTM; stateful models)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this")
    g.add_argument("--seed", type=int, help="random seed (default 0)")
    g.add_argument("--device", help="auto (default), cpu or cuda")
    g.add_argument("--precision", help="auto (default), fp32 or bf16")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (faster steps on a GPU after a slow first one)")
    g.add_argument("--on-nan", help="on a NaN/inf loss: stop (default; the last good checkpoint is kept) or skip the batch")
    g.add_argument("--cache-dir", help="where token ids are cached (default ~/.cache/scratchlm)")


def train_options(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "time": args.time, "lr": args.lr, "schedule": args.schedule,
            "warmup": args.warmup, "weight_decay": args.weight_decay, "optimizer": args.optimizer,
            "batch_size": args.batch_size,
            "bptt": args.bptt, "random_bptt": args.random_bptt, "grad_clip": args.grad_clip, "seed": args.seed,
            "device": args.device, "precision": args.precision, "on_nan": args.on_nan,
            "compile": args.compile}


def model_settings(args: argparse.Namespace) -> dict | None:
    if not args.set:
        return None
    from scratchlm.models.registry import get_spec, parse_settings

    return parse_settings(get_spec(args.model or "rnn"), args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from scratchlm.api import train

    run = train(args.data, args.model, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                min_freq=args.min_freq, encoding=args.encoding, valid_data=args.valid_data,
                valid_fraction=args.valid_fraction, settings=model_settings(args), resume=args.resume,
                progress=not args.quiet, cache_dir=args.cache_dir, patience=args.patience,
                eval_every=args.eval_every, **train_options(args))
    if run is None:  # a process other than rank 0 of a torchrun launch: rank 0 reports
        return 0
    print(metrics_table(run.metrics))
    last, best = run.metrics[-1], min(run.metrics, key=lambda row: row["valid_loss"])
    print(f"\n{run.spec.name}: final accuracy {last['valid_accuracy']:.4f}, perplexity {last['valid_perplexity']:.3f}; "
          f"model.safetensors holds the best validation loss, {best['valid_loss']:.4f} at step {best['step']} "
          f"(accuracy {best['valid_accuracy']:.4f}); run saved in {run.path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import warnings

    from scratchlm.run import Run

    run = Run.load(args.run, device=args.device or "auto", task="lm")
    # The stream checks its arguments when made: a bad one fails before the prompt is echoed.
    pieces = run.stream(args.prompt or "", args.tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, seed=args.seed, repetition_penalty=args.repetition_penalty,
                        stop=args.stop)
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
    from scratchlm.run import Run

    results = Run.load(args.run, device=args.device or "auto", task="lm").score(args.texts)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(["logprob", "perplexity", "tokens", "text"],
                    [[f"{r['logprob']:.3f}", f"{r['perplexity']:.3f}", r["tokens"], r["text"]] for r in results]))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from scratchlm.run import Run

    result = Run.load(args.run, device=args.device or "auto", task="lm").eval(args.data, args.encoding)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(["data", "loss", "accuracy", "perplexity", "tokens"],
                    [[result["data"], f"{result['loss']:.4f}", f"{result['accuracy']:.4f}",
                      f"{result['perplexity']:.3f}", result["tokens"]]]))
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from scratchlm.api import lr_find

    result = lr_find(args.data, args.model, plot=args.plot, steps=args.steps, tokenizer=args.tokenizer,
                     vocab_size=args.vocab_size, encoding=args.encoding, settings=model_settings(args),
                     cache_dir=args.cache_dir, **train_options(args))
    print(f"{result['model']}: loss lowest at lr {result['min_loss_lr']:.2e}; suggested lr {result['suggestion']:.2e}"
          f" (plot: {result['plot']})")
    return 0


def cmd_ladder(args: argparse.Namespace) -> int:
    from scratchlm.ladder import COLUMNS, ladder, table_cells

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    rows = ladder(args.data, models, args.out, progress=not args.quiet, tokenizer=args.tokenizer,
                  vocab_size=args.vocab_size, min_freq=args.min_freq, encoding=args.encoding,
                  cache_dir=args.cache_dir, **train_options(args))
    print(table(COLUMNS, [table_cells(row) for row in rows]))
    print(f"\ntable: {args.out}/ladder.md and ladder.json; plot: {args.out}/ladder.png")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from scratchlm.models.registry import REGISTRY, get_spec, settings_of

    if args.name:
        spec = get_spec(args.name)
        print(f"{spec.name}: {spec.idea}\n")
        print(table(["setting (--set KEY=VALUE)", "default", "meaning"],
                    [[name, repr(value) if isinstance(value, str) else value, meaning]
                     for name, value, meaning in settings_of(spec)]))
        print("\ntraining defaults: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in spec.train.items()))
        return 0
    rows = []
    for spec in REGISTRY.values():
        vocab = 30  # human numbers' vocabulary: the size every count below is for
        n = sum(p.numel() for p in spec.build(spec.make_config(vocab)).parameters())
        rows.append([spec.name, spec.task, f"{n:,}", spec.idea])
    print(table(["name", "task", "parameters (vocab 30)", "idea"], rows))
    return 0


def metrics_table(history: list[dict]) -> str:
    return table(["epoch", "step", "train_loss", "valid_loss", "accuracy", "perplexity", "time"],
                 [[f"{r['epoch']:g}", r["step"], f"{r['train_loss']:.4f}", f"{r['valid_loss']:.4f}",
                   f"{r['valid_accuracy']:.4f}", f"{r['valid_perplexity']:.3f}", f"{r['seconds']:.1f}s"]
                  for r in history])


def table(header: list[str], rows: list[list]) -> str:
    """A plain text table, columns padded to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def build_parser() -> Parser:
    parser = Parser(prog="scratchlm", description="Language models from scratch: train, generate, score, evaluate.")
    from scratchlm import __version__

    parser.add_argument("--version", action="version", version=f"scratchlm {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)

    def verb(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = verb("train", cmd_train, "train a model into a run directory (or continue one with --resume)")
    add_data_options(p)
    add_model_options(p)
    add_train_options(p)
    p.add_argument("--out", help="the run directory (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--valid-data", help="a separate validation file (default: the end of --data)")
    p.add_argument("--valid-fraction", type=float, help="share held out from the end (0.2 human-numbers, else 0.1)")
    p.add_argument("--patience", type=int, help="stop after this many evaluations without improvement")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (default: each epoch)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = verb("generate", cmd_generate, "continue a prompt with a trained language model")
    p.add_argument("run", help="a run directory")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--tokens", type=int, default=100, help="new tokens to generate (default 100)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; 0.8 is a good start")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample from the smallest set reaching probability p")
    p.add_argument("--seed", type=int, help="make sampling repeatable")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="P",
                   help="lower the tokens already in the text (CTRL); 1 (default) is none, 1.2 a usual start")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when the text contains TEXT, not printed (repeatable)")
    p.add_argument("--device", help="auto (default), cpu or cuda")

    p = verb("score", cmd_score, "log-probability and perplexity of each sentence")
    p.add_argument("run", help="a run directory")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="sentences to score")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--device", help="auto (default), cpu or cuda")

    p = verb("eval", cmd_eval, "the run's metrics on its validation split or on another file")
    p.add_argument("run", help="a run directory")
    p.add_argument("--data", help="a text file or folder to evaluate on (default: the run's validation split)")
    p.add_argument("--encoding", help="that file's encoding (default: UTF-8, detected when that fails)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--device", help="auto (default), cpu or cuda")

    p = verb("lr-find", cmd_lr_find, "loss against learning rate: a plot and a suggested rate")
    add_data_options(p)
    add_model_options(p)
    add_train_options(p)
    p.add_argument("--plot", default="lr_find.png", help="where to write the plot (default lr_find.png)")
    p.add_argument("--steps", type=int, default=100, help="steps of the sweep (default 100)")

    p = verb("ladder", cmd_ladder, "train every language-model rung on the same data: a table and a plot")
    add_data_options(p)
    add_train_options(p)
    p.add_argument("--models", help="comma-separated rungs (default: every language model in the registry)")
    p.add_argument("--out", default="runs/ladder", help="where the rungs' runs, table and plot go (default runs/ladder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = verb("models", cmd_models, "the model registry: names, tasks, parameter counts; one model's settings")
    p.add_argument("name", nargs="?", help="a model: list its settings and training defaults")
    return parser


def show_warning(message, *_) -> None:
    """A warning (a damaged checkpoint replaced by the previous one) as one line, as errors are."""
    print(f"scratchlm: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        return run_verb(argv)


def run_verb(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "handler", None):
            raise UserError("give a verb: train, generate, score, eval, ladder, lr-find or models (see `scratchlm --help`)")
        return args.handler(args)
    except UserError as e:
        print(f"scratchlm: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as e:
        print(f"scratchlm: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("scratchlm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `scratchlm generate ... | head`
        return 0
