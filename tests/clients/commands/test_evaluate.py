"""``instrumentd evaluate``, the real command: the bundled checkpoint scored on prepared test features,
reports written where asked, one-line errors."""

from __future__ import annotations

import json

import pytest

from instrumentd.model.recognizer import DEFAULT_CHECKPOINT

from ...conftest import instrumentd, one_line_error
from .conftest import TEST_FILES


@pytest.mark.slow
def test_reports_of_every_test_clip(prepared, tmp_path):
    out = tmp_path / "eval"
    run = instrumentd("evaluate", str(DEFAULT_CHECKPOINT), str(prepared), "--out", str(out), "--device", "cpu",
                      "--no-tsne")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith(f"reports: {out}")
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == len(TEST_FILES) and report["test"] == str(prepared)
    assert report["checkpoint"]["path"] == str(DEFAULT_CHECKPOINT)
    assert (out / "report.md").is_file() and (out / "per_class.png").is_file() and not (out / "tsne.png").exists()


def test_a_threshold_out_of_range_is_one_line(prepared, tmp_path):
    run = instrumentd("evaluate", str(DEFAULT_CHECKPOINT), str(prepared), "--threshold", "1.5")
    assert run.returncode == 2
    one_line_error(run.stderr, "evaluate", "--threshold must be in (0, 1], got 1.5")
