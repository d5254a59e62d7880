"""Devices: the warning for a compute precision the hardware only emulates."""

from __future__ import annotations

import torch

from benchmarks.engine import devices
from benchmarks.engine.devices import native_bf16, precision_warning

CPU = torch.device("cpu")


def test_bf16_on_a_cpu_without_native_bfloat16_is_warned_about_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    monkeypatch.setattr(devices, "cpu_model", lambda: "Some CPU")
    warning = precision_warning(CPU, "bf16")
    assert warning is not None
    assert "Some CPU" in warning and "AVX512-BF16" in warning
    assert "drop --precision bf16" in warning


def test_bf16_where_it_is_native_and_fp32_anywhere_are_not_warned_about(monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda device: True)
    assert precision_warning(CPU, "bf16") is None
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    assert precision_warning(CPU, "fp32") is None


def test_native_bf16_is_true_on_cuda_and_false_where_torch_cannot_tell(monkeypatch):
    assert native_bf16(torch.device("cuda")) is True

    class WithoutOneDNN:
        """``torch.ops.mkldnn`` of a build without oneDNN: it has no such operator."""

    monkeypatch.setattr(torch.ops, "mkldnn", WithoutOneDNN())
    assert native_bf16(CPU) is False
