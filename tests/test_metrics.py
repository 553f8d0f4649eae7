"""Reading the metric: summary lines, a pattern, a JSON file, an evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overnight.config import MetricSection
from overnight.executors.metrics import read, summary_values

KARPATHY = """\
step 100 | loss 2.3
---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
num_params_M:     50.3
"""


def test_summary_lines() -> None:
    values = summary_values(KARPATHY + "val_bpb: 0.9\nnot a metric: abc\n  indented: 1e-3\n")
    assert values == {
        "val_bpb": 0.9,
        "training_seconds": 300.1,
        "peak_vram_mb": 45060.2,
        "num_params_M": 50.3,
        "indented": 0.001,
    }


def _metric(**kw: str) -> MetricSection:
    return MetricSection(**{"name": "val_bpb", **kw}).check("t")


def test_read_summary_metric(tmp_path: Path) -> None:
    reading = read(_metric(), KARPATHY, tmp_path)
    assert reading.value == 0.9979 and reading.metrics["training_seconds"] == 300.1


@pytest.mark.parametrize(
    ("text", "reason"),
    [("val_bpb: nan\n", "is nan"), ("val_bpb: inf\n", "is inf"), ("loss: 1\n", "no 'val_bpb: <number>' line")],
)
def test_unusable_metric_is_no_metric(tmp_path: Path, text: str, reason: str) -> None:
    reading = read(_metric(), text, tmp_path)
    assert reading.value is None and reason in reading.reason


def test_read_pattern(tmp_path: Path) -> None:
    reading = read(_metric(pattern=r"bpb=([\d.]+)"), "bpb=1.5\nbpb=1.25\n", tmp_path)
    assert reading.value == 1.25
    assert read(_metric(pattern=r"bpb=([\d.]+)"), "nothing", tmp_path).reason.startswith("pattern")


def test_read_json_file(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"val_bpb": 0.5, "steps": 10, "note": "x", "flag": True}))
    reading = read(_metric(file="m.json"), "", tmp_path)
    assert reading.value == 0.5 and reading.metrics == {"val_bpb": 0.5, "steps": 10.0}
    (tmp_path / "m.json").write_text(json.dumps({"val_bpb": "nan"}))
    assert "is nan" in read(_metric(file="m.json"), "", tmp_path).reason
    (tmp_path / "m.json").write_text("{oops")
    assert "not valid JSON" in read(_metric(file="m.json"), "", tmp_path).reason
    assert "did not write" in read(_metric(file="other.json"), "", tmp_path).reason


def test_evaluator_output_is_the_only_source_of_the_metric(tmp_path: Path) -> None:
    reading = read(_metric(command="python eval.py"), "val_bpb: 0.1\nsteps: 5\n", tmp_path, "val_bpb: 0.7\n")
    assert reading.value == 0.7 and reading.metrics["steps"] == 5
    assert read(_metric(command="e"), "val_bpb: 0.1\n", tmp_path, "").value is None
