"""Keeping freed memory in the process changes where memory comes from, never the numbers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.engine.allocator import ENV, keep_freed_memory

REPO = Path(__file__).resolve().parents[3]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

#: A few seeded training steps; prints the losses exactly.
STEPS = """
import torch
from benchmarks.engine.allocator import keep_freed_memory
from methods import Conv4, create_method
from tests.methods.helpers import random_episode
print(keep_freed_memory().mode)
torch.manual_seed(0)
torch.set_num_threads(1)
method = create_method("protonet", Conv4(3, image_size=42), {})
optimizer = torch.optim.Adam(method.parameters())
for seed in range(3):
    sx, sy, qx, qy = random_episode(5, 2, 3, image=(3, 42, 42), seed=seed)
    loss = method.loss(method(sx, sy, qx), qy)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(loss.item().hex())
"""


def _run(malloc: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if malloc is not None:
        env[ENV] = malloc
    done = subprocess.run(
        [sys.executable, "-c", STEPS], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_system_defaults_are_kept_when_asked(monkeypatch):
    monkeypatch.setenv(ENV, "system")
    setting = keep_freed_memory()
    assert (setting.mode, setting.why) == ("system", f"{ENV}=system")


@pytest.mark.skipif(not GLIBC, reason="mallopt settings apply to glibc only")
def test_training_gives_bit_identical_losses_with_either_setting():
    kept, system = _run(None), _run("system")
    assert kept[0] == "keep-freed" and system[0] == "system"
    assert kept[1:] == system[1:] and len(kept) == 4
