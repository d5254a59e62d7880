"""The report command: regenerates tables from records, and says what is wrong otherwise."""

from __future__ import annotations

from benchmarks.report import main


def test_a_missing_results_folder_is_named_as_missing(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no such folder" in err


def test_a_folder_without_records_says_how_to_make_them(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 1
    assert "run python -m benchmarks.run first" in capsys.readouterr().out
