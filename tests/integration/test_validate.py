"""Config values: typos and wrong types fail at compose time, good values give the typed
Config, and every range is declared beside what it bounds (hyperlab.ranges). The bad
values themselves, each with its key, range and fix: test_bad_input.py's table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from hyperlab.errors import ConfigError
from hyperlab.validate import validate
from support.paths import Compose


@pytest.mark.parametrize(
    "override", ["epoch=3", "optimizer.betaa=0.9", "lr=fast", "batch_size=1.5", "seed=x"]
)
def test_typos_and_wrong_types_fail_at_compose_time(cfg: Compose, override: str) -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        cfg(override)


def test_unknown_option_lists_the_valid_ones(cfg: Compose) -> None:
    with pytest.raises(Exception, match="Available options in 'optimizer'") as e:
        cfg("optimizer=adamm")
    assert "momentum" in str(e.value) and "rmsprop" in str(e.value)


def test_good_values_pass(cfg: Compose) -> None:
    config = validate(
        cfg(
            "lr=1e-3",
            "optimizer=momentum",
            "optimizer.beta=0.95",
            "regularization.keep_prob=1",
            "model.hidden_units=[64,32]",
        )
    )
    assert config.optimizer["beta"] == 0.95


def test_a_new_options_range_is_its_signatures(
    cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding an option is its YAML and its function: the ranges its arguments are
    annotated with (hyperlab.ranges) are checked, with no table to add them to."""
    package = tmp_path / "mine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "optim.py").write_text(
        "from hyperlab.ranges import Averaging, Positive\n\n\n"
        "def heavy_ball(params, lr: Positive, friction: Averaging = 0.5):\n"
        "    raise RuntimeError('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mine", raising=False)
    mine = ["allow_targets=[mine.]", "optimizer._target_=mine.optim.heavy_ball"]
    with pytest.raises(ConfigError) as e:
        validate(cfg(*mine, "+optimizer.friction=1.5"))
    assert "optimizer.friction=1.5 is not allowed" in e.value.problem
    assert "must be a number in [0, 1)" in e.value.problem
    assert "e.g. optimizer.friction=0.5" in e.value.fix  # its default
    assert validate(cfg(*mine, "+optimizer.friction=0.9")).optimizer["friction"] == 0.9


def test_every_range_of_a_shipped_option_is_declared_beside_it() -> None:
    """Each group's shipped options name functions that declare a range for every number
    their config file sets (a new argument without one would go unchecked)."""
    import yaml

    from hyperlab.cli import CONFIG_DIR
    from hyperlab.ranges import declared
    from hyperlab.validate import GROUPS

    unbounded = []
    for group in GROUPS:
        for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text()) or {}
            ranges = declared(node.get("_target_", ""))
            unbounded += [
                f"{group}/{path.name}: {key}"
                for key, value in node.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
                if key not in ranges
            ]
    # csv's label is a column's name or index, checked against the file when it is read.
    assert unbounded == ["dataset/csv.yaml: label"]
