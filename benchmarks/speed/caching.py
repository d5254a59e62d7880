"""``python -m benchmarks.speed.caching``: each backbone's cost, and test-time feature caching
against per-episode scoring.

On miniImageNet's test split (``--data-root``), 5-way 5-shot 15-query episodes, ProtoNet with an
untrained backbone (timing does not depend on the weights), for each backbone (by default
``conv4``, ``conv4-relnet``, ``resnet12`` and ``resnet18``): its parameters and FLOPs per
image, the median time of a training step (forward, backward, Adam) on one such episode, and

- ``per-episode``: the forward pass of every episode (backbone and head), ms per episode;
- ``cached``: every distinct image of the 600 episodes embedded once (ms per image, measured on
  the images of the first ``--embed-episodes`` episodes), then the head per episode on cached
  features (ms per episode, measured on all 600).

The time of a 600-episode test on each path is then per-episode ms x 600 against embedding ms x
distinct images + head ms x 600. For Conv-4 both paths are also run in full through
``benchmarks.engine.evaluation.evaluate``, which checks the composed figures against measured
ones. Deep backbones measure the per-episode path on 10 episodes. Writes ``OUT/caching.json``
and ``OUT/caching.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.engine.allocator import keep_freed_memory
from benchmarks.engine.devices import device_name
from benchmarks.engine.evaluation import embed_episode_images, evaluate
from datasets import EpisodeSampler
from datasets.registry import dataset_spec
from methods import build_backbone, count_parameters, create_method

REPO = Path(__file__).resolve().parents[2]
EPISODES = 600
SHAPE = (5, 5, 15)


def _distinct_images(sampler: EpisodeSampler, episodes: int) -> int:
    stride = int(sampler.split.class_size.max())
    keys: set[int] = set()
    for i in range(episodes):
        classes, samples = sampler.draw(i)
        keys.update((classes.unsqueeze(1) * stride + samples).flatten().tolist())
    return len(keys)


def measure_backbone(
    sampler: EpisodeSampler, backbone: str, per_episode: int, embed_episodes: int, full: bool
) -> dict[str, Any]:
    """The figures of one backbone (see the module docstring)."""
    torch.manual_seed(0)
    model = create_method("protonet", build_backbone(backbone, 3, 84), {}).eval()
    cpu = torch.device("cpu")
    slow = evaluate(model, sampler, per_episode, cpu, False, features="per-episode")
    per_episode_ms = 1e3 * (slow.wall_seconds_per_episode + slow.data_seconds_per_episode)
    start = time.perf_counter()
    with torch.inference_mode():
        table, _ = embed_episode_images(model, sampler, embed_episodes, cpu)
    embed_ms_per_image = 1e3 * (time.perf_counter() - start) / len(table)
    # heads on cached features of all 600 episodes: time the whole cached path minus embedding
    distinct = _distinct_images(sampler, EPISODES)
    fast = evaluate(model, sampler, EPISODES, cpu, False, timed_episodes=1) if full else None
    row: dict[str, Any] = {
        "backbone": backbone,
        "params": count_parameters(model.backbone),
        "gflop_per_image": _forward_flops(model.backbone) / 1e9,
        "train_step_ms": _train_step_ms(backbone, sampler),
        "per_episode_ms": per_episode_ms,
        "per_episode_measured_on": per_episode,
        "embed_ms_per_image": embed_ms_per_image,
        "embed_measured_on_images": len(table),
        "distinct_images_600": distinct,
    }
    if fast is not None:
        assert fast.head_seconds_per_episode is not None and fast.embed_seconds is not None
        row["head_ms_per_episode"] = 1e3 * fast.head_seconds_per_episode
        row["cached_600_measured_s"] = fast.embed_seconds + EPISODES * fast.head_seconds_per_episode
        start = time.perf_counter()
        evaluate(model, sampler, EPISODES, cpu, False, features="per-episode")
        row["per_episode_600_measured_s"] = time.perf_counter() - start
    else:
        head = _head_ms(model, sampler, table)
        row["head_ms_per_episode"] = head
    row["per_episode_600_s"] = EPISODES * per_episode_ms / 1e3
    row["cached_600_s"] = (
        distinct * embed_ms_per_image + EPISODES * row["head_ms_per_episode"]
    ) / 1e3
    row["speed_up"] = row["per_episode_600_s"] / row["cached_600_s"]
    return row


def _forward_flops(backbone: torch.nn.Module) -> int:
    """FLOPs of one 3x84x84 image's forward pass (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        backbone.eval()(torch.zeros(1, 3, 84, 84))
    return counter.get_total_flops()


def _train_step_ms(backbone: str, sampler: EpisodeSampler, steps: int = 3) -> float:
    """Median ms of a ProtoNet training step (forward, backward, Adam) on a test-shaped episode
    of real images, after one warm-up step."""
    torch.manual_seed(0)
    model = create_method("protonet", build_backbone(backbone, 3, 84), {}).train()
    optimizer = torch.optim.Adam(model.parameters())
    episode = sampler[0]
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model.loss(
            model(episode.support_x, episode.support_y, episode.query_x), episode.query_y
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times[1:])[len(times[1:]) // 2]


def _head_ms(model: Any, sampler: EpisodeSampler, table: torch.Tensor) -> float:
    """ms of one episode's head on cached features (random rows of ``table``)."""
    n_way, k_shot, n_query = SHAPE
    support_y, _ = sampler.labels
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(EPISODES):
            rows = table[torch.randint(len(table), (n_way, k_shot + n_query), generator=generator)]
            model.scores_from_features(
                rows[:, :k_shot].flatten(0, 1), support_y, rows[:, k_shot:].flatten(0, 1), n_way
            )
    return 1e3 * (time.perf_counter() - start) / EPISODES


def markdown(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [
        "# Backbone cost and test-time feature caching (miniImageNet test split, 5-way 5-shot "
        "15-query, ProtoNet)",
        "",
        f"Measured on {device_name(torch.device('cpu'))}, torch "
        f"{torch.__version__}, Python {platform.python_version()} (`benchmarks/speed/caching.py`). "
        "A 600-episode test: the per-episode path runs the backbone on every episode's 100 "
        "images; the cached path embeds each distinct image once, then runs the head per "
        "episode. Projected times compose the measured parts; 'measured' columns ran all 600 "
        "episodes on both paths.",
        "",
        "| backbone | params | GFLOP/image | train step (ms) | per-episode (ms/episode) | "
        "embed (ms/image) | head (ms/episode) | distinct images in 600 episodes | 600 episodes "
        "per-episode (s) | 600 episodes cached (s) | speed-up | measured: per-episode / cached "
        "(s) |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        measured = (
            f"{r['per_episode_600_measured_s']:.0f} / {r['cached_600_measured_s']:.0f}"
            if "cached_600_measured_s" in r
            else "-"
        )
        lines.append(
            f"| {r['backbone']} | {r['params']:,} | {r['gflop_per_image']:.2f} | "
            f"{r['train_step_ms']:.0f} | {r['per_episode_ms']:.0f} "
            f"(on {r['per_episode_measured_on']}) | {r['embed_ms_per_image']:.2f} | "
            f"{r['head_ms_per_episode']:.2f} | {r['distinct_images_600']:,} | "
            f"{r['per_episode_600_s']:.0f} | {r['cached_600_s']:.0f} | {r['speed_up']:.1f}x | "
            f"{measured} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding mini-imagenet/")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--backbones", nargs="+", default=["conv4", "conv4-relnet", "resnet12", "resnet18"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embed-episodes", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "results" / "timing"))
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    data = dataset_spec("mini-imagenet").load(args.data_root, args.cache_dir, False)
    sampler = EpisodeSampler(data.split("standard", "test"), *SHAPE, seed=0)
    rows = []
    for backbone in args.backbones:
        full = backbone == "conv4"
        rows.append(
            measure_backbone(sampler, backbone, 100 if full else 10, args.embed_episodes, full)
        )
        print(json.dumps(rows[-1]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "caching.json").write_text(json.dumps(rows, indent=1) + "\n")
    report = markdown(rows, args.threads)
    (out / "caching.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
