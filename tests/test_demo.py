"""`overnight demo` sets up a real repository and improves the metric."""

from __future__ import annotations

from pathlib import Path

from conftest import ledger_rows


def test_demo_runs_and_improves(tmp_path: Path, cli) -> None:
    target = tmp_path / "demo"
    result = cli("demo", target, "--example", "quickstart", "--max-experiments", "12")
    assert result.code == 0, result.err
    assert "result:   baseline" in result.out
    rows = ledger_rows(target, "demo")
    assert rows[0]["status"] == "baseline" and len(rows) == 13
    kept = [r for r in rows if r["status"] == "keep"]
    assert kept and kept[-1]["metric"] < rows[0]["metric"]
    assert (target / ".git").is_dir()


def test_demo_never_writes_into_a_non_empty_folder(tmp_path: Path, cli) -> None:
    (tmp_path / "mine.txt").write_text("keep me\n")
    result = cli("demo", tmp_path)
    assert result.code == 2 and "not empty" in result.err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
