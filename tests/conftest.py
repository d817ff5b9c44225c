"""Shared fixtures: a tiny synthetic registry and its cohort, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "reference" / "fixtures"


@pytest.fixture(scope="session")
def tiny_params_file(tmp_path_factory) -> Path:
    """A params file for a tiny synthetic run (scale 0.02) writing into a temporary directory."""
    d = tmp_path_factory.mktemp("tiny")
    spec = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    spec["run"] = "tiny"
    spec["allow_outside_project"] = True   # data directories in the test's temporary directory
    spec["synth"]["out_dir"] = str(d / "synthetic")
    spec.setdefault("cohort", {})["out_dir"] = str(d / "cohort")
    path = d / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_params(tiny_params_file):
    from hipfrac.params import load

    return load(tiny_params_file)


@pytest.fixture(scope="session")
def tiny_synth(tiny_params):
    """Directory of a tiny synthetic registry (with truth.json)."""
    from hipfrac import synth

    s = tiny_params.synth
    synth.generate(tiny_params.synth_dir, seed=s.seed, years=s.years, scale=s.scale,
                   imperfections=s.imperfections, fmt=s.format)
    return tiny_params.synth_dir


@pytest.fixture(scope="session")
def tiny_cohort(tiny_params, tiny_synth):
    """The analysis cohort (DataFrame) of the tiny synthetic registry."""
    from hipfrac import cohort

    cohort.build(tiny_params)
    return cohort.load(tiny_params)
