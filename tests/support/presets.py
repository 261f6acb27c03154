"""What each shipped preset (conf/experiment/) is expected to run: the multiruns' sweeps
and the studies' spaces and samplers, for the composing tests and the running ones."""

from __future__ import annotations

import itertools

# Multiruns through Hydra's basic sweeper: the group options they select, their sweep.
MULTIRUNS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "init_compare": (
        {"dataset": "circles", "optimizer": "gd"},
        {"init": "zeros,random_large,he"},
    ),
    "optimizers_moons": ({"dataset": "moons"}, {"optimizer": "gd,momentum,adam"}),
    "lr_decay": ({"optimizer": "gd"}, {"schedule": "constant,inverse_time,exponential,staircase"}),
    "regularization": (
        {"dataset": "moons", "augment": "noise"},
        {"regularization": "none,l2,dropout", "augment.std": "0,0.2"},
    ),
    "batchnorm_robustness": (
        {"optimizer": "gd"},
        {"normalization": "none,batchnorm", "lr": "1e-3,1e-2,1e-1,1"},
    ),
    "deep_init": ({"optimizer": "gd"}, {"init": "zeros,random_large,xavier,he"}),
}


# Optuna studies through hyperlab's sweeper: search space, default sampler, trials, and
# the samplers the lesson compares.
STUDIES: dict[str, tuple[str, str, int, tuple[str, str]]] = {
    "grid_vs_random": ("lr_eps", "log_uniform", 25, ("grid", "log_uniform")),
    "linear_vs_log": ("lr", "log_uniform", 20, ("random", "log_uniform")),
}
# Studies whose lesson compares how the trials are trained, not the samplers.
POPULATIONS = {"caviar_population": ("lr_beta", 32, 32)}  # search, trials, population


PRESETS = sorted([*MULTIRUNS, *STUDIES, *POPULATIONS])


def same(value: str) -> str | float:
    """An option's name, or a number however it is written (1e-3 and 0.001)."""
    try:
        return float(value)
    except ValueError:
        return value


def jobs(sweep: dict[str, str]) -> list[list[str]]:
    """The override lists Hydra's basic sweeper makes of `hydra.sweeper.params`."""
    axes = [[f"{k}={v}" for v in values.split(",")] for k, values in sweep.items()]
    return [list(job) for job in itertools.product(*axes)]
