"""Honest timers: CUDA work is timed with events after synchronisation, CPU work by both clocks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class StepTimer:
    """Accumulates the time of repeated steps on one device.

    On CUDA, ``device_seconds`` is GPU time between CUDA events recorded around each step and read
    after a synchronisation; on CPU it is the process CPU time (all threads). ``wall_seconds`` is
    wall-clock time in both cases, taken after synchronising.
    """

    device: torch.device
    wall_seconds: float = 0.0
    device_seconds: float = 0.0
    steps: int = 0
    _events: list = field(default_factory=list)

    @property
    def device_clock(self) -> str:
        """What ``device_seconds`` measures: ``"cuda_event"`` or ``"process_cpu"``."""
        return "cuda_event" if self.device.type == "cuda" else "process_cpu"

    def __enter__(self) -> StepTimer:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append(start)
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            torch.cuda.synchronize(self.device)
            self.device_seconds += self._events.pop().elapsed_time(end) / 1000.0
        else:
            self.device_seconds += time.process_time() - self._cpu
        self.wall_seconds += time.perf_counter() - self._wall
        self.steps += 1


def median_ms(
    fn: Callable[[], object], rounds: int, device: torch.device | None = None, warmup: int = 2
) -> float:
    """Median wall milliseconds of ``fn()`` over ``rounds`` calls after ``warmup`` calls,
    synchronising CUDA around each call when ``device`` is a GPU."""
    cuda = device is not None and device.type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
