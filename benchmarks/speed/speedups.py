"""``python -m benchmarks.speed.speedups``: measure CPU/GPU speed-up options honestly.

For relnet and protonet (the quick-preset models trained by ``benchmarks.run``, loaded from their
checkpoints under ``--results``), at 20-way 5-shot with 15 queries per class on Omniglot, times
one test-episode inference and one training step for:

- ``default (channels_last)``: float32, the backbone in channels-last memory format (the default),
  the default thread count;
- ``contiguous NCHW``: the same model in the contiguous (NCHW) format;
- ``bf16 autocast``: ``torch.autocast`` with bfloat16;
- ``torch.compile``: the compiled model (compile time reported separately);
- ``1 thread``: ``torch.set_num_threads(1)``.

Each option's test accuracy over the same 200 real test episodes is reported next to the
baseline's, so a faster option that loses accuracy is visible. Writes
``results/timing/speedups.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.engine.devices import cpu_model, resolve_device
from benchmarks.engine.group import build_method
from benchmarks.engine.timing import median_ms
from benchmarks.experiment.cells import Cell
from benchmarks.experiment.presets import preset
from benchmarks.records.store import RecordStore
from datasets import EpisodeSampler
from datasets.paths import DatasetNotFoundError
from datasets.registry import dataset_spec

REPO = Path(__file__).resolve().parents[2]
N_WAY, K_SHOT, QUERIES = 20, 5, 15


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _trained(method: str, results: Path, device: torch.device):
    """The quick-preset model trained for 5-shot (from its checkpoint), or a fresh one."""
    recipe = preset("quick").recipe(method, N_WAY, K_SHOT)
    cell = Cell(
        method, "omniglot", "vinyals", 5, K_SHOT, QUERIES, 600, 0, "quick", str(device), recipe
    )
    model = build_method(cell, (1, 28, 28))
    checkpoint = RecordStore(results / "omniglot").load_checkpoint(cell.training_hash)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
    return model.to(device), checkpoint is not None


def measure(
    results: Path, rounds: int, accuracy_episodes: int, device: torch.device, data_root: str | None
) -> list[dict]:
    data = dataset_spec("omniglot").load(data_root, None, False)
    test = EpisodeSampler(data.split("vinyals", "test"), N_WAY, K_SHOT, QUERIES, seed=0)
    episodes = [test[i].to(device) for i in range(accuracy_episodes)]
    rows = []
    for method in ("relnet", "protonet"):
        options: dict[str, dict[str, Any]] = {
            "default (channels_last)": {},
            "contiguous NCHW": {"contiguous": True},
            "bf16 autocast": {"autocast": torch.bfloat16},
            "torch.compile": {"compile": True},
            "1 thread": {"threads": 1},
        }
        for label, option in options.items():
            model, trained = _trained(method, results, device)
            if option.get("contiguous"):
                model.backbone.channels_last = False
                model = model.to(memory_format=torch.contiguous_format)
            forward = model
            compile_s = None
            if option.get("compile"):
                start = time.perf_counter()
                forward = torch.compile(model)
                first = episodes[0]
                with torch.inference_mode():
                    model.eval()
                    forward(first.support_x, first.support_y, first.query_x)
                compile_s = time.perf_counter() - start
            autocast = (
                torch.autocast(device.type, dtype=option["autocast"])
                if option.get("autocast")
                else contextlib.nullcontext()
            )
            with _threads(option.get("threads")):
                model.eval()
                correct = []
                with torch.inference_mode(), autocast:
                    for e in episodes:
                        scores = forward(e.support_x, e.support_y, e.query_x)
                        correct.append((scores.argmax(1) == e.query_y).float().mean().item())
                    sx, sy, qx = episodes[0].support_x, episodes[0].support_y, episodes[0].query_x
                    infer_ms = median_ms(lambda: forward(sx, sy, qx), rounds, device)
                model.train()
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
                qy = episodes[0].query_y

                def step():
                    optimizer.zero_grad(set_to_none=True)
                    with autocast:
                        loss = model.loss(forward(sx, sy, qx), qy)
                    loss.backward()
                    optimizer.step()

                train_ms = median_ms(step, rounds, device)
            rows.append(
                {
                    "method": method,
                    "option": label,
                    "inference_ms": infer_ms,
                    "train_step_ms": train_ms,
                    "accuracy_%": 100 * sum(correct) / len(correct),
                    "trained_model": trained,
                    "compile_s": compile_s,
                }
            )
    return rows


def markdown(rows: list[dict], device: torch.device, accuracy_episodes: int) -> str:
    frame = pd.DataFrame(rows)
    base = frame[frame.option == "default (channels_last)"].set_index("method")
    frame["inference_speedup"] = frame.apply(
        lambda r: base.loc[r.method, "inference_ms"] / r.inference_ms, axis=1
    )
    frame["train_speedup"] = frame.apply(
        lambda r: base.loc[r.method, "train_step_ms"] / r.train_step_ms, axis=1
    )
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return "\n".join(
        [
            "# Speed-up options",
            "",
            "Generated by `python -m benchmarks.speed.speedups`; never edited by hand. Omniglot 20-way 5-shot, "
            f"{QUERIES} queries per class; median wall ms of one test-episode inference and one training "
            f"step; accuracy over the same {accuracy_episodes} real test episodes with the quick-preset "
            f"5-shot models. Device: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads "
            "by default.",
            "",
            frame.round(3).to_markdown(index=False),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.speedups", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--results",
        default=str(REPO / "results"),
        help="where benchmarks.run put its records and checkpoints",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--accuracy-episodes", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--data-root", help="folder holding omniglot/ (default: $FEWSHOT_DATA_ROOT, else ./data)"
    )
    parser.add_argument("--out", default=str(REPO / "results" / "timing"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    try:
        rows = measure(
            Path(args.results), args.rounds, args.accuracy_episodes, device, args.data_root
        )
    except DatasetNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speedups.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, device, args.accuracy_episodes)
    (out / "speedups.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
