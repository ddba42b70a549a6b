"""The one place that turns a config's device name into a torch device string, and sets a job's CPU threads.

``auto`` picks ``cuda`` when a CUDA device is available, else ``cpu``. Any other name
(``cpu``, ``cuda``, ``cuda:1``, ``mps``) is checked against what this machine has, so a
job fails at its start with one line naming the config key, not later inside torch.
"""

from __future__ import annotations

from grokpath.config import InputError


class DeviceError(InputError):
    """The configured device does not exist on this machine (or is not a torch device)."""


def use_threads(threads: int | None) -> None:
    """Run torch's CPU ops on the job's ``threads`` (None or 0: leave torch's own choice)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def resolve_device(name: str, key: str = "device") -> str:
    """``name`` as a torch device string ("cpu", "cuda", "cuda:1", ...); ``key`` names the config field in errors."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"{key} '{name}' is not a device name (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key} is '{name}' but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{key} is '{name}' but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{key} is '{name}' but no MPS device is available")
    return name
