"""Coarse to fine: random search in stages, each zooming in on where the best trials were.

Stage 0 samples the whole space at random, every parameter on its own scale. Each later
stage takes the best `keep` fraction of the complete trials so far, shrinks every numeric range to
the span of their values (widened by `margin` of the full range on each side, so the
optimum is not cut off at the edge of a lucky sample), keeps only the categorical choices
they used, and samples densely at random inside that region. The random sampling within a
stage is what makes it robust: a region is a box, not a model's guess.

Stages follow trial numbers, not the order trials finish in, so workers that ask and tell
in separate processes agree on them. The region of a stage is stored in the study's user
attributes by the first worker that needs it; the others reuse it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

STAGE_ATTR = "coarse_to_fine:stage"
REGION_ATTR = "coarse_to_fine:region"

Region = dict[str, list[Any]]  # param name -> [low, high] or the kept choices


def _stage_counts(n_trials: int, budgets: Sequence[float]) -> list[int]:
    """Trials per stage: the budgets' shares of n_trials, rounded, at least 1 each."""
    exact = [n_trials * b / sum(budgets) for b in budgets]
    counts = [max(1, math.floor(x)) for x in exact]
    # Largest remainder: hand what flooring lost to the stages it lost most from, and take
    # what the at-least-1 rule added from the stages that can spare it most.
    while sum(counts) < n_trials:
        counts[max(range(len(counts)), key=lambda i: exact[i] - counts[i])] += 1
    while sum(counts) > n_trials:
        spare = [i for i in range(len(counts)) if counts[i] > 1]
        counts[max(spare, key=lambda i: counts[i] - exact[i])] -= 1
    return counts


def _scale(dist: FloatDistribution | IntDistribution) -> tuple[Callable[[float], float], ...]:
    """To and from the scale a distribution is searched on. Every log distribution is
    handled in log space, which covers hyperlab's averaging coefficients too: a beta on the
    "log of 1 - beta" scale reaches Optuna as a log FloatDistribution over `1-<key>`."""
    return (math.log, math.exp) if dist.log else (float, float)


def _is_range(bounds: list[Any] | None) -> TypeGuard[list[Any]]:
    # A region stored for a parameter that was categorical then is no range for it now.
    return bounds is not None and len(bounds) == 2 and all(type(b) in (int, float) for b in bounds)


class CoarseToFineSampler(optuna.samplers.BaseSampler):
    """Random search in stages of `budgets` × `n_trials` trials, each after the first
    sampling inside the region of the best `keep` fraction of the trials so far."""

    def __init__(
        self,
        *,
        n_trials: int,
        budgets: Sequence[float] = (0.5, 0.25, 0.25),
        keep: float = 0.25,
        margin: float = 0.1,
        seed: int | None = None,
    ) -> None:
        budgets = list(budgets)
        if n_trials < 1:
            raise ConfigError(f"sweep.n_trials={n_trials} must be >= 1", "set sweep.n_trials=20")
        if not budgets:
            raise ConfigError(
                "sampler.budgets=[] names no stage", "set sampler.budgets=[0.5,0.25,0.25]"
            )
        if any(not b > 0 for b in budgets):
            raise ConfigError(
                f"sampler.budgets={budgets} must all be > 0",
                "give every stage a positive share, e.g. sampler.budgets=[0.5,0.25,0.25]",
            )
        if len(budgets) > n_trials:
            raise ConfigError(
                f"sampler.budgets has {len(budgets)} stages but sweep.n_trials={n_trials}",
                f"raise sweep.n_trials to at least {len(budgets)} or list fewer budgets",
            )
        if not 0 < keep <= 1:
            raise ConfigError(f"sampler.keep={keep} must be in (0, 1]", "set sampler.keep=0.25")
        if not margin >= 0:
            raise ConfigError(f"sampler.margin={margin} must be >= 0", "set sampler.margin=0.1")
        self._ends = list(np.cumsum(_stage_counts(n_trials, budgets)).tolist())
        self._keep = keep
        self._margin = margin
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._rng = np.random.default_rng(seed)
        self._regions: dict[tuple[str, int], Region] = {}

    def stage_ends(self) -> list[int]:
        """Cumulative trial counts at which each stage ends (the last one is n_trials)."""
        return list(self._ends)

    def stage_of(self, number: int) -> int:
        """The 0-based stage of trial `number`; trials past n_trials stay in the last."""
        return min(bisect.bisect_right(self._ends, number), len(self._ends) - 1)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._rng = np.random.default_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, STAGE_ATTR, self.stage_of(trial.number))

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        stage = self.stage_of(trial.number)
        bounds = self._region(study, stage).get(param_name) if stage > 0 else None
        dist = param_distribution
        if bounds is not None and isinstance(dist, CategoricalDistribution):
            kept = [c for c in dist.choices if c in bounds]
            if kept:
                return kept[self._rng.integers(len(kept))]
        elif _is_range(bounds) and isinstance(dist, FloatDistribution | IntDistribution):
            # Clipped again in case the space changed since the region was stored.
            low, high = max(bounds[0], dist.low), min(bounds[1], dist.high)
            if low <= high:
                return self._sample_numeric(dist, low, high)
        # Stage 0, or a parameter the kept trials never had (a conditional one): all of it.
        return self._random.sample_independent(study, trial, param_name, dist)

    def _sample_numeric(
        self, dist: FloatDistribution | IntDistribution, low: float, high: float
    ) -> float | int:
        """Uniform on the distribution's scale in [low, high], snapped to its step."""
        to, back = _scale(dist)
        step = dist.step
        if step is None:
            return min(max(back(self._rng.uniform(to(low), to(high))), low), high)
        # The grid points inside [low, high], each with its cell of half a step either
        # side, as in Optuna's own transform (on a log scale, low >= 1 keeps it positive).
        first = math.ceil((low - dist.low) / step - 1e-9)
        last = max(first, math.floor((high - dist.low) / step + 1e-9))
        cells = dist.low + (first - 0.5) * step, dist.low + (last + 0.5) * step
        x = back(self._rng.uniform(to(cells[0]), to(cells[1])))
        value = dist.low + min(max(round((x - dist.low) / step), first), last) * step
        return int(value) if isinstance(dist, IntDistribution) else value

    def _region(self, study: optuna.Study, stage: int) -> Region:
        """The region of `stage`, shared through the study's user attributes."""
        # Through the storage: with a Hyperband pruner, `study` is a view of one bracket
        # that hides the user attributes and the other brackets' trials.
        storage, study_id = study._storage, study._study_id
        key = (study.study_name, stage)
        attr = f"{REGION_ATTR}:{stage}"
        if key not in self._regions:
            stored = storage.get_study_user_attrs(study_id)
            if attr in stored:
                self._regions[key] = stored[attr]
        if key in self._regions:
            return self._regions[key]
        self._raise_error_if_multi_objective(study)
        done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            # Nothing finished yet: fall back without storing, so that a later trial of the
            # stage computes the real region once there is something to learn from.
            return self._region(study, stage - 1) if stage > 1 else {}
        storage.set_study_user_attr(study_id, attr, self._box(done, study.direction))
        # Two workers may race to store a region; reading it back makes the later ones use
        # the one that stayed.
        self._regions[key] = storage.get_study_user_attrs(study_id)[attr]
        return self._regions[key]

    def _box(self, done: list[FrozenTrial], direction: optuna.study.StudyDirection) -> Region:
        """The box around the best `keep` fraction of the complete trials `done`."""
        sign = 1 if direction == optuna.study.StudyDirection.MINIMIZE else -1
        ranked = sorted(done, key=lambda t: sign * t.values[0])
        best = ranked[: max(1, round(self._keep * len(done)))]
        region: Region = {}
        for name in dict.fromkeys(n for t in best for n in t.params):
            having = [t for t in best if name in t.params]
            dist = having[-1].distributions[name]
            values = [t.params[name] for t in having]
            if isinstance(dist, CategoricalDistribution):
                region[name] = list(dict.fromkeys(values))
            elif isinstance(dist, FloatDistribution | IntDistribution):
                to, back = _scale(dist)
                pad = self._margin * (to(dist.high) - to(dist.low))
                low = max(back(to(min(values)) - pad), dist.low)
                high = min(back(to(max(values)) + pad), dist.high)
                region[name] = [low, high]
        return region


def regions(study: optuna.Study) -> dict[int, dict[str, list[Any]]]:
    """The stored region of each stage: {stage: {param name: [low, high] in the parameter's
    own values, or the list of kept choices}}."""
    prefix = f"{REGION_ATTR}:"
    found = {
        int(k.removeprefix(prefix)): v for k, v in study.user_attrs.items() if k.startswith(prefix)
    }
    return dict(sorted(found.items()))


# --- MLflow tags of a study's stages ---------------------------------------------------------


def stage_tag(s: optuna.Study, number: int) -> dict[str, str]:
    if isinstance(s.sampler, CoarseToFineSampler):
        return {"hyperlab.stage": str(s.sampler.stage_of(number))}
    return {}


def region_tags(s: optuna.Study) -> dict[str, str]:
    """coarse_to_fine: each stage's region, as `region.<stage>.<parameter>` tags."""
    if not isinstance(s.sampler, CoarseToFineSampler):
        return {}
    tags = {"hyperlab.stage_ends": str(s.sampler.stage_ends())}
    for stage, region in regions(s).items():
        for name, bounds in region.items():
            if name.startswith("1-") and len(bounds) == 2 and not isinstance(bounds[0], str):
                # stored as 1 - beta: shown as the beta range the user wrote
                name, bounds = name[2:], [1 - bounds[1], 1 - bounds[0]]
            shown = [f"{b:.4g}" if isinstance(b, float) else str(b) for b in bounds]
            tags[f"region.{stage}.{name}"] = f"[{', '.join(shown)}]"
    return tags
