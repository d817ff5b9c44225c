"""Synthetic linked registry (NHFR, NPR, KPR, Cause of Death, SSB, Prescriptions) with ground truth.

    from hipfrac import synth
    path = synth.generate("data/synthetic/default", seed=2026, years=(2008, 2024), scale=1.0)

or `python -m hipfrac synth --params params/default.yaml` (flags: --out --seed --years --scale --format
--no-imperfections). Writes one file per source (`<source>.csv`, semicolon-separated UTF-8, or parquet)
in the layout of `hipfrac.schema`, plus `truth.json` (the model the data were drawn from) and
`settings.json` (the settings fingerprint: generation is skipped when out_dir already holds data made
with identical settings and the same generator code).

Modules: `lifetable` (SSB-like life table and population), `model` (every true parameter), `core`
(patient-level simulation), `extracts` (building the eight sources and truth), `io` (writing).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from hipfrac import safepaths
from hipfrac.params import SOURCE_NAMES, resolve_path

__all__ = ["generate", "cli", "fingerprint", "code_version"]

_CODE_FILES = ("synth/__init__.py", "synth/core.py", "synth/extracts.py", "synth/io.py", "synth/lifetable.py",
               "synth/model.py", "schema.py", "geography.py", "data/hospitals.csv", "data/municipalities.csv",
               "data/referral_areas.csv")


def code_version() -> str:
    """Hash of the generator's source and shipped reference data."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in _CODE_FILES:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def fingerprint(*, seed: int, years: tuple[int, int], scale: float, imperfections: bool, fmt: str) -> dict:
    return {"seed": int(seed), "years": [int(years[0]), int(years[1])], "scale": float(scale),
            "imperfections": bool(imperfections), "format": fmt, "code_version": code_version()}


def _up_to_date(out: Path, fp: dict) -> bool:
    f = out / "settings.json"
    if not f.exists():
        return False
    try:
        old = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    files = [out / f"{s}.{fp['format']}" for s in SOURCE_NAMES] + [out / "truth.json"]
    return old == fp and all(p.exists() for p in files)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def generate(out_dir, *, seed: int = 2026, years: tuple[int, int] = (2008, 2024), scale: float = 1.0,
             imperfections: bool = True, fmt: str = "csv", force: bool = False, verbose: bool = False) -> Path:
    """Generate the synthetic registry into out_dir (skipped when already there with identical settings).

    seed: random seed; years: first and last fracture year (inclusive); scale: 1.0 = Norway (about 9,000
    hip fractures a year); imperfections: inject missing values, coverage gaps, invalid codes, impossible
    dates and duplicates (counts in truth.json); fmt: "csv" or "parquet". Returns out_dir as a Path.
    """
    from . import extracts, io

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    years = (int(years[0]), int(years[1]))
    if years[0] > years[1] or years[0] < 1990 or years[1] > 2100:
        raise ValueError(f"years must be first <= last within 1990-2100, got {years}")
    if not 0 < scale <= 10:
        raise ValueError(f"scale must be in (0, 10], got {scale}")
    out = Path(out_dir)
    fp = fingerprint(seed=seed, years=years, scale=scale, imperfections=imperfections, fmt=fmt)
    if not force and _up_to_date(out, fp):
        if verbose:
            print(f"synth: {out} is up to date (same settings and generator code); skipped")
        return out
    t0 = time.time()
    safepaths.claim(out)      # a new or empty directory, or one the generator made: never someone's files
    (out / "settings.json").unlink(missing_ok=True)      # invalid until the run completes
    tables, truth = extracts.Builder(seed, years, scale, imperfections).run()
    for name in SOURCE_NAMES:
        io.write(tables[name], name, out, fmt)
        other = out / f"{name}.{'parquet' if fmt == 'csv' else 'csv'}"
        if other.exists():
            other.unlink()
    (out / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default, ensure_ascii=False)
                                    + "\n", encoding="utf-8")
    (out / "settings.json").write_text(json.dumps(fp, indent=1) + "\n", encoding="utf-8")
    if verbose:
        rows = ", ".join(f"{k} {v:,}" for k, v in truth["rows"].items())
        print(f"synth: wrote {out} in {time.time() - t0:.1f} s ({rows})")
    return out


def cli(args) -> int:
    """`python -m hipfrac synth`: settings from --params (synth section) or from the flags."""
    if args.params:
        from hipfrac import params as P

        s = P.load(args.params).synth
        settings = {"out_dir": P.resolve_path(s.out_dir), "seed": s.seed, "years": s.years, "scale": s.scale,
                    "imperfections": s.imperfections, "fmt": s.format}
    else:
        settings = {"out_dir": resolve_path(args.out or "data/synthetic/default"),
                    "seed": 2026 if args.seed is None else args.seed,
                    "years": args.years or (2008, 2024), "scale": 1.0 if args.scale is None else args.scale,
                    "imperfections": not args.no_imperfections, "fmt": args.format or "csv"}
    out = settings.pop("out_dir")
    generate(out, **settings, verbose=True)
    return 0


def remove(out_dir) -> None:
    """Delete a generated directory (only if hipfrac made it: marker file and settings.json; a folder
    hipfrac did not make is left alone)."""
    out = Path(out_dir)
    if (out / "settings.json").exists() and safepaths.owned(out):
        safepaths.remove(out)
