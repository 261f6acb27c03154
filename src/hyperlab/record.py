"""Where a run is recorded: its MLflow run (params, tags, the config as artifacts), its
directory, and its learning curve's file and title, and the history it continues."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hyperlab.devices import resolve
from hyperlab.errors import masked
from hyperlab.schema import Config, as_dict
from hyperlab.tracking import Tracker, default_tags, params_of

if TYPE_CHECKING:
    from hyperlab.job import Job

Point = tuple[int, float]  # (epoch counted from 1, value)


@dataclass(frozen=True)
class Record:
    """Where a run is recorded: its MLflow run (None with tracking off), its directory
    (learning curve, checkpoints), the learning curve's file and title, and the metrics
    of the epochs before this run's first (from the checkpoint a resumed run continues)."""

    tracker: Tracker | None
    out: Path
    curve: Path | None
    title: str
    prior: list[dict[str, float]] = field(default_factory=list)

    def curve_points(
        self, history: Sequence[Mapping[str, float]], start_epoch: int = 0
    ) -> dict[str, list[Point]]:
        """{metric: [(epoch, value), ...]} over the prior epochs, then `history`'s, which
        begin after `start_epoch`."""
        joined = [*self.prior, *history]
        first = start_epoch - len(self.prior) + 1 if history else 1
        return {k: [(e, h[k]) for e, h in enumerate(joined, first) if k in h] for k in joined[0]}

    def close(
        self,
        status: str,
        tags: Mapping[str, str],
        metrics: Mapping[str, float] = {},
        step: int = 0,
    ) -> str:
        """End the MLflow run with `status` and draw its curve, joined to the prior
        epochs'; return the run's id."""
        assert self.tracker, "closed with tracking off"
        return self.tracker.finish(
            status,
            metrics=metrics,
            step=step,
            tags=tags,
            curve=self.curve,
            title=self.title,
            prior=self.curve_points([]) if self.prior else {},
        )


def open_record(config: Config, job: Job, sha256: str, resume_tags: Mapping[str, str]) -> Record:
    """Start the MLflow run, with tracking on: the params, the tags, the config."""
    tracking = config.tracking
    tracker = None
    name = masked(job.run_name or " ".join(job.overrides) or "defaults")
    if tracking.enabled:
        recorded = as_dict(config)
        tracker = Tracker(
            tracking.uri,
            tracking.experiment,
            artifact_root=tracking.artifacts,
            run_name=name[:250],
            parent_run_id=job.parent_run_id,
            params={**params_of(recorded, job.choices), "data.sha256": sha256},
            tags={
                **default_tags(job.command),
                "hyperlab.device": str(resolve(config.device)),
                # What sets this run apart from its siblings (a study's searched values,
                # a multirun's swept keys), in one column of the MLflow UI.
                "hyperlab.params": masked(" ".join(job.overrides)) or "defaults",
                **resume_tags,
                **job.tags,
            },
            # Passwords (a database URL in sweep.storage, tracking.uri, the overrides) are
            # masked in every param, tag and artifact; the Tracker masks them as well.
            artifacts={
                "config.yaml": _yaml(masked(recorded)),
                "overrides.yaml": _yaml(masked(list(job.overrides))),
            },
            flush_seconds=tracking.flush_seconds,
        )
    out = job.output_dir or Path(tempfile.gettempdir()) / "hyperlab-runs" / uuid.uuid4().hex
    curve = out / "learning_curve.png" if tracking.curve else None
    if tracker and curve:
        tracker.expect_curve()
    prior = job.resume.history if job.resume else []
    return Record(tracker, out, curve, f"hyperlab: {name}", prior)


def _yaml(data: Any) -> str:
    """YAML text, by libyaml where PyYAML has it: ten times faster than the pure-Python
    dumper, which cost 10 ms per config, every trial of a study."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False)  # type: ignore[no-any-return]
