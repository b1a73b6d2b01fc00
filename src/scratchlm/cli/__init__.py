"""The command line: one verb per job, each a thin layer over the Python API.

The verbs every task shares (train, eval, lr-find, ladder, models) live here; each task adds its data
options, its evaluation options and its own verbs from `scratchlm/cli/<task>.py` (the language model's
generate and score: scratchlm/cli/lm.py), found by the task's name. Nothing here branches on a task.

A user's mistake (`UserError`, or a bad argument) becomes one line on stderr and exit code 2; Ctrl-C
during training saves and exits with 130. Anything else is a bug and keeps its traceback. PyTorch is
imported only by the verbs that need it, so `--help` and a mistyped command answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

from scratchlm.errors import Interrupted, LostProcess, UserError, closest
from scratchlm.files import DISK_ERRORS, cannot_write
from scratchlm.tasks import TASK_NAMES

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
RECIPE = "the model's recipe: see `scratchlm models NAME`"


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (the default prints the whole usage first)."""

    def error(self, message: str) -> None:
        raise UserError(f"{message} (see `{self.prog} --help`)")

    def options(self) -> list[str]:
        return [option for action in self._actions for option in action.option_strings if option.startswith("--")]

    def unrecognized(self, extras: list[str]) -> None:
        """One line for arguments the verb does not take, with the options it does take that they resemble."""
        near = [f"{word}: did you mean {found[0]}?" for word in extras if word.startswith("-")
                and (found := closest(word.split("=", 1)[0], self.options()))]
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(near)})" if near else ""))


def attach_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--time -1m` as `--time=-1m`: argparse takes a value starting with '-' for an option unless it is a plain
    negative number, and says 'expected one argument'; joined, the value reaches the check that names it."""
    takes_value = {option for p in (parser, *subparsers(parser).values()) for action in p._actions
                   for option in action.option_strings if action.nargs is None}  # flags have nargs 0
    out: list[str] = []
    for word in argv:
        if out and out[-1] in takes_value and re.match(r"-\.?\d", word):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def subparsers(parser: argparse.ArgumentParser) -> dict[str, Parser]:
    """The verbs' parsers, by name."""
    return next((action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)), {})


@cache
def task_commands(name: str):
    """The CLI module of a task: its data and evaluation options and its own verbs."""
    return import_module(f"scratchlm.cli.{name}")


def duration(text: str) -> float:
    """'90', '90s', '5m', '1h30m' -> seconds; '-1m' -> -60 (which the training config then refuses by name)."""
    sign, body = (-1, text.strip()[1:]) if text.strip().startswith("-") else (1, text.strip())
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", body)
    if not body or not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return sign * (hours * 3600 + minutes * 60 + seconds)


def add_data_options(p: argparse.ArgumentParser, task: str | None) -> None:
    """The data options every task reads, then the task's own (every task's, in turn, when `task` is None: the
    first pass over the arguments, and --help). The dests of the options are recorded in `data_dests`."""
    g = p.add_argument_group("data")
    g.add_argument("--data", help="human-numbers (built in), a text file, or a folder of text files")
    g.add_argument("--encoding", help="the files' encoding (default: UTF-8, detected when that fails)")
    g.add_argument("--tokenizer", help="char, word or bpe (default: word for human-numbers, char otherwise)")
    g.add_argument("--vocab-size", type=int, help="keep this many tokens (bpe: merges up to this size)")
    g.add_argument("--min-freq", type=int, help="drop tokens seen fewer times (char, word)")
    g.add_argument("--valid-fraction", type=float,
                   help="share held out for validation (language models: from the end, 0.2 human-numbers, else 0.1; "
                        "translation: whole source sentences, 0.05)")
    g.add_argument("--repair", action=argparse.BooleanOptionalAction, default=None,
                   help="repair Windows-1252 characters decoded as latin-1 (C1 controls, mojibake) as the text is read "
                        "(default) or keep them (--no-repair)")
    g.add_argument("--strict", action="store_true", default=None,
                   help="refuse sentence pairs or labelled examples with an unusable line (a control character, an "
                        "empty side, a missing column) instead of leaving the line out with a warning")
    groups = [g] + [task_group(p, name, "data") for name in ([task] if task else TASK_NAMES)]
    p.set_defaults(data_dests=dests(groups))


def task_group(p: argparse.ArgumentParser, name: str, kind: str) -> argparse._ArgumentGroup:
    """Task `name`'s group of `kind` (data or eval) options."""
    return getattr(task_commands(name), f"add_{kind}_options")(p)


def add_shared_name(g: argparse._ArgumentGroup, flag: str, **options: Any) -> None:
    """An option that another task's group names alike (--max-length). A parser of one task's options has it once;
    the parser of every task's (the first pass, --help) keeps the first, and this group says what it means here."""
    try:
        g.add_argument(flag, **options)
    except argparse.ArgumentError:
        g.description = f"{g.description + '. ' if g.description else ''}{flag}: {options['help']}"


def dests(groups: list[argparse._ArgumentGroup]) -> tuple[str, ...]:
    return tuple(action.dest for g in groups for action in g._group_actions)


def given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The options of `names` the user gave (an empty repeatable option counts as not given)."""
    return {name: value for name in names if (value := getattr(args, name, None)) is not None and value != []}


def data_options(args: argparse.Namespace) -> dict:
    """The data options the user gave: the shared ones and the model's task's."""
    return given(args, args.data_dests)


def input_texts(texts: list[str], file: str | None, encoding: str | None, what: str) -> list[str]:
    """What a verb reads: its arguments, else the lines of --file, else of standard input. Blank lines are kept
    (each gets an empty result, with a warning), so the output has a line for each line of the input."""
    from scratchlm.data.read import read_lines

    if texts and file:
        raise UserError(f"give {what}s or --file, not both")
    nothing = f"nothing to read: give {what}s, --file FILE, or lines on standard input"
    if not texts and not file and sys.stdin.isatty():  # nothing piped in: say so rather than wait for typing
        raise UserError(nothing)
    lines = texts or (read_lines(file, encoding)[0] if file else sys.stdin.read().splitlines())
    if not any(line.strip() for line in lines):
        raise UserError(nothing)
    return lines


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a registry name (see `scratchlm models`); default rnn")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model setting, e.g. --set n_hidden=128 (repeatable)")


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The training options: TrainConfig's fields (scratchlm/config.py), each with the comment beside it as its
    help and its default named. Where a model's recipe sets one, its default is the model's, which
    `scratchlm models NAME` lists and the run's first line shows."""
    from scratchlm.config import TrainConfig, option_fields

    g = p.add_argument_group("training", f"Unset options take {RECIPE}, else the default named below.")
    for f, hint, meaning in option_fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        shown = "" if f.default in (None, False) else f" (default {f.default})"
        if hint is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meaning + shown)
        else:
            parse = duration if f.metadata.get("parse") == "duration" else value_type(hint)
            g.add_argument(flag, type=parse, help=meaning + shown)
    g.add_argument("--cache-dir", help="where token ids are cached (default ~/.cache/scratchlm)")


def value_type(hint: Any) -> Callable[[str], Any]:
    """int for `int | None`, float for `float`, str for a Literal or a str."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    return kinds[0] if kinds[0] in (int, float) else str


def train_options(args: argparse.Namespace) -> dict:
    from scratchlm.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}


def model_settings(args: argparse.Namespace) -> dict | None:
    if not args.set:
        return None
    from scratchlm.models.registry import DEFAULT_MODEL, get_spec, parse_settings

    return parse_settings(get_spec(args.model or DEFAULT_MODEL), args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from scratchlm.api import train
    from scratchlm.trainer import metrics_table

    run = train(model=args.model, out=args.out, settings=model_settings(args), resume=args.resume,
                progress=not args.quiet, cache_dir=args.cache_dir, **data_options(args), **train_options(args))
    if run is None:  # a process other than rank 0 of a torchrun launch: rank 0 reports
        return 0
    if args.quiet:  # without the progress display, the evaluations were not shown as they came
        print(metrics_table(run.task, run.metrics))
        print()
    print(summary(run))
    return 0


def summary(run) -> str:
    """What the run reached, and which weights the verbs will use, in words a newcomer follows."""
    task, history = run.task, run.metrics
    from scratchlm.trainer import row_metrics

    def metrics(row: dict) -> dict:
        return row_metrics(task, row)

    by = run.train_config.best_by
    last, best = history[-1], min(history, key=lambda row: task.best.score(metrics(row), by))
    shown, best_shown = task.format_metrics(metrics(last)), task.format_metrics(metrics(best))
    final = ", ".join(f"{m} {shown[m]}" for m in task.metrics if m != "loss" and m in shown)
    headline = task.headline
    return (f"{run.spec.name}: final {final}, validation loss {shown['loss']}.\n"
            f"The verbs ({', '.join(task_commands(task.name).VERBS)}, eval) use model.safetensors, the weights with "
            f"{task.best.words(by)}: "
            f"step {best['step']}, loss {best_shown['loss']}, {headline} {best_shown[headline]}. "
            f"{task.best.why if by is None and best['step'] != last['step'] else ''}".rstrip() + "\n"
            f"Run saved in {run.path}")


def cmd_eval(args: argparse.Namespace) -> int:
    from scratchlm.run import Run

    if args.folds is not None:
        return cross_validation(args)
    run = Run.load(args.run, device=args.device or "auto")
    result = run.eval(**given(args, ("data", "encoding", *args.eval_dests)))
    print(json.dumps(result, indent=2) if args.json else task_commands(run.task.name).eval_text(result, run.task))
    return 0


def metrics_row(result: dict, task) -> str:
    """An evaluation's numbers as one row of a table, then its long texts (sacrebleu's signature) a line each."""
    shown = task.format_metrics(result)
    keys = [k for k in result if k == "data" or not isinstance(result[k], str)]
    lines = [table(keys, [[shown.get(k, result[k]) for k in keys]])]
    lines += [f"{key}: {result[key]}" for key in result if key not in keys and key != "run"]
    return "\n".join(lines)


def cross_validation(args: argparse.Namespace) -> int:
    from scratchlm.folds import cross_validate, folds_text

    if args.data is not None:
        raise UserError("--folds trains a run per fold on the run's own data; drop --data")
    results = cross_validate(args.run, args.folds, progress=not args.json)
    print(json.dumps({k: v for k, v in results.items() if k != "assignment"}, indent=2) if args.json
          else folds_text(results))
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from scratchlm.api import lr_find

    result = lr_find(model=args.model, plot=args.plot, steps=args.steps, settings=model_settings(args),
                     cache_dir=args.cache_dir, **data_options(args), **train_options(args))
    print(f"{result['model']}: loss lowest at lr {result['min_loss_lr']:.2e}; suggested lr {result['suggestion']:.2e}"
          f" (plot: {result['plot']})")
    return 0


def cmd_ladder(args: argparse.Namespace) -> int:
    from scratchlm.race import columns, ladder, rungs, table_cells

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else None
    _, task = rungs(models, args.task)
    options = {**data_options(args), **train_options(args)}
    rows = ladder(models=models, out=args.out, progress=not args.quiet, cache_dir=args.cache_dir, task=args.task,
                  **options)
    print(table(columns(task), [table_cells(task, row) for row in rows]))
    print(f"\ntable: {args.out}/ladder.md and ladder.json; plot: {args.out}/ladder.png")
    return 0



def as_option(name: str, value: Any) -> str:
    """A training default as the option that sets it: --lr 0.006, --shuffle, --no-shuffle."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"

def cmd_models(args: argparse.Namespace) -> int:
    from scratchlm.api import recipe
    from scratchlm.models.registry import REGISTRY, get_spec, settings_of
    from scratchlm.tasks import get_task

    if args.name:
        spec = get_spec(args.name)
        print(f"{spec.name}: {spec.idea} [a {get_task(spec.task).title} model]\n")
        print(table(["setting (--set KEY=VALUE)", "default", "meaning"],
                    [[name, repr(value) if isinstance(value, str) else value, meaning]
                     for name, value, meaning in settings_of(spec)]))
        print("\ntraining defaults: " + ", ".join(as_option(k, v) for k, v in spec.train.items()))
        whole = recipe(spec, {})
        names = [f.name for f in dataclasses.fields(whole)]
        rest = [as_option(name, getattr(whole, name)) for name in names
                if name not in spec.train and name not in ("device", "precision", "compile", "seed")
                and getattr(whole, name) not in (None, False)]
        if spec.model_cls.learns_by == "counting":
            print("it learns by counting its training data once: no optimizer, learning rate or schedule applies")
        else:
            print("training defaults it takes from the global ones: " + ", ".join(rest))
        for corpus, (config, train) in spec.built_in.items():
            changes = [f"--set {k}={v}" for k, v in config.items()] + [as_option(k, v) for k, v in train.items()]
            print(f"training on {corpus}: " + ", ".join(changes))
        return 0
    rows, notes = [], {}
    for spec in REGISTRY.values():
        task = get_task(spec.task)
        data, dims = task.example_dims()
        notes[task.name] = f"{task.title} models for {data}"
        rows.append([spec.name, spec.task, f"{spec.parameters(spec.make_config(dims, {})):,}", spec.idea])
    print(table(["name", "task", "parameters", "idea"], rows))
    print("\nparameters: " + "; ".join(notes.values()))
    return 0


def table(header: list[str], rows: list[list]) -> str:
    """A plain text table, columns padded to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def build_parser(task: str | None = None) -> Parser:
    """The command line. `task` gives train, lr-find, ladder and eval that task's options alone; None gives every
    task's (the first pass over the arguments, which finds the task, and --help)."""
    parser = Parser(prog="scratchlm", description="Language models from scratch: train, generate, score, evaluate.")
    from scratchlm import __version__

    parser.add_argument("--version", action="version", version=f"scratchlm {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)

    def verb(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = verb("train", cmd_train, "train a model into a run directory (or continue one with --resume)")
    add_data_options(p, task)
    add_model_options(p)
    add_train_options(p)
    p.add_argument("--out", help="the run directory (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar; the evaluations are printed at the end")

    for name in TASK_NAMES:
        task_commands(name).add_verbs(verb)

    p = verb("eval", cmd_eval, "the run's metrics on its validation split or on other data")
    p.add_argument("run", help="a run directory")
    p.add_argument("--data", help="data to evaluate on (default: the run's validation split)")
    p.add_argument("--encoding", help="that data's encoding (default: UTF-8, detected when that fails)")
    p.set_defaults(eval_dests=dests([task_group(p, name, "eval") for name in ([task] if task else TASK_NAMES)]))
    p.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation: train K runs of the run's model, settings and data, each with one fold "
                        "held out and scored on it; mean and standard deviation (for tasks whose data has folds)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--device", help="auto (default), cpu or cuda")

    p = verb("lr-find", cmd_lr_find, "loss against learning rate: a plot and a suggested rate")
    add_data_options(p, task)
    add_model_options(p)
    add_train_options(p)
    p.add_argument("--plot", default="lr_find.png", help="where to write the plot (default lr_find.png)")
    p.add_argument("--steps", type=int, default=100, help="steps of the sweep (default 100)")

    p = verb("ladder", cmd_ladder, "train every model of a task on the same data: a table and a plot")
    add_data_options(p, task)
    add_train_options(p)
    p.add_argument("--task", choices=TASK_NAMES,
                   help="race every model of this task (default: the task of --models, else language modelling)")
    p.add_argument("--models", help="comma-separated rungs (default: every model of --task in the registry)")
    p.add_argument("--out", default="runs/ladder", help="where the rungs' runs, table and plot go (default runs/ladder)")
    p.add_argument("--resume", action="store_true",
                   help="continue the rungs already in --out (the ladder always does: a stopped one goes on where it "
                        "stopped, a finished one is kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = verb("models", cmd_models, "the model registry: names, tasks, parameter counts; one model's settings")
    p.add_argument("name", nargs="?", help="a model: list its settings and training defaults")
    return parser


def task_of(args: argparse.Namespace) -> str | None:
    """The task whose options a verb takes: the model's (train, lr-find), the race's (ladder), the run's (eval);
    None for the other verbs, and for a run whose config.json cannot be read (loading it will say why)."""
    if args.verb in ("train", "lr-find"):
        from scratchlm.models.registry import DEFAULT_MODEL, get_spec

        if getattr(args, "resume", False) and args.model is None:
            return run_task(args.out) or get_spec(DEFAULT_MODEL).task
        return get_spec(args.model or DEFAULT_MODEL).task
    if args.verb == "ladder":
        from scratchlm.race import rungs

        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        return rungs(models, args.task)[1].name
    if args.verb == "eval":
        return run_task(args.run)
    return None


def run_task(path: str | None) -> str | None:
    """The task a run folder's config.json names, if it can be read."""
    try:
        task = json.loads((Path(path) / "config.json").read_text()).get("task")
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return task if task in TASK_NAMES else None


def refuse_another_tasks_options(args: argparse.Namespace, extras: list[str], task: str) -> None:
    """An option of another task than the one the verb serves: one line naming whose it is."""
    from scratchlm.tasks import get_task

    kind = "eval" if args.verb == "eval" else "data"
    for other in TASK_NAMES:
        if other == task:
            continue
        probe = Parser(add_help=False)
        options = {o for a in task_group(probe, other, kind)._group_actions for o in a.option_strings}
        if found := [word.split("=")[0] for word in extras if word.split("=")[0] in options]:
            if kind == "eval":
                raise UserError(f"{', '.join(found)}: an option of {get_task(other).title} runs' eval; {args.run} is a "
                                f"{get_task(task).title} run")
            raise UserError(f"{', '.join(found)}: not an option of {get_task(task).title} data, the model's task "
                            f"(but of {get_task(other).title} data)")


def show_warning(message, *_) -> None:
    """A warning (a damaged checkpoint replaced by the previous one) as one line, as errors are."""
    print(f"scratchlm: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        return run_verb(argv)


def run_verb(argv: Sequence[str] | None) -> int:
    try:
        every = build_parser()  # every task's options: finds the verb and the task (and answers --help)
        argv = attach_negative_values(every, list(sys.argv[1:] if argv is None else argv))
        args, extras = every.parse_known_args(argv)
        if not getattr(args, "handler", None):
            raise UserError(f"give a verb: {', '.join(subparsers(every))} (see `scratchlm --help`)")
        task = task_of(args)
        if task is not None:  # again, with the options of that task alone
            args, extras = build_parser(task).parse_known_args(argv)
        if extras:  # told by the verb's own parser: its options, its --help
            refuse_another_tasks_options(args, extras, task)
            subparsers(every)[args.verb].unrecognized(extras)
        return args.handler(args)
    except LostProcess as e:  # every survivor of a torchrun launch stops; the lowest rank says why
        if e.speaks:
            print(f"scratchlm: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
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
    except OSError as e:  # a full disk, a read-only folder: the user's to mend, told in one line
        if e.errno not in DISK_ERRORS:
            raise
        print(f"scratchlm: error: {e.filename or 'a file'}: {cannot_write(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
