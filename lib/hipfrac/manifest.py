"""Provenance of a run: outputs/<run>/manifest.json.

Two steps:
  1. Each notebook's Exporter.finish() writes outputs/<run>/<notebook>/outputs.json (`notebook_part`):
     start/end time, tables and figures with their suppression counts, warnings, files with sha256.
  2. `python -m hipfrac manifest --params params/<run>.yaml` (the Makefile's end-of-run step) joins
     them with the run-level facts (`build`): resolved params and their fingerprint, size + sha256 of
     every input file (registry extracts, truth.json, the cohort and its companions, the params file,
     the notebooks), git commit and dirty flag, package versions, platform, start and end time, and
     every output file of the run with size and sha256.

The manifest holds timestamps, so it is kept apart from tables (which are byte-identical on reruns).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from hipfrac import safepaths

PART_NAME = "outputs.json"
MANIFEST_NAME = "manifest.json"
SKIP_DIRS = ("supplement", ".failed")
SKIP_PREFIXES = (".tmp-", ".old-")
PACKAGES = ("hipfrac", "pandas", "numpy", "scipy", "lifelines", "statsmodels", "matplotlib", "seaborn",
            "tableone", "duckdb", "pyarrow", "pyyaml", "pydantic", "openpyxl", "papermill", "nbformat",
            "nbconvert", "ipykernel")


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: Path, root: Path | None = None) -> dict:
    """{"path", "size" (bytes), "sha256"} of a file; path relative to root when given."""
    path = Path(path)
    rel = path.relative_to(root).as_posix() if root else str(path)
    return {"path": rel, "size": path.stat().st_size, "sha256": sha256(path)}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def notebook_part(exporter) -> dict:
    """The manifest piece of one notebook (called by Exporter.finish)."""
    files = sorted({p for p in exporter.written if Path(p).exists()})
    return {
        "notebook": exporter.notebook,
        "run": exporter.run,
        "params_fingerprint": exporter.params.fingerprint(),
        "real_data": exporter.strict,
        "min_cell": exporter.min_cell,
        "lang": exporter.lang,
        "started": exporter.started,
        "finished": _now(),
        "tables": exporter.tables,
        "figures": exporter.figures,
        "texts": exporter.texts,
        "suppressed_cells": {k: sum(t["suppressed"][k] for t in exporter.tables)
                             for k in ("primary", "secondary", "derived")},
        "warnings": exporter.warnings,
        "files": [fingerprint(p, exporter.dir) for p in files],
    }


def git_info(root: Path) -> dict:
    """Commit, branch and dirty flag of the project tree (null when git is unavailable)."""
    def run(*cmd):
        try:
            r = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": run("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": None if status is None else bool(status),
            "dirty_files": None if not status else sorted(line[3:] for line in status.splitlines())[:50]}


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def platform_info() -> dict:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "platform": platform.platform(), "python_implementation": platform.python_implementation(),
            "executable": sys.executable}


def input_files(params, params_file: Path | None = None) -> list[Path]:
    """Every input of a run that exists: extracts, truth.json, cohort files, params file, notebooks."""
    from hipfrac.params import PROJECT_ROOT, SOURCE_NAMES

    paths: list[Path] = []
    for name in SOURCE_NAMES:
        p = Path(params.source_file(name).path)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.is_file())
        elif p.exists():
            paths.append(p)
    truth = params.synth_dir / "truth.json"
    if truth.exists():
        paths.append(truth)
    if params.cohort_dir.exists():
        paths += sorted(q for q in params.cohort_dir.rglob("*") if q.is_file() and q.name != safepaths.MARKER)
    if params_file and Path(params_file).exists():
        paths.append(Path(params_file).resolve())
    nb_dir = PROJECT_ROOT / "notebooks"
    if nb_dir.exists():
        paths += sorted(nb_dir.glob("[0-9][0-9]_*.ipynb"))
    seen, out = set(), []
    for p in paths:
        r = Path(p).resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def output_files(run_dir: Path) -> list[Path]:
    """Every file of a run, except the manifest itself, the supplement and temporary directories."""
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if not p.is_file() or rel.as_posix() == MANIFEST_NAME:
            continue
        if rel.parts[0] in SKIP_DIRS or rel.parts[0].startswith(SKIP_PREFIXES):
            continue
        if rel.name == safepaths.MARKER:   # hipfrac's ownership marker (hipfrac.safepaths): not an output
            continue
        out.append(p)
    return out


def _display(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def build(params, params_file: str | Path | None = None, run_dir: Path | None = None) -> dict:
    """The run-level manifest (a dict) of params' run."""
    from hipfrac.params import PROJECT_ROOT

    run_dir = Path(run_dir) if run_dir else params.output_dir
    parts = []
    for p in sorted(run_dir.glob(f"*/{PART_NAME}")):
        if p.parent.name in SKIP_DIRS or p.parent.name.startswith(SKIP_PREFIXES):
            continue
        parts.append(json.loads(p.read_text(encoding="utf-8")))
    starts = [p["started"] for p in parts if p.get("started")]
    ends = [p["finished"] for p in parts if p.get("finished")]
    inputs = []
    for p in input_files(params, Path(params_file) if params_file else None):
        fp = fingerprint(p)
        fp["path"] = _display(p, PROJECT_ROOT)
        inputs.append(fp)
    return {
        "run": params.run,
        "description": params.description,
        "real_data": params.real_data,
        "params": params.resolved(),
        "params_fingerprint": params.fingerprint(),
        "params_file": _display(Path(params_file).resolve(), PROJECT_ROOT) if params_file else None,
        "inputs": inputs,
        "git": git_info(PROJECT_ROOT),
        "packages": package_versions(),
        "platform": platform_info(),
        "started": min(starts) if starts else None,
        "finished": max(ends) if ends else None,
        "manifest_written": _now(),
        "notebooks": [{k: v for k, v in p.items() if k != "files"} for p in parts],
        "suppressed_cells": {k: sum(p.get("suppressed_cells", {}).get(k, 0) for p in parts)
                             for k in ("primary", "secondary", "derived")},
        "warnings": [f"{p['notebook']}: {w}" for p in parts for w in p.get("warnings", [])],
        "outputs": [fingerprint(p, run_dir) for p in output_files(run_dir)],
    }


def write(params, params_file: str | Path | None = None, run_dir: Path | None = None) -> Path:
    """Build the manifest and write it to outputs/<run>/manifest.json; return its path."""
    run_dir = Path(run_dir) if run_dir else params.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    man = build(params, params_file, run_dir)
    path = run_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(man, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def cli(args) -> int:
    """python -m hipfrac manifest --params P [--run-dir D]"""
    from hipfrac.params import load

    params = load(args.params)
    path = write(params, args.params, Path(args.run_dir) if getattr(args, "run_dir", None) else None)
    man = json.loads(path.read_text(encoding="utf-8"))
    print(f"manifest: {path} ({len(man['inputs'])} inputs, {len(man['outputs'])} outputs, "
          f"{len(man['notebooks'])} notebooks, git {str(man['git']['commit'])[:10]}"
          f"{' dirty' if man['git']['dirty'] else ''})")
    for w in man["warnings"]:
        print(f"  warning: {w}")
    return 0
