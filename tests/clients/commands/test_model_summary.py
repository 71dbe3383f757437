"""``instrumentd model-summary``, the real command: Table 2's total, other variants, bad values in one line."""

import subprocess
import sys

from ...conftest import side_by_side


def run_command(*args):
    return subprocess.run([sys.executable, "-m", "instrumentd", *args], capture_output=True, text=True, timeout=120)


def test_model_summary_total():
    out = run_command("model-summary")
    assert out.returncode == 0, out.stderr
    assert "878,331" in out.stdout
    assert "[4, 192, 256]" in out.stdout


def test_model_summary_other_variant_and_bad_value():
    out, bad = side_by_side(lambda: run_command("model-summary", "--variant", "han", "--frames", "300"),
                            lambda: run_command("model-summary", "--frames", "2"))
    assert out.returncode == 0 and "Total parameters" in out.stdout
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--frames" in bad.stderr
