"""Adds the torch version and thread count to the pytest-benchmark JSON."""

import torch


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["torch_version"] = torch.__version__
    output_json["torch_threads"] = torch.get_num_threads()
