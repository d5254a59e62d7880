"""The learn2learn build script (offline parts) and safe loading of saved files."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _script():
    path = REPO / "scripts" / "build_learn2learn.py"
    spec = importlib.util.spec_from_file_location("build_learn2learn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETUP_EXCERPT = """\
    setup_requires=['cython>=0.28.5', ],
    install_requires=[
        'numpy>=1.15.4',
        'gym>=0.14.0',
        'requests',
        'gsutil',
        'tqdm',
        'qpth>=0.0.15',
    ],
"""


def test_patch_drops_only_the_unresolvable_requirements():
    patched = _script().patch_setup(SETUP_EXCERPT)
    assert "qpth" not in patched and "gsutil" not in patched and "setup_requires" not in patched
    assert "'gym>=0.14.0'," in patched and "'tqdm'," in patched


def test_patch_refuses_an_unknown_setup_file():
    script = _script()
    with pytest.raises(script.BuildError, match="not the one this script knows"):
        script.patch_setup(SETUP_EXCERPT.replace("'qpth>=0.0.15',", ""))


def test_existing_wheel_for_this_python_is_reused(tmp_path, capsys):
    script = _script()
    tag = script.python_tag()
    wheel = tmp_path / f"learn2learn-{script.VERSION}-{tag}-{tag}-linux_x86_64.whl"
    wheel.write_bytes(b"")
    (tmp_path / f"learn2learn-{script.VERSION}-cp27-cp27mu-linux_x86_64.whl").write_bytes(b"")
    assert script.build(tmp_path) == wheel  # no download, no compiler
    assert "reusing" in capsys.readouterr().out


def test_setup_stamp_covers_the_build_script():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "scripts/build_learn2learn.py | sha256sum" in setup
    assert "--find-links" in setup and "l2l" in setup


def test_every_torch_load_in_the_project_is_weights_only():
    """Pickled checkpoints run code when loaded; ``weights_only=True`` loads tensors only."""
    calls = []
    for folder in ("benchmarks", "datasets", "methods", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
                calls.append((path.name, match.group(1)))
    assert calls, "expected at least the checkpoint and Omniglot cache loads"
    assert all("weights_only=True" in arguments for _, arguments in calls), calls


def test_script_help_runs_without_third_party_packages():
    result = subprocess.run(
        [sys.executable, "-I", str(REPO / "scripts" / "build_learn2learn.py"), "--help"],
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0 and "--install" in result.stdout
