"""The CUDA path: same scores as on the CPU, and a run on a GPU records GPU time and memory.

Skipped where CUDA is not available (CI has no GPU); run on a GPU machine with
``python -m pytest tests/benchmarks/test_cuda.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from benchmarks.engine.devices import resident_on
from benchmarks.run import main
from datasets import EpisodeSampler
from datasets.registry import LoadedDataset
from methods import Conv4, available_methods, backbone_config, create_method
from tests.conftest import numbered_split
from tests.methods.helpers import random_episode

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@pytest.fixture
def exact_float32():
    """Full float32 convolutions and matrix products, so CPU and GPU scores are comparable."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("method_name", available_methods())
def test_scores_on_the_gpu_equal_the_cpu_scores(method_name, exact_float32):
    backbone = "conv4-relnet" if method_name == "relnet" else "conv4"
    torch.manual_seed(0)
    method = create_method(method_name, Conv4(1, backbone_config(backbone)), {}).eval()
    support_x, support_y, query_x, _ = random_episode(n_way=5, k_shot=2, n_query=3)
    with torch.no_grad():
        on_cpu = method(support_x, support_y, query_x)
        on_gpu = method.cuda()(support_x.cuda(), support_y.cuda(), query_x.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-5)


def test_a_split_held_on_the_gpu_gives_the_same_episodes_built_there():
    split = numbered_split([3, 3, 3, 3], rotations=[0, 1, 2, 3], side=5)
    split = dataclasses.replace(split, mean=(0.3,), std=(0.2,))
    dataset = LoadedDataset("numbered", lambda scheme, name: split, "fingerprint", None)
    held = resident_on(dataset, torch.device("cuda")).split("any", "train")
    assert held.images.device.type == "cuda"
    for index in range(5):
        on_host = EpisodeSampler(split, 3, 1, 2, seed=0)[index]
        on_gpu = EpisodeSampler(held, 3, 1, 2, seed=0)[index]
        assert on_gpu.support_x.device.type == on_gpu.query_x.device.type == "cuda"
        assert torch.equal(on_gpu.support_x.cpu(), on_host.support_x)
        assert torch.equal(on_gpu.query_x.cpu(), on_host.query_x)


def test_a_run_on_the_gpu_records_gpu_time_and_memory(data_root, omniglot, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    monkeypatch.setenv(
        "FEWSHOT_CACHE_DIR", os.environ.get("FEWSHOT_CACHE_DIR") or str(tmp_path / "cache")
    )
    out = tmp_path / "out"
    flags = [
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cuda",
        "--shots",
        "1",
        "--ways",
        "5",
        "--train-episodes",
        "20",
        "--test-episodes",
        "10",
    ]
    assert main(flags) == 0
    records = [
        json.loads(line) for line in (out / "omniglot" / "records.jsonl").read_text().splitlines()
    ]
    assert sorted(r["method"] for r in records) == sorted(available_methods())
    for record in records:
        assert record["eval_device_clock"] == "cuda_event"
        assert record["eval_device_ms_per_episode"] > 0
        assert record["peak_memory_kind"] == "cuda_max_allocated" and record["peak_memory_mb"] > 0
        assert record["device_name"] == torch.cuda.get_device_name()
        assert 0.2 <= record["accuracy"] <= 1.0
