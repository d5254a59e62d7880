"""Devices: the warning for a compute precision the hardware only emulates."""

from __future__ import annotations

import pytest
import torch

from benchmarks.engine import devices
from benchmarks.engine.devices import native_bf16, precision_warning, resolve_precision

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


def test_native_bf16_follows_the_gpu_and_is_false_where_torch_cannot_tell(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert native_bf16(torch.device("cuda")) is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # before Ampere
    assert native_bf16(torch.device("cuda")) is False

    class WithoutOneDNN:
        """``torch.ops.mkldnn`` of a build without oneDNN: it has no such operator."""

    monkeypatch.setattr(torch.ops, "mkldnn", WithoutOneDNN())
    assert native_bf16(CPU) is False


def test_precision_auto_is_bf16_exactly_where_it_is_native(monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda device: device.type == "cuda")
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(devices, "native_bf16", lambda device: True)  # AVX512-BF16 or AMX
    assert resolve_precision("auto", CPU) == "bf16"


def test_an_explicit_precision_is_kept_and_an_unknown_one_named():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="fp16.*auto, fp32, bf16"):
        resolve_precision("fp16", CPU)
