"""The Makefile: self-documenting, and `make -n` plans the pipeline for a run without running it."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def test_help_lists_every_documented_target():
    out = _make("help").stdout
    for target in ("all", "test", "test-slow", "bench", "lab", "clean", "supplement", "setup"):
        assert f"  {target} " in out, f"make help does not list {target}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make all" in readme


def test_dry_run_plans_every_notebook_of_a_run():
    out = _make("-n", "-B", "RUNS=smoke", "notebooks").stdout
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for nb in notebooks:
        assert f"notebooks/{nb}.ipynb --params params/smoke.yaml" in out
    assert "hipfrac cohort --params params/smoke.yaml" in out
    assert "hipfrac synth --params params/smoke.yaml" in out


def test_clean_never_touches_source():
    out = _make("-n", "clean").stdout
    for protected in ("lib", "notebooks", "params", "tests"):
        assert f" {protected}" not in out.replace("outputs/*/", "")
