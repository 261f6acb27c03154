"""The learning-curve figure of a run: cost and accuracy per epoch, train against dev, with
the learning rate on a second axis. Drawn by the MLflow writer process, off the training
path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def draw(history: Mapping[str, Sequence[tuple[int, float]]], path: Path, title: str = "") -> Path:
    """Draw {metric: [(epoch, value), ...]} (train_loss, dev_loss, train_acc, dev_acc, lr)
    into a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(name: str) -> tuple[list[int], list[float]]:
        points = sorted(history.get(name, ()))
        return [e + 1 for e, _ in points], [v for _, v in points]

    fig, (cost, acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, label in ((cost, "loss", "cost"), (acc, "acc", "accuracy")):
        for split, style in (("train", "-"), ("dev", "--")):
            ax.plot(*series(f"{split}_{kind}"), style, label=f"{split} {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        lr = ax.twinx()
        lr.plot(*series("lr"), ":", color="gray", label="learning rate")
        lr.set_ylabel("learning rate", color="gray")
        lines = ax.get_lines() + lr.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
