"""diagnostics=layers: vanishing and exploding signals, seen layer by layer.

The initialization lesson's point is what happens inside a deep network: with weights too
small the activations (and the gradients flowing back) shrink layer after layer, with
weights too large they grow, and with zeros every unit of a layer stays the same. After
each epoch this listener measures, per layer l (the l-th Linear layer, counted from 1; the
last is the output layer), on a fixed probe of training examples:

- act_rms: the RMS of the layer's activations a[l] (the logits z[L] for the output layer),
- grad_rms: the RMS of the cost's gradient dW[l] on the probe,
- update_ratio: ||W[l] after the epoch - W[l] before it|| / ||W[l] before it||, how far
  the epoch moved the weights relative to their size (about 1e-3 per step is healthy).

The probe runs in eval mode (no dropout, batch norm's running averages), so measuring
changes nothing the training reads: the gradients are computed apart (torch.autograd.grad),
not into the parameters' .grad. Hydra-free; with diagnostics off nothing here runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hyperlab import curves
from hyperlab.models import ACTIVATIONS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROBE = 512  # training examples measured each epoch: enough for stable RMS, cheap
QUANTITIES = ("act_rms", "grad_rms", "update_ratio")
Stats = dict[str, list[float]]  # quantity -> per layer, from layer 1


def key(quantity: str, layer: int) -> str:
    """The MLflow metric of a quantity at a layer: grouped by quantity in MLflow's charts
    (its sections are the names' prefixes before '/'), layers in order up to 99."""
    return f"{quantity}/layer_{layer:02d}"


class LayerStats:
    """A training-loop listener: per epoch, each layer's statistics (see the module), handed
    to `log(metrics, epoch)` under key(); the history is kept for the plot. The weights as
    they start (initialized, or a checkpoint's) are measured first, as epoch `start_epoch`
    (0: the initialization), without an update ratio."""

    def __init__(
        self,
        model: nn.Sequential,
        x: torch.Tensor,
        y: torch.Tensor,
        log: Callable[[Mapping[str, float], int], None] = lambda m, e: None,
        start_epoch: int = 0,
    ) -> None:
        self.model, self.x, self.y, self.log = model, x[:PROBE], y[:PROBE], log
        self.linears = [m for m in model if isinstance(m, nn.Linear)]
        self.before = [lin.weight.detach().clone() for lin in self.linears]
        self.history: list[tuple[int, Stats]] = []  # (epoch, its statistics)
        self.on_epoch_end(start_epoch, {})

    def measure(self) -> Stats:
        """This moment's statistics, per layer."""
        was_training = self.model.training
        self.model.eval()
        acts: list[torch.Tensor] = []
        out = self.x
        for module in self.model:
            out = module(out)
            if isinstance(module, tuple(ACTIVATIONS.values())):
                acts.append(out)
        acts.append(out)  # the output layer's logits
        loss = F.cross_entropy(out, self.y)
        grads = torch.autograd.grad(loss, [lin.weight for lin in self.linears])
        self.model.train(was_training)
        now = [lin.weight.detach() for lin in self.linears]
        stats = {
            "act_rms": [_rms(a.detach()) for a in acts],
            "grad_rms": [_rms(g) for g in grads],
            "update_ratio": [
                float(torch.linalg.norm(w - b) / torch.linalg.norm(b).clamp_min(1e-12))
                for w, b in zip(now, self.before, strict=True)
            ]
            if self.history
            else [],  # the start: no update yet
        }
        self.before = [w.clone() for w in now]
        return stats

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        stats = self.measure()
        self.history.append((epoch, stats))
        self.log({key(q, i): v for q in QUANTITIES for i, v in enumerate(stats[q], 1)}, epoch)


def show(history: list[tuple[int, Stats]]) -> None:
    """The layers' statistics at the start and after the last epoch, a row per layer."""
    from rich.table import Table

    from hyperlab.display import console

    epochs = [history[0], history[-1]] if len(history) > 1 else history[:1]
    table = Table(title="layers (diagnostics=layers)", title_justify="left")
    table.add_column("layer", justify="right")
    for name, q in (("act RMS", "act_rms"), ("grad RMS", "grad_rms"), ("update", "update_ratio")):
        for epoch, stats in epochs:
            if stats[q]:
                table.add_column(f"{name}\nepoch {epoch}", justify="right")
    n = len(history[0][1]["act_rms"])
    for i in range(n):
        cells = [stats[q][i] for q in QUANTITIES for _, stats in epochs if stats[q]]
        name = f"{i + 1}" + (" (output)" if i == n - 1 else "")
        table.add_row(name, *(f"{v:.3g}" for v in cells))
    console.print(table)
    console.print("  update: ||W after the epoch - W before|| / ||W before||", highlight=False)


def _zero(v: float) -> bool:
    return v == 0


def _overflow(v: float) -> bool:
    return not math.isfinite(v)


def _rms(t: torch.Tensor) -> float:
    return float(t.float().square().mean().sqrt())


def figure(history: list[tuple[int, Stats]], title: str = "") -> Figure:
    """Each quantity against depth (layer 1 to L), one line per epoch shown (the start,
    the first epoch, the middle one and the last), on log axes: a vanishing signal falls
    layer after layer, an exploding one climbs. An exact zero (zeros' initialization) is
    drawn as a triangle on the axis's floor, an overflow (inf or NaN) as one on its
    ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(history)
    shown = sorted({0, min(1, n - 1), n // 2, n - 1})
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = {
        "act_rms": "activation RMS  a[l]",
        "grad_rms": "gradient RMS  dW[l]",
        "update_ratio": "update / weight  per epoch",
    }
    for ax, q in zip(axes, QUANTITIES, strict=True):
        values = [v for i in shown for v in history[i][1][q] if 0 < v < math.inf]
        floor = min(values, default=1.0) / 10
        ceiling = max(values, default=1.0) * 10
        for i in shown:
            epoch, stats = history[i]
            ys = stats[q]
            if not ys:
                ax.plot([], [])  # the start has no update: keep the epochs' colours
                continue
            layers = list(range(1, len(ys) + 1))
            shown_ys = [v if 0 < v < math.inf else None for v in ys]
            (line,) = ax.plot(layers, shown_ys, marker="o", ms=3)
            for mark, at, off in (("v", floor, _zero), ("^", ceiling, _overflow)):
                xs = [layer for layer, v in zip(layers, ys, strict=True) if off(v)]
                if xs:
                    ax.plot(xs, [at] * len(xs), mark, color=line.get_color(), ms=6)
            line.set_label(f"epoch {epoch}" if i else f"start (epoch {epoch})")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(labels[q])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    every = [v for i in shown for q in QUANTITIES for v in history[i][1][q]]
    marks = [
        m
        for m, off in (("▼: exactly 0", _zero), ("▲: inf or NaN", _overflow))
        if any(map(off, every))
    ]
    fig.suptitle(curves.wrapped("  ".join([title, *marks])), fontsize=10)
    fig.tight_layout()
    return fig


def draw(history: list[tuple[int, Stats]], path: Path, title: str = "") -> Path:
    """The per-layer plot as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = figure(history, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
