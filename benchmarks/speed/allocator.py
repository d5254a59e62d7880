"""``python -m benchmarks.speed.allocator``: the C library's allocator settings, before and after.

Times training steps and test episodes on miniImageNet's shapes (3x84x84 images, the
``paper-cpu`` and ``quick`` episode shapes, each method's miniImageNet recipe) in child
processes that differ only in ``FEWSHOT_MALLOC``: ``system`` (glibc's defaults) and unset
(:func:`benchmarks.engine.allocator.keep_freed_memory`). The children run alternately, so both
settings see the same machine state, and each reports the median time of every step together
with the user and system CPU seconds and the page faults of the whole measurement. Writes
``OUT/allocator.json`` and ``OUT/allocator.md``.

Inputs are random tensors of the real shapes (a step's cost does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.engine.allocator import ENV, keep_freed_memory
from benchmarks.engine.devices import device_name
from methods import Conv4, backbone_config, create_method

REPO = Path(__file__).resolve().parents[2]
IMAGE = (3, 84, 84)

#: (label, method, backbone, options, phase, n_way, k_shot, n_query)
SHAPES: tuple[tuple[str, str, str, dict[str, Any], str, int, int, int], ...] = (
    ("protonet train 5w5s15q (paper-cpu)", "protonet", "conv4", {}, "train", 5, 5, 15),
    ("protonet train 20w5s5q (quick)", "protonet", "conv4", {}, "train", 20, 5, 5),
    (
        "relnet train 5w5s10q (paper-cpu)",
        "relnet",
        "conv4-relnet",
        {"relation_layout": "unpadded"},
        "train",
        5,
        5,
        10,
    ),
    (
        "matchnet+FCE train 5w5s15q (paper-cpu)",
        "matchnet",
        "conv4",
        {"fce": True},
        "train",
        5,
        5,
        15,
    ),
    ("protonet test 5w5s15q", "protonet", "conv4", {}, "test", 5, 5, 15),
    (
        "relnet test 5w5s15q",
        "relnet",
        "conv4-relnet",
        {"relation_layout": "unpadded"},
        "test",
        5,
        5,
        15,
    ),
    ("matchnet+FCE test 5w5s15q", "matchnet", "conv4", {"fce": True}, "test", 5, 5, 15),
)


def _step(method: Any, phase: str, n_way: int, k_shot: int, n_query: int) -> Callable[[], None]:
    """One training step (forward, loss, backward, Adam) or one test episode's forward pass."""
    support_x = torch.randn(n_way * k_shot, *IMAGE)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    query_x = torch.randn(n_way * n_query, *IMAGE)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    if phase == "test":
        method.eval()

        def test() -> None:
            with torch.no_grad():
                method(support_x, support_y, query_x)

        return test
    method.train()
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)

    def train() -> None:
        loss = method.loss(method(support_x, support_y, query_x), query_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return train


def worker(rounds: int, threads: int) -> dict[str, Any]:
    """Measure every shape in this process (allocator as ``FEWSHOT_MALLOC`` says)."""
    setting = keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    medians = {}
    for label, name, backbone, options, phase, n_way, k_shot, n_query in SHAPES:
        method = create_method(name, Conv4(3, backbone_config(backbone), image_size=84), options)
        step = _step(method, phase, n_way, k_shot, n_query)
        step()  # warm-up
        times = []
        for _ in range(rounds):
            begin = time.perf_counter()
            step()
            times.append(time.perf_counter() - begin)
        medians[label] = 1e3 * statistics.median(times)
    after = resource.getrusage(resource.RUSAGE_SELF)
    profile = _profile(*SHAPES[0][1:])
    return {
        "profile": profile,
        "malloc": setting.mode,
        "why": setting.why,
        "median_ms": medians,
        "wall_s": time.perf_counter() - start,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }


def _profile(
    name: str,
    backbone: str,
    options: dict[str, Any],
    phase: str,
    n_way: int,
    k_shot: int,
    n_query: int,
    steps: int = 3,
    top: int = 8,
) -> list[dict[str, Any]]:
    """The operators taking most of ``steps`` steps' CPU time (torch.profiler, self time)."""
    from torch.profiler import ProfilerActivity, profile

    method = create_method(name, Conv4(3, backbone_config(backbone), image_size=84), options)
    step = _step(method, phase, n_way, k_shot, n_query)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps} for e in events[:top]
    ]


def measure(rounds: int, threads: int, repeats: int) -> list[dict[str, Any]]:
    """Run the worker ``repeats`` times per setting, alternating system / keep-freed."""
    runs = []
    for _ in range(repeats):
        for mode in ("system", "keep-freed"):
            env = {k: v for k, v in os.environ.items() if k != ENV}
            if mode == "system":
                env[ENV] = "system"
            command = [
                sys.executable,
                "-m",
                "benchmarks.speed.allocator",
                "--worker",
                f"--rounds={rounds}",
                f"--threads={threads}",
            ]
            done = subprocess.run(
                command, cwd=REPO, env=env, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{mode}: {runs[-1]['wall_s']:.0f} s", file=sys.stderr)
    return runs


def markdown(runs: list[dict[str, Any]], threads: int, rounds: int) -> str:
    """The report: per shape, the median over runs of each setting and their ratio."""
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_mode.setdefault(run["malloc"], []).append(run)
    system, kept = by_mode.get("system", []), by_mode.get("keep-freed", [])
    if not system or not kept:
        return "Only one allocator setting could be measured on this machine.\n"
    lines = [
        "# glibc's allocator defaults vs keeping freed memory (miniImageNet shapes)",
        "",
        f"Measured on {device_name(torch.device('cpu'))}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; median of {rounds} "
        f"steps per shape in each of {len(system)} child processes per setting, run "
        "alternately (see `benchmarks/speed/allocator.py`). `system`: `FEWSHOT_MALLOC=system`; "
        "`keep-freed`: the default of every run since this change "
        "(`benchmarks/engine/allocator.py`).",
        "",
        "| step | system (ms) | keep-freed (ms) | speed-up |",
        "|:--|--:|--:|--:|",
    ]
    for label, *_ in SHAPES:
        a = statistics.median(run["median_ms"][label] for run in system)
        b = statistics.median(run["median_ms"][label] for run in kept)
        lines.append(f"| {label} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")
    lines += [
        "",
        "| whole measurement | system | keep-freed |",
        "|:--|--:|--:|",
    ]
    for key, unit in (("wall_s", "s"), ("user_s", "s"), ("system_s", "s"), ("minor_faults", "")):
        a = statistics.median(run[key] for run in system)
        b = statistics.median(run[key] for run in kept)
        name = key.replace("_s", "").replace("_", " ") + (f" ({unit})" if unit else "")
        lines.append(f"| {name} | {a:,.1f} | {b:,.1f} |")
    for mode, mode_runs in (("system", system), ("keep-freed", kept)):
        profile = mode_runs[-1].get("profile")
        if not profile:
            continue
        lines += [
            "",
            f"Where the time of a `{SHAPES[0][0]}` step goes with `{mode}` (torch.profiler, "
            "operators with the most self CPU time, per step):",
            "",
            "| operator | self CPU ms per step |",
            "|:--|--:|",
            *(f"| `{row['op']}` | {row['self_ms_per_step']:.1f} |" for row in profile),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed steps per shape (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="child runs per setting")
    parser.add_argument("--out", default=str(REPO / "results" / "timing"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.rounds, args.threads)))
        return 0
    runs = measure(args.rounds, args.threads, args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "allocator.json").write_text(json.dumps(runs, indent=1) + "\n")
    report = markdown(runs, args.threads, args.rounds)
    (out / "allocator.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
