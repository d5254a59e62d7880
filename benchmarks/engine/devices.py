"""Choosing the device: the same code path for CPU and GPU."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch

from benchmarks.experiment.config import PRECISIONS
from datasets import FewShotSplit
from datasets.registry import LoadedDataset

#: A split moves into GPU memory when its images take at most this share of the free memory.
RESIDENT_SHARE = 0.25


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:1"`` as given.

    Raises:
        ValueError: an unknown device name, or a CUDA device that this machine lacks.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda was requested but CUDA is not available; use --device cpu or auto"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0; use cuda:0 .. cuda:{torch.cuda.device_count() - 1} or auto"
        )
    return device


def resident_on(dataset: LoadedDataset, device: torch.device) -> LoadedDataset:
    """``dataset`` whose splits are held in ``device``'s memory, so that episodes are gathered and
    converted to float there (see :meth:`datasets.FewShotSplit.to`); on the CPU, ``dataset``.

    Each split moves when first asked for, and only when its images take at most
    :data:`RESIDENT_SHARE` of the GPU's free memory (miniImageNet's training split: 813 MB);
    a larger one stays in host memory and is read as before.
    """
    if device.type != "cuda":
        return dataset
    held: dict[tuple[str, str], FewShotSplit] = {}

    def split(scheme: str, name: str) -> FewShotSplit:
        if (scheme, name) not in held:
            original = dataset.split(scheme, name)
            free, _ = torch.cuda.mem_get_info(device)
            fits = original.images.numel() <= RESIDENT_SHARE * free
            held[scheme, name] = original.to(device) if fits else original
        return held[scheme, name]

    return dataclasses.replace(dataset, split=split)


def device_name(device: torch.device) -> str:
    """A readable name of the hardware behind ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    import platform

    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The compute-precision context: nothing for ``"fp32"``, bfloat16 autocast for ``"bf16"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA device that supports it (Ampere
    and later), and a CPU with AVX512-BF16 or AMX (oneDNN's test); elsewhere it is emulated."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """The compute precision a run asks for, as it will run on ``device``: ``"auto"`` is
    ``"bf16"`` where ``device`` computes bfloat16 natively (:func:`native_bf16`) and ``"fp32"``
    elsewhere; ``"fp32"`` and ``"bf16"`` are taken as given.

    Raises:
        ValueError: an unknown precision.
    """
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; valid: auto, {', '.join(PRECISIONS)}")
    return name


def precision_warning(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` will likely be slower than fp32 on ``device``, or ``None``."""
    if precision != "bf16" or native_bf16(device):
        return None
    return (
        f"--precision bf16 on {cpu_model()}, a CPU without native bfloat16 (AVX512-BF16 or "
        "AMX): bfloat16 is emulated there and a training step is usually several times slower "
        "than in fp32; drop --precision bf16 unless you measured otherwise (python -m "
        "benchmarks.speed.speedups)"
    )


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators inside the block and restore them afterwards.

    Module initialisation draws from the global generator; this keeps it reproducible without
    leaving global state changed.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
