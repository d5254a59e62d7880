"""Run ``python -m benchmarks.run`` on damaged files and bad values; print one line per case.

    python scripts/probe_bad_input.py [--data-root DIR]      # DIR holds omniglot/ (real data)

Each case builds its input in a temporary folder, runs the command line in a fresh process and
prints ``case | exit code | first line of the message`` (an ``error:``, ``warning:`` or ``note:``
line, else the run's first line). Nothing is written outside the temporary folder: the user's
cache is only read. Cases that need root (a read-only folder, a full disk: both are made with a
small tmpfs mount) say so and are skipped elsewhere. Expect about 3 minutes on 2 cores, most of
it one decode of Omniglot into the probe's own cache and a few one-episode trainings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = ["--methods", "protonet", "--shots", "1", "--train-episodes", "1", "--test-episodes", "3"]


@dataclass
class Probe:
    """The shared state of the cases: the work folder, real data, the probe's own cache."""

    work: Path
    data_root: Path
    cache: Path

    def run(
        self,
        *flags: str,
        env: dict[str, str] | None = None,
        out: Path | None = None,
        cache: Path | None = None,
    ) -> tuple[int, str]:
        """``(exit code, stderr)`` of one run on CPU, quiet, into ``out`` (default a new folder)."""
        command = self.command(*flags, out=out, cache=cache)
        result = subprocess.run(
            command,
            cwd=self.work,
            capture_output=True,
            text=True,
            env={**self.env(), **(env or {})},
            timeout=900,
        )
        return result.returncode, result.stderr

    def command(self, *flags: str, out: Path | None = None, cache: Path | None = None) -> list[str]:
        out = out or Path(tempfile.mkdtemp(dir=self.work, prefix="out-"))
        return [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--cache-dir",
            str(cache or self.cache),
            *flags,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FEWSHOT_DATA_ROOT": str(self.data_root),
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
        }

    def folder(self, name: str, classes: int = 40, seed: int = 0) -> Path:
        """A class-folder dataset of ``classes`` classes x 6 random 8x8 PNGs."""
        root = self.work / name
        rng = np.random.default_rng(seed)
        for c in range(classes):
            (root / f"class{c:02d}").mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"class{c:02d}" / f"{i}.png")
        return root

    def omniglot_root(
        self, name: str, members: dict[str, bytes] | None = None, raw: bytes | None = None
    ) -> Path:
        """A data root whose ``omniglot/images_background.zip`` holds ``members`` (or is the bytes
        ``raw``) beside the real evaluation archive."""
        root = self.work / name / "omniglot"
        root.mkdir(parents=True)
        background = root / "images_background.zip"
        if raw is not None:
            background.write_bytes(raw)
        else:
            with zipfile.ZipFile(background, "w") as archive:
                for member, data in (members or {}).items():
                    archive.writestr(member, data)
        (root / "images_evaluation.zip").symlink_to(
            self.data_root / "omniglot" / "images_evaluation.zip"
        )
        return root.parent


def png(side: int = 105, mode: str = "1") -> bytes:
    stream = io.BytesIO()
    Image.new(mode, (side, side), 1).save(stream, format="PNG")
    return stream.getvalue()


def first_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:  # a message may follow a progress bar on the same line
        for marker in ("error:", "warning:", "note:", "interrupted"):
            if line.startswith(marker) or f"]{marker}" in line or f" {marker}" in line:
                return line[line.index(marker) :]
    if any("Traceback" in line for line in lines):
        return "TRACEBACK: " + lines[-1]
    return lines[0] if lines else "(no output)"


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a small tmpfs at ``path`` when this process may (root); yields whether it did."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)


# --- the cases: each returns (exit code, line to print) -----------------------------------------


def other_data_same_flags(p: Probe) -> tuple[int, str]:
    out = p.work / "out-data"
    flags = ["--dataset", "folder", *TINY, "--queries", "2"]
    p.run(*flags, "--data-root", str(p.folder("data-a", seed=1)), out=out)
    code, err = p.run(*flags, "--data-root", str(p.folder("data-b", seed=2)), out=out)
    return code, next(line for line in err.splitlines() if "already recorded" in line)


def damaged_checkpoint(p: Probe) -> tuple[int, str]:
    out = p.work / "out-checkpoint"
    p.run(*TINY, out=out)
    for checkpoint in (out / "omniglot" / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    code, err = p.run(*TINY[:-1], "4", out=out)
    return code, first_line(err)


def damaged_omniglot_cache(p: Probe) -> tuple[int, str]:
    cache = p.work / "cache-damaged"
    shutil.copytree(p.cache, cache)
    for file in cache.glob("omniglot-*.pt"):
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    code, err = p.run("--dry-run", cache=cache)
    return code, first_line(err)


def damaged_converted_cache(p: Probe) -> tuple[int, str]:
    root, cache = p.folder("data-cache"), p.work / "cache-converted"
    flags = (
        "--dataset",
        "folder",
        "--data-root",
        str(root),
        "--shots",
        "1",
        "--queries",
        "2",
        "--dry-run",
    )
    p.run(*flags, cache=cache)
    for array in cache.glob("folder-*/all.npy"):
        array.write_bytes(array.read_bytes()[:1000])
    code, err = p.run(*flags, cache=cache)
    return code, first_line(err)


def two_runs_at_once(p: Probe) -> tuple[int, str]:
    out = p.work / "out-lock"
    first = subprocess.Popen(
        p.command("--methods", "protonet", "--shots", "1", "--train-episodes", "100000", out=out),
        cwd=p.work,
        env=p.env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = out / "omniglot" / ".lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lock.exists() and lock.stat().st_size):
            time.sleep(0.1)
        return _line(p.run("--methods", "protonet", "--shots", "1", out=out))
    finally:
        first.kill()
        first.wait()


def repeated_seeds(p: Probe) -> tuple[int, str]:
    out = p.work / "out-seeds"
    code, err = p.run(*TINY, "--seeds", "0", "0", out=out)
    records = (out / "omniglot" / "records.jsonl").read_text().splitlines()
    return code, f"{first_line(err)} ({len(records)} record)"


def config_file(text: str, suffix: str = ".toml") -> Callable[[Probe], tuple[int, str]]:
    def case(p: Probe) -> tuple[int, str]:
        path = Path(tempfile.mkstemp(dir=p.work, suffix=suffix)[1])
        path.write_text(text)
        return _line(p.run("--config", str(path)))

    return case


def flags(*given: str) -> Callable[[Probe], tuple[int, str]]:
    return lambda p: _line(p.run(*given))


def data_root_is_a_file(p: Probe) -> tuple[int, str]:
    return _line(p.run("--data-root", str(p.data_root / "omniglot" / "images_background.zip")))


def read_only_cache(p: Probe) -> tuple[int, str]:
    with tmpfs(p.work / "read-only", "ro,size=1m") as mounted:
        if not mounted:
            return -1, "skipped: mounting a read-only tmpfs needs root"
        return _line(p.run("--dry-run", cache=p.work / "read-only"))


def full_disk(p: Probe) -> tuple[int, str]:
    with tmpfs(p.work / "full", "size=512k") as mounted:
        if not mounted:
            return -1, "skipped: mounting a small tmpfs needs root"
        return _line(p.run("--dry-run", cache=p.work / "full"))


def omniglot_archive(
    members: dict[str, bytes] | None = None, raw: Callable[[Probe], bytes] | None = None
) -> Callable[[Probe], tuple[int, str]]:
    def case(p: Probe) -> tuple[int, str]:
        name = f"root-{len(list(p.work.glob('root-*')))}"
        root = p.omniglot_root(name, members, raw(p) if raw else None)
        return _line(p.run("--dry-run", "--data-root", str(root), cache=p.work / f"cache-{name}"))

    return case


def corrupt_member(p: Probe) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("images_background/Alpha/character01/0001_01.png", png())
    data = bytearray(stream.getvalue())
    data[60:80] = bytes(20)  # inside the stored PNG: the CRC no longer matches
    return bytes(data)


def truncated_zip(p: Probe) -> bytes:
    return (p.data_root / "omniglot" / "images_background.zip").read_bytes()[:100_000]


def huge_image(p: Probe) -> tuple[int, str]:
    root = p.folder("data-huge")
    Image.new("1", (14000, 14000)).save(root / "class00" / "huge.png")
    return _line(
        p.run(
            "--dataset",
            "folder",
            "--data-root",
            str(root),
            "--dry-run",
            cache=p.work / "cache-huge",
        )
    )


def ctrl_c_during_decode(p: Probe) -> tuple[int, str]:
    """SIGINT once the decode's progress bar has started (not during Python's imports)."""
    command = p.command("--dry-run", cache=p.work / "cache-interrupted")
    command.remove("--quiet")
    process = subprocess.Popen(command, cwd=p.work, env=p.env(), stderr=subprocess.PIPE)
    assert process.stderr is not None
    seen = b""
    while b"decoding Omniglot" not in seen and process.poll() is None:
        seen += process.stderr.read1(4096)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    err = (seen + rest).decode(errors="replace").replace("\r", "\n")
    left = list((p.work / "cache-interrupted").glob("*"))
    return process.returncode, f"{first_line(err)} (files left in the cache: {len(left)})"


def home_in_config(p: Probe) -> tuple[int, str]:
    home = p.work / "home"
    home.mkdir()
    path = p.work / "home.toml"
    path.write_text(
        'out = "~/x"\n'
        + "\n".join(
            f"{k} = {json.dumps(v)}"
            for k, v in {
                "methods": ["protonet"],
                "shots": [1],
                "train_episodes": 1,
                "test_episodes": 3,
            }.items()
        )
    )
    command = [a for a in p.command("--config", str(path)) if a]
    out = command.index("--out")
    del command[out : out + 2]
    result = subprocess.run(
        command,
        cwd=p.work,
        capture_output=True,
        text=True,
        env={**p.env(), "HOME": str(home)},
        timeout=900,
    )
    written = (home / "x" / "omniglot" / "records.jsonl").exists()
    return result.returncode, (
        f"records in $HOME/x: {written}; a folder named '~' made: {(p.work / '~').exists()}"
    )


def macos_metadata(p: Probe) -> tuple[int, str]:
    root = p.folder("data-macos")
    (root / "__MACOSX" / "class00").mkdir(parents=True)
    (root / "__MACOSX" / "class00" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not a png")
    (root / "class00" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not a png")
    code, err = p.run("--dataset", "folder", "--data-root", str(root), *TINY, "--queries", "2")
    return code, "ran; " + (first_line(err) if "error" in err else "macOS files skipped")


def class_too_small(p: Probe) -> tuple[int, str]:
    root = p.folder("data-small")
    return _line(
        p.run(
            "--dataset",
            "folder",
            "--data-root",
            str(root),
            "--shots",
            "5",
            "--queries",
            "1",
            "--dry-run",
        )
    )


def episodes_file_outside(p: Probe) -> tuple[int, str]:
    out = p.work / "out-escape"
    p.run(*TINY, out=out)
    records = out / "omniglot" / "records.jsonl"
    record = json.loads(records.read_text())
    records.write_text(json.dumps({**record, "episodes_file": "../../../../etc/passwd"}) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "--out", str(out)],
        cwd=p.work,
        capture_output=True,
        text=True,
        env=p.env(),
    )
    return result.returncode, first_line(result.stderr + result.stdout)


def torn_line_warned_once(p: Probe) -> tuple[int, str]:
    out = p.work / "out-torn"
    p.run(*TINY, out=out)
    with open(out / "omniglot" / "records.jsonl", "a") as records:
        records.write('{"config_hash": "abc", "accur')
    _, first = p.run(*TINY, out=out)
    code, second = p.run(*TINY, out=out)
    return code, (
        f"first rerun: {first_line(first)[:70]}...; second rerun warns: {'warning' in second}"
    )


def _line(result: tuple[int, str]) -> tuple[int, str]:
    return result[0], first_line(result[1])


CASES: list[tuple[str, Callable[[Probe], tuple[int, str]]]] = [
    ("same flags, other data root", other_data_same_flags),
    ("truncated checkpoint", damaged_checkpoint),
    ("truncated Omniglot cache", damaged_omniglot_cache),
    ("truncated converted cache", damaged_converted_cache),
    ("two runs on one folder at once", two_runs_at_once),
    ("--seeds 0 0", repeated_seeds),
    ("--device tpu", flags("--device", "tpu")),
    ('config ways = "5"', config_file('ways = "5"\n')),
    ('config test_episodes = "5"', config_file('test_episodes = "5"\n')),
    ("JSON config that is an array", config_file('["relnet"]', ".json")),
    ("--data-root is a file", data_root_is_a_file),
    ("read-only --cache-dir", read_only_cache),
    ("zip with corrupt member data", omniglot_archive(raw=corrupt_member)),
    (
        "zip member one folder too deep",
        omniglot_archive({"images_background/extra/Alpha/character01/0001_01.png": png()}),
    ),
    ("truncated zip", omniglot_archive(raw=truncated_zip)),
    ("random-bytes zip", omniglot_archive(raw=lambda p: np.random.default_rng(0).bytes(4096))),
    ("empty zip", omniglot_archive({})),
    ("14000x14000 image", huge_image),
    ("full disk (512 KiB cache folder)", full_disk),
    ("Ctrl-C during the first decode", ctrl_c_during_decode),
    ("--time-budget -1", flags("--time-budget", "-1")),
    ("--time-budget nan", flags("--time-budget", "nan")),
    ("matchnet.fce_steps=-3", flags("--methods", "matchnet", "--options", "matchnet.fce_steps=-3")),
    ("config ways = [5.0]", config_file("ways = [5.0]\n")),
    ('config out = "~/x"', home_in_config),
    (
        "matchnet.temperature=nan",
        flags("--methods", "matchnet", "--options", "matchnet.temperature=nan"),
    ),
    ("macOS metadata in a class folder", macos_metadata),
    ("class too small for the training episodes", class_too_small),
    ("episodes_file outside the output folder", episodes_file_outside),
    ("torn record line", torn_line_warned_once),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root",
        default=os.environ.get("FEWSHOT_DATA_ROOT", "data"),
        help="folder holding omniglot/ (default: $FEWSHOT_DATA_ROOT, else ./data)",
    )
    parser.add_argument("--only", nargs="*", help="run only cases whose name contains one of these")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fewshot-probe-") as work:
        probe = Probe(Path(work), Path(args.data_root).resolve(), Path(work) / "cache")
        print("decoding Omniglot once into the probe's own cache ...", file=sys.stderr, flush=True)
        code, err = probe.run("--dry-run")
        if code != 0:
            print(f"the data root does not work: {first_line(err)}", file=sys.stderr)
            return 2
        print("case | exit code | first line of the message")
        for name, case in CASES:
            if args.only and not any(part in name for part in args.only):
                continue
            try:
                code, line = case(probe)
            except Exception as error:  # a broken case is reported, the others still run
                code, line = -2, f"PROBE FAILED: {type(error).__name__}: {error}"
            print(f"{name} | {code} | {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
