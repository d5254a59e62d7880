"""Timing suite (opt-in: ``pytest tests/timing --timing``; ``python -m benchmarks.speed`` runs it
and writes the report under results/timing/).

Per setting, the median time of one test episode's inference and of one training step
(forward, backward, Adam step) for each method, the data time to assemble an episode, and the
FLOPs of each, next to float32 matmul and convolution peaks measured in the same run.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.engine.devices import seeded
from datasets import EpisodeSampler, FewShotSplit
from methods import Conv4, backbone_config, create_method

pytestmark = pytest.mark.timing

QUERIES = 15
SETTINGS = {
    "1x28x28 5w1s": ((1, 28, 28), 5, 1),
    "1x28x28 5w5s": ((1, 28, 28), 5, 5),
    "1x28x28 20w1s": ((1, 28, 28), 20, 1),
    "1x28x28 20w5s": ((1, 28, 28), 20, 5),
    "3x84x84 5w1s": ((3, 84, 84), 5, 1),
    "3x84x84 5w5s": ((3, 84, 84), 5, 5),
}
VARIANTS = {
    "protonet": ("protonet", "conv4", {}),
    "matchnet": ("matchnet", "conv4", {}),
    "relnet": ("relnet", "conv4-relnet", {}),
    "relnet-naive": ("relnet", "conv4-relnet", {"pairwise": "naive"}),
}
ROUNDS = 15


def _episode(image, n_way, k_shot):
    g = torch.Generator().manual_seed(0)
    support_x = torch.rand(n_way * k_shot, *image, generator=g)
    query_x = torch.rand(n_way * QUERIES, *image, generator=g)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    query_y = torch.arange(n_way).repeat_interleave(QUERIES)
    return support_x, support_y, query_x, query_y


def _method(variant, channels):
    name, layout, options = VARIANTS[variant]
    with seeded(0):
        return create_method(name, Conv4(channels, backbone_config(layout)), options)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_inference(benchmark, setting, variant):
    image, n_way, k_shot = SETTINGS[setting]
    method = _method(variant, image[0]).eval()
    support_x, support_y, query_x, _ = _episode(image, n_way, k_shot)

    def infer():
        with torch.inference_mode():
            return method(support_x, support_y, query_x)

    with torch.no_grad():
        benchmark.extra_info["flops"] = _flops(lambda: method(support_x, support_y, query_x))
    benchmark.extra_info.update(phase="inference", variant=variant, setting=setting)
    benchmark.group = f"{setting} inference"
    scores = benchmark.pedantic(infer, rounds=ROUNDS, warmup_rounds=2)
    assert scores.shape == (n_way * QUERIES, n_way)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_training_step(benchmark, setting, variant):
    image, n_way, k_shot = SETTINGS[setting]
    method = _method(variant, image[0]).train()
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    support_x, support_y, query_x, query_y = _episode(image, n_way, k_shot)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = method.loss(method(support_x, support_y, query_x), query_y)
        loss.backward()
        optimizer.step()
        return loss

    benchmark.extra_info["flops"] = _flops(
        lambda: method.loss(method(support_x, support_y, query_x), query_y).backward()
    )
    benchmark.extra_info.update(phase="training step", variant=variant, setting=setting)
    benchmark.group = f"{setting} training step"
    loss = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=2)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("setting", SETTINGS)
def test_episode_assembly(benchmark, setting):
    """Data time: drawing one episode from an in-memory store of uint8 images."""
    image, n_way, k_shot = SETTINGS[setting]
    classes, per_class = 100, 20
    sizes = torch.full((classes,), per_class)
    split = FewShotSplit(
        name="timing",
        images=torch.randint(0, 256, (classes * per_class, *image), dtype=torch.uint8),
        class_start=torch.arange(classes) * per_class,
        class_size=sizes,
        class_rotation=torch.arange(classes) % 4
        if image[1] == image[2]
        else torch.zeros(classes, dtype=torch.long),
        class_names=tuple(map(str, range(classes))),
    )
    sampler = EpisodeSampler(split, n_way, k_shot, min(QUERIES, per_class - k_shot), seed=0)
    counter = iter(range(10**9))
    benchmark.extra_info.update(phase="episode assembly", variant="data", setting=setting, flops=0)
    benchmark.group = f"{setting} data"
    episode = benchmark.pedantic(lambda: sampler[next(counter)], rounds=50, warmup_rounds=2)
    assert episode.support_x.shape[0] == n_way * k_shot


def test_matmul_peak(benchmark):
    """Float32 matmul throughput (BLAS), one yardstick for achieved GFLOP/s."""
    n = 2048
    a, b = torch.rand(n, n), torch.rand(n, n)
    benchmark.extra_info.update(phase="peak", variant="matmul 2048", setting="peak", flops=2 * n**3)
    benchmark.group = "peak"
    out = benchmark.pedantic(lambda: a @ b, rounds=10, warmup_rounds=2)
    assert out.shape == (n, n)


def test_convolution_peak(benchmark):
    """Float32 3x3 convolution throughput on a large channels-last batch (oneDNN): on CPUs where
    the BLAS is not tuned (MKL on AMD), this beats the matmul and is the real ceiling."""
    x = torch.rand(32, 256, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.rand(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    flops = 2 * 32 * 32 * 32 * 256 * 256 * 9
    benchmark.extra_info.update(phase="peak", variant="conv3x3 256ch", setting="peak", flops=flops)
    benchmark.group = "peak"
    with torch.inference_mode():
        out = benchmark.pedantic(
            lambda: torch.nn.functional.conv2d(x, w, padding=1), rounds=10, warmup_rounds=2
        )
    assert out.shape == (32, 256, 32, 32)
