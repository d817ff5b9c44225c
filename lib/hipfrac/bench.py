"""Benchmarks: wall time and peak memory of every pipeline stage, each in its own process.

`python -m hipfrac bench --scale 1 --scale 4` (or `make bench`) runs, per scale: synthetic data,
cohort, each notebook, the run-level disclosure audit and the scan, and reports the whole pipeline (sum of the sequential stages; peak = the
largest stage). Peak memory is the largest resident set of the stage's process tree (papermill's
kernel included), sampled every 50 ms. Results go to outputs/bench/bench.json and a table is printed.
Targets come from the issues; a stage over its target is marked, never failed: this is a measurement,
not a test.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from hipfrac import safepaths
from hipfrac.params import PROJECT_ROOT

# target seconds at national scale (scale 1) and peak GB; None = no stated target
TARGETS = {
    "synth": (60, 4.0),
    "cohort": (60, 4.0),
    "01_treatment_variation": (60, 4.0),
    "02_survival_variation": (90, 4.0),
    "03_survival_factors": (180, 4.0),
    "04_secondary_prevention": (60, 4.0),
    # run-level disclosure audit (re-executions included) and scan: a small part of `make all` (issue 13)
    "audit": (30, 4.0),
    "scan": (30, 2.0),
    "whole": (300, 4.0),
}
NORDIC_FACTOR = 4.5  # scale 4 within 4.5x the national time
NORDIC_PEAK_GB = 16.0


def measure(cmd: list[str], *, env: dict | None = None, interval: float = 0.05) -> dict:
    """Run cmd; return wall seconds, peak RSS of its process tree (GB), exit code and output tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    out_chunks: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(interval)
    reader.join(timeout=5)
    wall = time.perf_counter() - t0
    return {"seconds": round(wall, 2), "peak_gb": round(peak / 1e9, 3), "returncode": proc.returncode,
            "output_tail": "".join(out_chunks)[-2000:]}


def _params_file(scale: float) -> Path:
    tag = f"bench_s{scale:g}".replace(".", "p")
    d = PROJECT_ROOT / "params"  # params/bench_*.yaml are generated (git-ignored): make needs params/<run>.yaml
    base = yaml.safe_load((PROJECT_ROOT / "params" / "default.yaml").read_text()) or {}
    base["run"] = tag
    base["description"] = f"benchmark at scale {scale:g}"
    base.setdefault("synth", {})["scale"] = scale
    base["synth"]["out_dir"] = f"data/bench/{tag}"
    path = d / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def notebooks() -> list[Path]:
    return sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def run_scale(scale: float, stages: set[str] | None = None) -> list[dict]:
    """Time every stage at one scale; returns one record per stage."""
    py = sys.executable
    pfile = _params_file(scale)
    env = dict(os.environ, CI="true")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # as under make: one BLAS thread per process
    plan = [("synth", [py, "-m", "hipfrac", "synth", "--params", str(pfile)]),
            ("cohort", [py, "-m", "hipfrac", "cohort", "--params", str(pfile)])]
    plan += [(nb.stem, [py, "-m", "hipfrac", "notebook", str(nb), "--params", str(pfile)]) for nb in notebooks()]
    work = PROJECT_ROOT / "outputs" / ".work" / pfile.stem
    plan += [("audit", [py, "-m", "hipfrac", "audit", "--params", str(pfile)]),
             ("scan", [py, "-m", "hipfrac", "scan", str(work)])]
    if stages:
        plan = [p for p in plan if p[0] in stages]
    records = []
    for name, cmd in plan:
        print(f"  scale {scale:g}: {name} ...", flush=True)
        if name == "synth":  # time a fresh generation, not the cache hit
            safepaths.remove(PROJECT_ROOT / "data" / "bench" / pfile.stem)
        rec = {"scale": scale, "stage": name, **measure(cmd, env=env)}
        if rec["returncode"] != 0:
            print(rec["output_tail"], file=sys.stderr)
        records.append(rec)
    ok = [r for r in records if r["returncode"] == 0]
    if len(ok) == len(records) and records and not stages:
        records.append({"scale": scale, "stage": "sequential sum", "seconds": round(sum(r["seconds"] for r in records), 2),
                        "peak_gb": max(r["peak_gb"] for r in records), "returncode": 0, "output_tail": ""})
    if not stages or "whole" in stages:
        # the whole pipeline as a researcher runs it: `make all` (parallel, one job per core) from scratch
        for d in (PROJECT_ROOT / "data" / "bench" / pfile.stem, PROJECT_ROOT / "data" / "cohort" / pfile.stem,
                  PROJECT_ROOT / "outputs" / pfile.stem, PROJECT_ROOT / "outputs" / ".work" / pfile.stem):
            safepaths.remove(d)   # only directories hipfrac made (hipfrac.safepaths marker)
        for st in [*(PROJECT_ROOT / "data" / ".stamps").glob(f"{pfile.stem}.*"),
                   *(PROJECT_ROOT / "outputs" / ".work").glob(f"{pfile.stem}.published")]:
            st.unlink()
        print(f"  scale {scale:g}: whole (make all) ...", flush=True)
        rec = {"scale": scale, "stage": "whole", **measure(["make", "--no-print-directory", "all",
                                                            f"RUNS={pfile.stem}"], env=env)}
        if rec["returncode"] != 0:
            print(rec["output_tail"], file=sys.stderr)
        records.append(rec)
    return records


def _verdict(rec: dict, national: dict[str, float]) -> str:
    if rec["returncode"] != 0:
        return "FAILED"
    if rec["scale"] == 1:
        target = TARGETS.get(rec["stage"])
        if not target:
            return ""
        return "ok" if rec["seconds"] <= target[0] and rec["peak_gb"] <= target[1] else "OVER TARGET"
    if rec["scale"] == 4 and rec["stage"] in national:
        ok = rec["seconds"] <= NORDIC_FACTOR * national[rec["stage"]] and rec["peak_gb"] <= NORDIC_PEAK_GB
        return "ok" if ok else "OVER TARGET"
    return ""


def extra_benchmarks() -> list[dict]:
    """Estimator micro-benchmarks offered by the analysis modules (run in this process)."""
    from hipfrac import relsurv

    out = []
    for name, fn, target in (("net survival, 150,000 patients, 17 y (Pohar Perme)", relsurv.benchmark_national, 10.0),
                             ("net survival on colrec vs relsurv::rs.surv", relsurv.benchmark_colrec, None)):
        try:
            res = fn()
        except Exception as exc:  # a broken micro-benchmark must not hide the pipeline figures
            res = {"error": repr(exc)}
        rec = {"stage": name, "result": res}
        if target is not None and "seconds" in res:
            rec["target_seconds"] = target
            rec["verdict"] = "ok" if res["seconds"] <= target else "OVER TARGET"
        out.append(rec)
    return out


def cli(args) -> int:
    scales = args.scale or [1.0]
    stages = set(args.stages.split(",")) if args.stages else None
    records: list[dict] = []
    for s in scales:
        records.extend(run_scale(s, stages))
    national = {r["stage"]: r["seconds"] for r in records if r["scale"] == 1 and r["returncode"] == 0}
    for r in records:
        r["verdict"] = _verdict(r, national)
    extras = extra_benchmarks() if not stages else []
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "targets": {"national_seconds_gb": TARGETS, "nordic_factor": NORDIC_FACTOR, "nordic_peak_gb": NORDIC_PEAK_GB},
        "stages": [{k: v for k, v in r.items() if k != "output_tail"} for r in records],
        "estimators": extras,
    }
    out = PROJECT_ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{'scale':>5}  {'stage':<26} {'seconds':>8} {'peak GB':>8}  verdict")
    for r in records:
        print(f"{r['scale']:>5g}  {r['stage']:<26} {r['seconds']:>8.1f} {r['peak_gb']:>8.2f}  {r['verdict']}")
    for e in extras:
        print("  estimator:", json.dumps(e))
    print(f"\nwritten {out}")
    return 0 if all(r["returncode"] == 0 for r in records) else 1
