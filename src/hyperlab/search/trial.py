"""What a trial needs beyond a run: the pruning reporter and the replay command line."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hyperlab.overrides import is_study_setting, merge, override_key
from hyperlab.schema import STUDY_GROUPS

if TYPE_CHECKING:
    import optuna


class PruningReporter:
    """A training-loop listener: reports the objective each epoch and stops the trial when
    the pruner says so (TrialPruned, which the runner records as KILLED). After the last
    epoch there is nothing left to save: the trial completes."""

    def __init__(self, trial: optuna.Trial, metric: str, epochs: int) -> None:
        import optuna

        self.trial = trial
        self.metric = metric
        self.last = epochs
        # Without a pruner, nothing reads the intermediate values, and each report is a
        # write to the study's storage (an fsync'd journal append, a database round trip):
        # skipped. The per-epoch curves are in MLflow.
        self.active = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        import optuna

        if not self.active:
            return
        self.trial.report(metrics[self.metric], step=epoch)
        if epoch < self.last and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {epoch} ({self.metric}={metrics[self.metric]:.4g})"
            )


def replay_args(line: str) -> list[str]:
    """The overrides of a recorded replay line, without any study setting: lines recorded
    before study settings were left out (`sampler.budgets=...`) still train one model."""
    return [a for a in shlex.split(line)[1:] if not is_study_setting(a) or a == "~search"]


def replay(
    base: Sequence[str],
    trial_overrides: Sequence[str],
    choices: Mapping[str, str],
    root_choices: Mapping[str, str],
) -> str:
    """The `hyperlab ...` line that trains this trial alone, as a shell runs it: the group
    options the search selected (where they differ from the defaults), the command's own
    overrides, and the trial's values, without what only concerns the study."""
    groups = [
        f"{g}={c}"
        for g, c in choices.items()
        if c is not None
        and not g.startswith("hydra/")
        and g not in STUDY_GROUPS
        and root_choices.get(g) != c
    ]
    own = [o for o in base if not is_study_setting(o)]
    args = merge([*groups, *own, *trial_overrides])
    if any(override_key(a) == "experiment" for a in args) and choices.get("search"):
        args.append("~search")  # the preset selects the study: the replay trains one model
    from hyperlab.errors import masked

    # stored in the study and printed: no passwords
    return masked(" ".join(["hyperlab", *map(shlex.quote, args)]))
