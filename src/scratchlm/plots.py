"""Pictures a run writes: loss curves and the learning-rate finder. matplotlib, off-screen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scratchlm.files import atomic_write


def figure():
    """A figure of its own, outside pyplot: drawn off-screen, with no backend chosen for the caller (a
    notebook's pyplot keeps its inline backend) and nothing for pyplot to hold on to after the save."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=110)
    return fig, fig.subplots()


def save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write(Path(path), buffer.getvalue())


def plot_losses(history: list[dict], path: Path, title: str, metrics: Sequence[str] = ("accuracy",)) -> None:
    """Training and validation loss against step, and the task's headline metric on a second axis."""
    fig, ax = figure()
    steps = [row["step"] for row in history]
    ax.plot(steps, [row["train_loss"] for row in history], "o-", label="train loss")
    ax.plot(steps, [row["valid_loss"] for row in history], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lines = ax.get_legend_handles_labels()[0]
    if metrics:
        second = ax.twinx()
        for name in metrics:
            second.plot(steps, [row[f"valid_{name}"] for row in history], "s--", color="tab:green", label=name)
        second.set_ylabel("validation " + ", ".join(metrics))
        lines += second.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.set_title(title)
    save(fig, path)


def plot_lr_find(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    fig, ax = figure()
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggestion {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.legend()
    ax.set_title("learning rate finder")
    save(fig, path)


def plot_curves(curves: dict[str, tuple[list[float], list[float]]], path: Path, xlabel: str, ylabel: str,
                title: str) -> None:
    """One line per name (the ladder's validation accuracy against training time). A curve identical
    to one drawn before it (rnn3 computes what mlp3 does) is drawn dashed with open markers and named
    after it, so it does not vanish under the first."""
    fig, ax = figure()
    drawn: dict[tuple, str] = {}
    for name, (xs, ys) in curves.items():
        same = drawn.get(tuple(round(y, 6) for y in ys))
        if same is None:
            ax.plot(xs, ys, "o-", markersize=3, label=name)
            drawn[tuple(round(y, 6) for y in ys)] = name
        else:
            ax.plot(xs, ys, "o--", markersize=6, markerfacecolor="none", label=f"{name} (= {same})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.set_title(title)
    save(fig, path)


def plot_attention(source: Sequence[str], target: Sequence[str], weights, path: str | Path, title: str = "") -> None:
    """The attention of each target token (rows) over the source tokens (columns), as a heat map
    (Bahdanau et al. 2015, figure 3): a translation's alignment, read off the model."""
    import numpy as np

    weights = np.asarray(weights)[: len(target), : len(source)]
    fig, ax = figure()
    fig.set_size_inches(max(4.0, 0.45 * len(source) + 2), max(3.0, 0.35 * len(target) + 1.5))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), [t.replace(" ", "·") for t in source], rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(target)), [t.replace(" ", "·") for t in target], fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    fig.colorbar(image, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title)
    save(fig, Path(path))


def plot_confusion(matrix, labels: Sequence[str], path: str | Path, title: str = "") -> None:
    """A confusion matrix as a heat map: rows the true label, columns the predicted one, each cell its count."""
    import numpy as np

    matrix = np.asarray(matrix)
    fig, ax = figure()
    fig.set_size_inches(max(3.5, 0.6 * len(labels) + 2), max(3.0, 0.6 * len(labels) + 1.5))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count:,}", ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title)
    save(fig, Path(path))


def plot_words(words: Sequence[str], points, path: str | Path, title: str = "") -> int:
    """Words at their 2-D coordinates (a projection of their vectors), each labelled beside its dot; the number
    of words labelled.

    t-SNE packs neighbours tight, and labels drawn on top of each other read as none. Each label tries four
    places around its dot (right, left, above, below), in the given order of the words (most frequent first),
    and keeps the first that overlaps no label already placed; a word with no free place keeps its dot only."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    points = np.asarray(points)
    fig, ax = figure()
    side = min(12.0, 5.0 + 0.04 * len(words))
    fig.set_size_inches(side * 1.3, side)
    ax.scatter(points[:, 0], points[:, 1], s=12, color="tab:blue", alpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    renderer = FigureCanvasAgg(fig).get_renderer()
    size = 9 if len(words) <= 60 else 7
    placed = []
    for word, (x, y) in zip(words, points, strict=True):
        for offset, align in (((3, 2), ("left", "bottom")), ((-3, 2), ("right", "bottom")),
                              ((0, 5), ("center", "bottom")), ((0, -5), ("center", "top"))):
            label = ax.annotate(word, (x, y), xytext=offset, textcoords="offset points", fontsize=size,
                                ha=align[0], va=align[1])
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
    save(fig, Path(path))
    return len(placed)
