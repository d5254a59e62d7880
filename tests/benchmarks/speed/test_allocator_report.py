"""The allocator timing report compares the two settings shape by shape."""

from __future__ import annotations

from benchmarks.speed.allocator import SHAPES, markdown


def _run(mode: str, ms: float) -> dict:
    return {
        "malloc": mode,
        "median_ms": {label: ms for label, *_ in SHAPES},
        "wall_s": ms,
        "user_s": 1.0,
        "system_s": 2.0 if mode == "system" else 0.5,
        "minor_faults": 1000,
    }


def test_the_report_gives_each_shape_its_times_and_speed_up():
    report = markdown([_run("system", 300.0), _run("keep-freed", 200.0)], threads=2, rounds=5)
    first = SHAPES[0][0]
    assert f"| {first} | 300 | 200 | 1.50x |" in report
    assert "| system (s) | 2.0 | 0.5 |" in report
    assert len([line for line in report.splitlines() if line.endswith("1.50x |")]) == len(SHAPES)


def test_a_machine_with_one_setting_only_says_so():
    assert markdown([_run("system", 1.0)], 2, 5).startswith("Only one allocator setting")
