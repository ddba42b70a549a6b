"""grokpath.devices.resolve_device: config device names -> torch device strings, or one clear error."""

import pytest
import torch

from grokpath.circuits.model import ModelSpec
from grokpath.circuits.tasks import make_task, vocab_size
from grokpath.circuits.train import train_models
from grokpath.config import InputError, load
from grokpath.devices import DeviceError, resolve_device

HAS_CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
with_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@pytest.mark.parametrize("name", ["cpu", "cpu:0", "meta"])
def test_explicit_devices_pass_through(name):
    assert resolve_device(name) == name


@no_cuda
def test_auto_is_cpu_without_cuda():
    assert resolve_device("auto") == "cpu"


@with_cuda
def test_auto_is_cuda_with_cuda():
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_missing_cuda_is_one_line_naming_the_key(name):
    with pytest.raises(DeviceError) as err:
        resolve_device(name, "traces.device")
    assert str(err.value) == f"traces.device is '{name}' but no CUDA device is available"


@with_cuda
def test_cuda_index_beyond_the_machine():
    n = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=rf"^evaluation.device is 'cuda:{n}' but this machine has {n} CUDA device"):
        resolve_device(f"cuda:{n}", "evaluation.device")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_not_a_device_name(name):
    with pytest.raises(DeviceError) as err:
        resolve_device(name, "data.contamination.device")
    assert str(err.value) == f"data.contamination.device '{name}' is not a device name (use auto, cpu, cuda or cuda:N)"
    assert isinstance(err.value, InputError)  # a user's error: grokpath.step reports it as one line


@no_cuda
def test_circuits_training_names_its_key():
    cfg = load("config/config.yaml")["circuits"]["train"]
    cfg.update(steps=2, n_log_points=2, device="cuda")
    data = make_task("add", 7, [0], 20)
    with pytest.raises(DeviceError, match=r"^circuits\.train\.device is 'cuda' but no CUDA device is available$"):
        train_models(data, ModelSpec(P=7, vocab=vocab_size(7), d_h=4), [0], cfg)
