"""The `device` setting: auto, the CPU, and devices the machine does not have."""

from __future__ import annotations

import pytest
import torch

from hyperlab import devices
from hyperlab.errors import ConfigError


def test_auto_is_the_first_gpu_or_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "available", lambda: ["cpu"])
    assert devices.resolve("auto") == torch.device("cpu")
    monkeypatch.setattr(devices, "available", lambda: ["cpu", "cuda:0", "cuda:1"])
    assert devices.resolve("auto") == torch.device("cuda:0")
    assert devices.resolve("cuda") == torch.device("cuda:0")
    assert devices.resolve("cuda:1") == torch.device("cuda:1")


def test_the_cpu_is_always_there() -> None:
    assert "cpu" in devices.available()
    assert devices.resolve("cpu") == torch.device("cpu")


@pytest.mark.parametrize("setting", ["cuda:7", "mps"])
def test_a_device_the_machine_lacks_is_refused_with_what_it_has(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setattr(devices, "available", lambda: ["cpu", "cuda:0"])
    with pytest.raises(ConfigError) as e:
        devices.resolve(setting)
    assert f"device={setting}" in e.value.problem
    assert "it has cpu, cuda:0" in e.value.problem


@pytest.mark.parametrize("setting", ["gpu", "cuda0", "CPU", ""])
def test_a_misspelled_device_is_refused(setting: str) -> None:
    with pytest.raises(ConfigError, match="auto, cpu, cuda, cuda:N or mps"):
        devices.resolve(setting)


def test_threads_default_to_one_and_to_the_cores_split_for_a_large_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hyperlab.schema import Config

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    config = Config()
    big = devices.SHARED_WORK + 1
    assert devices.threads(config) == 1
    assert devices.threads(config, work=devices.SHARED_WORK) == 1  # the moons net's stack
    assert devices.threads(config, work=big) == 8
    config.sweep.workers = 3
    assert devices.threads(config, work=big) == 2
    config.sweep.workers = 16
    assert devices.threads(config, work=big) == 1
    config.threads = 4
    assert devices.threads(config) == devices.threads(config, work=big) == 4
