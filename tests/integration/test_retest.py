"""task=retest: the best trials of an earlier study, trained again with several seeds.

Here: in this process, from composed configs; e2e/test_retest.py holds the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose
from mlflow import MlflowClient

from hyperlab.errors import ConfigError
from hyperlab.search.retest import retest
from hyperlab.tracking import drain
from support.paths import Compose
from support.records import stale_study


def test_retest_reranks_and_warns_where_the_record_is_stale(
    cfg: Compose, tmp_path: Path, mlflow_uri: str
) -> None:
    url = stale_study(tmp_path / "journal.log")
    own = [f"sweep.storage={url}", "study=stale", "top_k=3", "seeds=2", "task=retest"]
    config = cfg(*own, tracking=True)

    def composer(overrides: list[str]) -> tuple:  # type: ignore[type-arg]
        base = [f"tracking.{k}={v}" for k, v in config.tracking.items() if k != "enabled"]
        return compose("config", overrides=[*base, "tracking.enabled=true", *overrides]), {}

    rows = retest(config, own, composer)
    drain()
    assert [r.number for r in rows] == [0, 1, 2]
    assert [r.rank_then for r in rows] == [1, 2, 3]
    tiny = rows[0]
    assert len(tiny.spread.values) == 2 and tiny.spread.mean < 0.9
    assert tiny.rank_now > 1  # lr=1e-6 learns nothing in 4 epochs: its record was stale
    assert any("rank 1 ->" in w for w in tiny.warnings())
    assert any(w.startswith("moved") for w in tiny.warnings())

    c = MlflowClient(mlflow_uri)
    runs = c.search_runs([c.get_experiment_by_name(config.tracking.experiment).experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "retest stale"]
    assert parent.data.tags["hyperlab.retest_of"] == "f" * 32
    assert parent.data.tags["hyperlab.ranking_changed"] == "true"
    assert parent.data.metrics["trial_0.recorded"] == 0.99
    assert parent.data.metrics["trial_0.mean"] == pytest.approx(tiny.spread.mean)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6  # 3 trials x 2 seeds
    assert {r.data.params["seed"] for r in children} == {"0", "1"}


def test_an_unknown_study_names_the_ones_there(cfg: Compose, tmp_path: Path) -> None:
    url = stale_study(tmp_path / "journal.log")
    config = cfg(f"sweep.storage={url}", "study=fresh", "task=retest")
    with pytest.raises(ConfigError, match="no study named 'fresh'") as e:
        retest(config, [], lambda o: (config, {}))
    assert "stale" in e.value.fix
    with pytest.raises(ConfigError, match="needs the study"):
        retest(cfg(f"sweep.storage={url}", "task=retest"), [], lambda o: (config, {}))
