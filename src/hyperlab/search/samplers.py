"""Samplers that need a change to serve workers that ask and tell (no study.optimize)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, TrialState


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, minus its study.stop() once the grid is covered: stop() only
    works inside study.optimize(). Workers check is_exhausted() before each claim instead."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None
