from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from hyperlab.curves import draw, figure


def history(costs: list[float], rates: list[float]) -> dict[str, list[tuple[int, float]]]:
    epochs = range(1, len(costs) + 1)
    return {
        "train_loss": list(zip(epochs, costs, strict=True)),
        "dev_loss": [(e, c * 1.1) for e, c in zip(epochs, costs, strict=True)],
        "train_acc": [(e, 0.5) for e in epochs],
        "dev_acc": [(e, 0.4) for e in epochs],
        "lr": list(zip(epochs, rates, strict=True)),
    }


def test_a_cost_that_spans_decades_is_drawn_on_a_log_axis() -> None:
    fig = figure(history([2000.0, 30.0, 0.9, 0.5], [0.01] * 4))
    cost, acc = fig.axes[:2]
    assert cost.get_yscale() == "log" and "log" in cost.get_ylabel()
    assert acc.get_yscale() == "linear"
    plt.close(fig)


def test_a_cost_within_a_decade_stays_linear() -> None:
    fig = figure(history([2.0, 1.0, 0.5], [0.01] * 3))
    assert fig.axes[0].get_yscale() == "linear"
    plt.close(fig)


def test_a_constant_rate_gets_no_axis_and_a_decaying_one_does() -> None:
    constant = figure(history([2.0, 1.0, 0.5], [0.01] * 3))
    assert len(constant.axes) == 2
    assert all(ax.get_ylabel() != "learning rate" for ax in constant.axes)
    decaying = figure(history([2.0, 1.0, 0.5], [0.01, 0.005, 0.0033]))
    assert [ax.get_ylabel() for ax in decaying.axes].count("learning rate") == 2
    plt.close("all")


def test_epochs_are_counted_from_one_on_whole_ticks_and_the_title_names_the_run() -> None:
    fig = figure(history([2.0, 1.5], [0.01] * 2), "hyperlab: optimizer=adam lr=0.001")
    cost = fig.axes[0]
    assert list(cost.get_lines()[0].get_xdata()) == [1, 2]
    fig.canvas.draw()
    ticks = [t for t in cost.get_xticks() if 1 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no epoch 1.5
    assert fig.texts[0].get_text() == "hyperlab: optimizer=adam lr=0.001"
    plt.close(fig)


def test_draw_writes_a_png(tmp_path: Path) -> None:
    path = draw(history([1.0, 0.5], [0.1, 0.1]), tmp_path / "a" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_title_is_wrapped_to_stay_inside_the_figure() -> None:
    """A PBT replay line's run name holds its stages: hundreds of characters, no spaces
    inside the stages override."""
    stages = "stages=[" + ",".join(f"{{epoch:{e},lr:0.98549543067{e}}}" for e in range(6, 40)) + "]"
    title = f"hyperlab: optimizer=momentum epochs=40 lr=0.8212461922256864 {stages}"
    fig = figure(history([2.0, 1.5], [0.01] * 2), title)
    lines = fig.texts[0].get_text().split("\n")
    assert len(lines) > 1 and all(len(line) <= 120 for line in lines)
    assert "".join(lines).replace(" ", "") == title.replace(" ", "")  # nothing lost
    fig.canvas.draw()
    box = fig.texts[0].get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    plt.close(fig)
