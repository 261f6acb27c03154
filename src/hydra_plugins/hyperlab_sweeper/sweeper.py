"""The `hyperlab` Hydra sweeper: an Optuna study run by workers that ask, train and tell.

Hydra imports every module here at start-up (without registering it, so no dataclasses
with postponed annotations): this one stays thin and delegates to hyperlab.search.sweeper.
"""

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

ConfigStore.instance().store(
    group="hydra/sweeper",
    name="hyperlab",
    node={"_target_": "hydra_plugins.hyperlab_sweeper.sweeper.HyperlabSweeper"},
    provider="hyperlab",
)


class HyperlabSweeper(Sweeper):
    """Creates or loads the study, then launches `sweep.workers` worker jobs."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hyperlab.search.sweeper import work

        self.config = config
        # The launcher runs workers, not single trainings: give it the worker loop.
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=work, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from hyperlab.search.sweeper import sweep

        assert self.config is not None
        return sweep(self.launcher, self.config, arguments)
