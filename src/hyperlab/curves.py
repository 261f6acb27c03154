"""The learning-curve figure of a run: cost and accuracy per epoch, train against dev, with
the learning rate on a second axis when it changes. Drawn by the MLflow writer process, off
the training path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# A cost whose largest value is this many times its smallest is drawn on a log axis: a
# large random initialization starts near 2,000 and would flatten everything after it.
DECADES = 100.0


History = Mapping[str, Sequence[tuple[int, float]]]


def draw(history: History, path: Path, title: str = "") -> Path:
    """Draw {metric: [(epoch, value), ...]} (train_loss, dev_loss, train_acc, dev_acc, lr),
    epochs counted from 1, into a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = figure(history, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def wrapped(title: str, width: int = 120) -> str:
    """A figure's title in lines that fit its width: a run's name holds its overrides, and
    a replay line's stages alone run past the figure's edges."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False)) or title


def figure(history: History, title: str = "") -> Figure:
    """The learning curve's figure: cost, then accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def series(name: str) -> tuple[list[int], list[float]]:
        points = sorted(history.get(name, ()))
        return [e for e, _ in points], [v for _, v in points]

    rates = set(series("lr")[1])
    fig, (cost, acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, label in ((cost, "loss", "cost"), (acc, "acc", "accuracy")):
        for split, style in (("train", "-"), ("dev", "--")):
            ax.plot(*series(f"{split}_{kind}"), style, label=f"{split} {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no half epochs
        ax.grid(alpha=0.3)
        lines = ax.get_lines()
        if len(rates) > 1:  # a constant rate is in the title's overrides, not a flat line
            lr = ax.twinx()
            lr.plot(*series("lr"), ":", color="gray", label="learning rate")
            lr.set_ylabel("learning rate", color="gray")
            lines = lines + lr.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], loc="best", fontsize=8)
    costs = [v for k in ("train_loss", "dev_loss") for v in series(k)[1] if v > 0]
    if costs and max(costs) > DECADES * min(costs):
        cost.set_yscale("log")
        cost.set_ylabel("cost (log scale)")
    if title:
        fig.suptitle(wrapped(title), fontsize=9)
    fig.tight_layout()
    return fig
