"""Build a synthetic registry and its cohort in a test directory (for recovery tests at any scale)."""

from pathlib import Path

import yaml

from hipfrac import cohort, synth
from hipfrac.params import load


def synthetic_cohort(d: Path, *, scale: float, seed: int, run: str = "national"):
    """Generate the synthetic registry (scale, seed) under d, build its cohort; return (params, cohort)."""
    spec = {"run": run, "allow_outside_project": True, "synth": {"scale": scale, "seed": seed, "out_dir": str(d / "synthetic")},
            "cohort": {"out_dir": str(d / "cohort")}}
    (d / f"{run}.yaml").write_text(yaml.safe_dump(spec))
    p = load(d / f"{run}.yaml")
    synth.generate(p.synth_dir, seed=p.synth.seed, years=p.synth.years, scale=p.synth.scale,
                   imperfections=p.synth.imperfections, fmt=p.synth.format)
    cohort.build(p)
    return p, cohort.load(p)
