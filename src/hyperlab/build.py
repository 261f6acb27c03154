"""Builds what a config selects: the parts of a run, and a study's sampler and pruner.

The one caller of Hydra's instantiate() in hyperlab, and only on a node whose every
`_target_` passed the allowlist (hyperlab.allowlist: checked again here, even if validation
ran). Imports no torch until a run's parts are built: the sweeper builds samplers too."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.errors import InstantiationException

from hyperlab.allowlist import check_node
from hyperlab.errors import DataError, HyperlabError
from hyperlab.schema import LABELS, Config

if TYPE_CHECKING:
    import optuna
    import torch
    from torch.optim import Optimizer

    from hyperlab.augment import Augment
    from hyperlab.data import Splits
    from hyperlab.models import MLP, Regularization


@dataclass
class Parts:
    data: Splits
    model: MLP
    optimizer: Optimizer
    schedule: Callable[[int], float]
    regularization: Regularization
    augment: Augment | None = None  # training mini-batches only; None: as they are


def instantiate(node: Any, *, allow: Sequence[str] = (), **kwargs: Any) -> Any:
    """Hydra's instantiate() on a node whose every `_target_` passed the allowlist. `allow`:
    the allow_targets of a config built from the live command line (a sweep's worker has
    validated nothing yet)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=True)  # what is checked is what is built
    # Only a flat node of plain values is kept as a partial: a nested node's objects would
    # be shared by every call.
    if not _flat(node) or kwargs.get("_partial_") is False:
        return _instantiated(node, allow, kwargs)
    try:
        key = json.dumps([node, list(allow)], sort_keys=True)
    except TypeError:  # not plain data: instantiated as it is
        return _instantiated(node, allow, kwargs)
    partial = _partial(key)
    if node.get("_partial_") or kwargs.pop("_partial_", False):
        return functools.partial(partial, **kwargs) if kwargs else partial
    return partial(**kwargs)


def _flat(node: Any) -> bool:
    """A dict whose values are plain values or lists of them: no node inside."""
    return isinstance(node, dict) and not any(
        isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict | list) for x in v))
        for v in node.values()
    )


def _instantiated(node: Any, allow: Sequence[str], kwargs: Mapping[str, Any]) -> Any:
    from hydra.utils import instantiate as hydra_instantiate

    check_node(node, allow)
    return hydra_instantiate(node, **kwargs)


@functools.lru_cache(maxsize=256)
def _partial(key: str) -> functools.partial[Any]:
    """The node (JSON `key`) instantiated by Hydra as a partial, kept: a stack of 32 trials
    builds six nodes a member, and Hydra turns each into an OmegaConf config first (about a
    millisecond each), while calling the partial costs microseconds. Each call makes new
    objects, as instantiate() would; the arguments are the node's plain values."""
    node, allow = json.loads(key)
    return _instantiated({**node, "_partial_": True}, allow, {})  # type: ignore[no-any-return]


def _instantiate(node: Mapping[str, Any], **kwargs: Any) -> Any:
    """instantiate(), and a HyperlabError raised by the target reaches the user unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, HyperlabError):
            raise e.__cause__ from None
        raise


def build_data(dataset: Mapping[str, Any], device: torch.device | None = None) -> Splits:
    """Load the data set, check it, split it and standardize it on the training split.

    The result is kept per process for the same settings: a sweep's worker trains many
    trials on the same splits (the tensors are never changed in place). A file's size and
    modification time are part of the key, so an edited file is read again. With `device`,
    the splits are moved there once and kept there."""
    key = json.dumps(dataset, sort_keys=True, default=str)
    path = dataset.get("path")
    if isinstance(path, str) and Path(path).expanduser().is_file():
        stat = Path(path).expanduser().stat()
        key += f"|{stat.st_size}|{stat.st_mtime_ns}"
    splits = _build_data(key)
    return splits if device is None or device.type == "cpu" else _moved(splits, key, device)


@functools.lru_cache(maxsize=4)
def _moved(splits: Splits, key: str, device: torch.device) -> Splits:
    return splits.to(device)


@functools.lru_cache(maxsize=4)
def _build_data(key: str) -> Splits:
    dataset = json.loads(key.split("|", 1)[0])
    if dataset.get("path"):  # a user's file: read and split it each time
        return _split_data(dataset)
    from hyperlab.data_cache import cached

    return cached(dataset, lambda: _split_data(dataset))


# Where dev and test come from files of their own: not arguments of the loader.
SPLIT_FILES = ("dev_path", "test_path")


def _split_data(dataset: dict[str, Any]) -> Splits:
    from hyperlab.data import check, content_hash
    from hyperlab.splitting import mismatched, split_standardize

    loader = {k: v for k, v in dataset.items() if k != "split" and k not in SPLIT_FILES}
    x, y, classes = check(*_load(loader))
    if not dataset.get("dev_path"):
        splits = split_standardize(x, y, classes, dataset["split"])
        return dataclasses.replace(splits, sha256=content_hash(x, y, classes))
    files = [check(*_load({**loader, "path": dataset[k]})) for k in SPLIT_FILES]
    splits = mismatched((x, y, classes), files[0], files[1], dataset["split"])
    h = [content_hash(*f) for f in [(x, y, classes), *files]]
    return dataclasses.replace(splits, sha256=hashlib.sha256("".join(h).encode()).hexdigest())


def _load(loader: dict[str, Any]) -> tuple[Any, Any]:
    try:
        return _instantiate(loader)  # type: ignore[no-any-return]
    except HyperlabError:
        raise
    except Exception as e:  # a generator or reader rejecting its arguments or its input
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        raise DataError(
            f"the data set could not be loaded ({loader.get('_target_')}): {cause}",
            "check the dataset.* settings",
        ) from None


def build_regularization(config: Config) -> Regularization:
    """L2's lambda and dropout's keep_prob: read here alone (the model takes keep_prob, the
    training loop l2)."""
    return _instantiate(config.regularization)  # type: ignore[no-any-return]


def build_augment(config: Config, n_features: int) -> Augment | None:
    """The training mini-batches' transform (conf/augment), or None for none (and for a
    setting that leaves the batch as it is): the loop then runs exactly as without."""
    if not isinstance(config.augment, Mapping):  # a config typed without the group
        return None
    return _instantiate(_unlabelled(config, "augment"), _partial_=True)(n_features=n_features)  # type: ignore[no-any-return]


def build_model(config: Config, n_features: int, n_classes: int) -> MLP:
    """The config's MLP, with its normalization layers and dropout, initialized."""
    return _model(config, n_features, n_classes, build_regularization(config))


def _model(config: Config, n_features: int, n_classes: int, regularization: Regularization) -> MLP:
    # Called here, not through instantiate(), which would turn the layer factory into a
    # config node.
    model: MLP = _instantiate(config.model, _partial_=True)(
        n_features=n_features,
        n_classes=n_classes,
        normalization=_instantiate(_unlabelled(config, "normalization")),
        keep_prob=regularization.keep_prob,
    )
    _instantiate(_unlabelled(config, "init"))(model)
    return model


def _unlabelled(config: Config, group: str) -> dict[str, Any]:
    """The group's node without its label (schema.LABELS), which names the option for the
    record and is no argument of the function."""
    return {k: v for k, v in getattr(config, group).items() if k != LABELS.get(group)}


def build(config: Config) -> Parts:
    """Data, model (initialized), optimizer over the model's parameters, lr schedule, the
    regularization (its l2 is the training loop's) and the training batches' augmentation."""
    from hyperlab.devices import resolve
    from hyperlab.models import seed_dropout

    device = resolve(config.device)
    data = build_data(config.dataset, device)
    regularization = build_regularization(config)
    model = _model(config, data.n_features, data.n_classes, regularization).to(device)
    seed_dropout(model, config.seed)  # its own stream, as a stacked member's
    optimizer = _instantiate(config.optimizer)(model.parameters())
    schedule = _instantiate(config.schedule)
    augment = build_augment(config, data.n_features)
    return Parts(data, model, optimizer, schedule, regularization, augment)


def build_sampler(
    node: Mapping[str, Any], allow: Sequence[str] = (), **kwargs: Any
) -> optuna.samplers.BaseSampler:
    """A study's sampler from its config node (`scales`, hyperlab's own setting, left out),
    with `kwargs` (its seed, a grid's search space...)."""
    sampler = {k: v for k, v in node.items() if k != "scales"}
    return instantiate(sampler, allow=allow)(**kwargs)  # type: ignore[no-any-return]


def build_pruner(node: Mapping[str, Any], allow: Sequence[str] = ()) -> optuna.pruners.BasePruner:
    """A study's pruner from its config node."""
    return instantiate(node, allow=allow)  # type: ignore[no-any-return]
