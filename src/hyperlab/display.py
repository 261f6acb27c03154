"""What a person sees: a progress bar with per-epoch lines, then a summary table."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hyperlab.diagnose import Reading

if TYPE_CHECKING:
    from hyperlab.errors import HyperlabError
    from hyperlab.schema import Config

# Text is never wrapped (soft_wrap): a replay line or a trial's line is one line, to copy
# whole or to grep, in a pipe or a file as on a terminal, which wraps it only on screen.
# Tables still fit the width.
console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: object) -> str:
    """`value` as text that rich prints as it is. Paths, names and values a user wrote may
    hold `[...]`, which rich reads as markup: `[final]` vanishes, `[/red]` fails. Every
    user text in a markup string goes through here."""
    return escape(str(value))


def fit(
    target: Console,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[str] = (),
) -> None:
    """Rows of plain text with every value whole at any width: a table where it fits the
    console, else one block a row of `column: value` lines under its first cell (a pipe or
    a narrow terminal would cut a table's cells to `0.…`)."""
    table = Table(title=escape(title) if title else None, title_justify="left")
    for name in header:
        table.add_column(escape(name), justify="right" if name in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*map(escape, row))
    # Measured against a wide page: against the console's own width rich reports what fits.
    wide = target.options.update_width(100_000)
    if target.measure(table, options=wide).maximum <= target.width:
        target.print(table)
        return
    if title:
        target.print(title, markup=False)
    for row in rows:
        target.print(f"{header[0]} {row[0]}", markup=False, style="bold")
        for name, value in zip(header[1:], row[1:], strict=True):
            if value:
                target.print(f"  {name}: {value}", markup=False)


def exit_with(e: HyperlabError) -> NoReturn:
    """Print a user's error as its problem and its fix, then exit 2."""
    error_console.print(f"[bold red]error:[/] {plain(e.problem)}")
    if e.fix:
        error_console.print(f"  [bold]fix:[/] {plain(e.fix)}")
    sys.exit(2)


def _line(epoch: int, m: Mapping[str, float]) -> str:
    return (
        f"epoch {epoch:>4}  train {m['train_loss']:.4f} / {m['train_acc']:6.2%}   "
        f"dev {m['dev_loss']:.4f} / {m['dev_acc']:6.2%}   lr {m['lr']:.3g}"
    )


class ProgressDisplay:
    """A progress-bar listener; prints a metrics line every `every` epochs and the last one
    (where early stopping, asked by `stopping`, ends training too).

    It redraws only when an epoch ends (no refresh thread to compete with training)."""

    def __init__(
        self,
        epochs: int,
        start_epoch: int = 0,
        every: int | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.epochs, self.stopping = epochs, stopping
        self.every = every or max(1, (epochs - start_epoch) // 10)
        self._progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            auto_refresh=False,
            transient=True,
        )
        self._task = self._progress.add_task("", total=epochs, completed=start_epoch)

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch % self.every == 0 or epoch == self.epochs or self.stopping():
            self._progress.console.print(_line(epoch, metrics))
        self._progress.update(
            self._task,
            completed=epoch,
            description=f"dev acc {metrics['dev_acc']:.2%}  lr {metrics['lr']:.3g}",
            refresh=True,
        )


def summary(
    title: str,
    final: Mapping[str, tuple[float, float]],
    reading: Reading,
    objective: tuple[str, float],
    run_id: str | None,
    uri: str | None,
    page: str = "",
    early_stopping: str = "",
) -> None:
    """Print the end-of-run table: loss and accuracy per split, the bias/variance reading,
    the objective, and where MLflow recorded the run (`page`: its address in the UI)."""
    if early_stopping:
        console.print(f"[bold]early stopping:[/] {early_stopping}", highlight=False)
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("error", justify="right")
    for split, (loss, acc) in final.items():
        table.add_row(split, f"{loss:.4f}", f"{acc:.2%}", f"{1 - acc:.2%}")
    console.print(table)
    mismatch = (
        "" if reading.data_mismatch is None else f", data mismatch {reading.data_mismatch:.2%}"
    )
    console.print(
        f"[bold]bias/variance:[/] {reading.verdict} "
        f"(avoidable bias {reading.avoidable_bias:.2%}, variance {reading.variance:.2%}"
        f"{mismatch})"
    )
    console.print(f"  next step: {reading.advice}")
    console.print(f"[bold]objective:[/] {objective[0]} = {objective[1]:.4f}")
    if run_id:
        console.print(f"[bold]MLflow:[/] run {run_id}")
        show_where(uri or "", page)


# MLflow 3's UI opens an experiment on its GenAI pages unless the address says otherwise:
# its experiment-kind tag does not choose the view, this query does (and is remembered).
MODEL_TRAINING = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves


def ui_page(experiment_id: str | None, run_id: str | None = None) -> str:
    """The MLflow UI's address of an experiment's runs table, or of one of its runs."""
    if not experiment_id:
        return ""
    return f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")


def header(config: Config, choices: Mapping[str, str]) -> str:
    """A run's first line: what is trained on what, and how (as markup)."""
    epochs = config.epochs
    what = (
        f"{choices.get('model', 'model')} on {choices.get('dataset', 'data')}, "
        f"{choices.get('optimizer', 'optimizer')} lr={config.lr:g}, "
        f"{epochs} epoch{'s' if epochs != 1 else ''}, batch {config.batch_size}"
    )
    if choices.get("augment", "none") != "none":  # shown only when on: the default is off
        what += f", augment={choices['augment']}"
    if config.stages:
        what += ", stages from epochs " + ", ".join(str(int(s["epoch"])) for s in config.stages)
    return f"[bold]hyperlab[/] {plain(what)}"


def show_where(uri: str, page: str = "") -> None:
    """where_to_look's lines, indented, each whole on one line to copy."""
    for line in where_to_look(uri, page):
        console.print(f"  {plain(line)}", soft_wrap=True, highlight=False)


def where_to_look(uri: str, page: str = "") -> list[str]:
    """How to see a tracking store's runs, a line each: a server's address to open (at
    `page`, on the UI's model-training view), or the `mlflow ui` command that serves a
    local store (one line, quoted for the shell), then the address to open."""
    import shlex

    from hyperlab.errors import masked

    address = f"/{page}?{MODEL_TRAINING}" if page else ""
    if uri.startswith(("http://", "https://")):
        return [f"open {masked(uri).rstrip('/')}{address}"]
    if uri.startswith("databricks"):
        return ["open the experiment in your Databricks workspace"]
    serve = f"mlflow ui --host 127.0.0.1 --backend-store-uri {shlex.quote(masked(uri))}"
    return [serve, f"then open {LOCAL_UI}{address}"]
