"""One disclosure audit per run: nothing withheld can be recovered from the union of the run's outputs.

    python -m hipfrac audit --params params/<run>.yaml        # make runs it after the notebooks

Every Exporter writes the cells of every output of its notebook (values included, withheld ones and the
counts they imply too) to the run's private audit store, params.audit_dir (outputs/.work/<run>.audit/,
never published). Each output was protected against what its own notebook published before it; the audit
puts every notebook together - a hospital table of notebook 02 with the registrations of notebook 00 - and
solves the union with the same engine (hipfrac.sdc): exact determination of any withheld cell, intervals
of every small count. Cells it must withhold in addition form a *plan* (plan.json in the store); the
notebooks that publish a planned cell are executed again with the plan (environment variable
HIPFRAC_AUDIT_PLAN: their Exporter withholds those cells from the start, and protects around them), and the
union is audited again, until nothing changes. Withholding more never reveals anything, so this ends.

The audit report (report.json in the store; the counts without values also in the run's audit.json,
published) lists per notebook and output what is withheld and why. In a real-data run (params.real_data)
a small count the audit cannot protect stops the run, naming the outputs involved.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hipfrac import sdc
from hipfrac.sdc import ASSUMED, CANDIDATE, FORCED, IMPLIED, Cell

PLAN = "plan.json"
REPORT = "report.json"
PUBLIC = "audit.json"
MAX_ROUNDS = 4


@dataclass
class AuditResult:
    """What the audit of one state of the run found."""

    plan: set[Cell]                      # visible cells to withhold in addition
    exposed: dict[Cell, str]             # small counts that could not be protected
    outputs: dict[Cell, set[str]]        # cell -> "notebook/output" publishing it
    cells: int = 0
    systems: int = 0
    seconds: float = 0.0
    withheld: int = 0
    by_notebook: dict = field(default_factory=dict)
    conflicts: set[Cell] = field(default_factory=set)


def read_store(audit_dir: Path, notebooks=None) -> list[tuple[str, str, Cell, float | None, str]]:
    """(notebook, output, cell, value, status) of every cell in the store (the notebooks given, or all)."""
    out = []
    for p in sorted(Path(audit_dir).glob("*.jsonl")):
        nb = p.stem
        if notebooks is not None and nb not in notebooks:
            continue
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                out.append((nb, r["output"], Cell.from_json(r["cell"]), r["value"], r["status"]))
    return out


def audit_cells(records, min_cell: int, protect_missing: bool = True) -> AuditResult:
    """Solve the union of a run's outputs: cells published anywhere are candidates (the audit may plan to
    withhold them), cells withheld anywhere stay withheld, implied counts must stay hidden."""
    t0 = time.perf_counter()
    problem = sdc.Problem(min_cell, protect_missing=protect_missing)
    outputs: dict[Cell, set[str]] = defaultdict(set)
    status: dict[Cell, str] = {}
    value: dict[Cell, float | None] = {}
    rank = {"withheld": 0, "visible": 1, "known": 2, "implied": 3}
    for nb, output, cell, v, st in records:
        if st in ("visible", "withheld"):
            outputs[cell].add(f"{nb}/{output}")
        old = status.get(cell)
        # withheld anywhere = withheld (it is, in that output; the others are planned to follow)
        if old is None or rank[st] < rank[old]:
            status[cell] = st
        if value.get(cell) is None:
            value[cell] = v
    for cell, st in status.items():
        problem.add(cell, value[cell], {"visible": CANDIDATE, "withheld": FORCED, "known": ASSUMED,
                                         "implied": IMPLIED}[st])
    sol = problem.solve()
    # to withhold in addition: cells published somewhere (a cell published in one output and withheld in
    # another is withheld everywhere)
    visible_anywhere = {r[2] for r in records if r[4] == "visible"}
    plan = {c for c in sol.withheld if c in visible_anywhere}
    by_nb: dict[str, dict] = defaultdict(lambda: {"withheld": 0, "planned": 0})
    for c in sol.withheld:
        for o in outputs.get(c, ()):
            nb = o.split("/")[0]
            by_nb[nb]["withheld"] += 1
            if c in plan:
                by_nb[nb]["planned"] += 1
    return AuditResult(plan, dict(sol.exposed), outputs, cells=len(problem.cells), systems=sol.systems,
                       seconds=time.perf_counter() - t0, withheld=len(sol.withheld), by_notebook=dict(by_nb),
                       conflicts=set(sol.conflicts))


def run(params, params_file, *, rerun: bool = True, notebooks_dir: Path | None = None, log=print,
        jobs: int = 1) -> AuditResult:
    """Audit the run of `params`; re-execute notebooks with the plan until it is stable (`jobs` notebooks
    at a time, each in its own process when more than one). Returns the last audit. Raises SystemExit(1)
    in a real-data run when small counts stay exposed."""
    from hipfrac import runner
    from hipfrac.params import PROJECT_ROOT

    store = params.audit_dir
    store.mkdir(parents=True, exist_ok=True)
    nb_dir = Path(notebooks_dir) if notebooks_dir else PROJECT_ROOT / "notebooks"
    staged = sorted(p.name for p in params.work_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if params.work_dir.is_dir() else []
    plan: set[Cell] = set()
    plan_path = store / PLAN
    started = time.perf_counter()
    res = None
    reruns: list[str] = []
    pending: set[Cell] = set()
    for round_ in range(1, MAX_ROUNDS + 1):
        records = read_store(store, staged)
        res = audit_cells(records, params.export.min_cell, params.export.protect_missing)
        new = res.plan - plan
        log(f"audit: round {round_}: {res.cells} cells in {res.systems} systems, {res.withheld} withheld, "
            f"{len(new)} more to withhold, {len(res.exposed)} exposed ({res.seconds:.1f} s)")
        pending = new
        if not new:
            break
        plan |= new
        tmp = plan_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run": params.run, "withhold": sorted(c.to_json() for c in plan)},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(plan_path)
        touched = sorted({o.split("/")[0] for c in new for o in res.outputs.get(c, ())})
        if not rerun or not touched:
            break  # the plan is not applied: what it lists is still published
        if round_ == MAX_ROUNDS:
            break
        log(f"audit: re-executing {', '.join(touched)} with {len(plan)} planned cells ({jobs} at a time)")
        reruns += touched
        if runner.run_notebooks([nb_dir / f"{nb}.ipynb" for nb in touched], params_file,
                                env={"HIPFRAC_AUDIT_PLAN": str(plan_path)}, jobs=jobs, log=log) != 0:
            raise SystemExit(1)
        pending = set()
    total = time.perf_counter() - started
    report = {"run": params.run, "min_cell": params.export.min_cell, "seconds": round(total, 2),
              "rounds": round_, "reruns": reruns, "cells": res.cells, "systems": res.systems,
              "withheld": res.withheld, "planned": len(plan), "pending": len(pending),
              "by_notebook": dict(sorted(res.by_notebook.items())),   # not in the order the notebooks finished
              "exposed": [{"cell": c.label(), "why": why, "outputs": sorted(res.outputs.get(c, ()))}
                          for c, why in sorted(res.exposed.items())],
              # coarser margins assumed published elsewhere that would have revealed a small count: taken as
              # not published (a publication elsewhere of one of them would reveal it)
              "assumed_margins_not_protected": sorted(c.label() for c in res.conflicts)}
    (store / REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    public = {k: report[k] for k in ("run", "min_cell", "rounds", "reruns", "withheld", "planned", "pending",
                                     "by_notebook")}
    public["exposed"] = len(report["exposed"])
    if params.work_dir.is_dir():
        (params.work_dir / PUBLIC).write_text(json.dumps(public, indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    problems = []
    if res.exposed:
        outs = sorted({o for c in res.exposed for o in res.outputs.get(c, ())})
        problems.append(f"{len(res.exposed)} small count(s) still determined or bounded narrowly by the union of "
                        f"the run's outputs, in {', '.join(outs[:8]) or 'implied counts'}")
    if pending:
        outs = sorted({o for c in pending for o in res.outputs.get(c, ())})
        problems.append(f"{len(pending)} published cell(s) must be withheld to protect small counts of other "
                        f"outputs and were not (the notebooks were not re-executed with the plan): "
                        f"{', '.join(outs[:8])}")
    if problems:
        msg = "audit: " + "; ".join(problems) + f" (details: {store / REPORT})"
        if params.real_data:
            print(msg, file=sys.stderr)
            raise SystemExit(1)
        log("warning: " + msg)
    log(f"audit: {params.run}: done in {total:.1f} s ({len(reruns)} re-executions)")
    return res


def cli(args) -> int:
    """python -m hipfrac audit --params P [--no-rerun] [--jobs N]"""
    from hipfrac.params import load

    params = load(args.params)
    try:
        run(params, args.params, rerun=not args.no_rerun, jobs=args.jobs or os.cpu_count() or 1)
    except SystemExit as exc:
        return int(exc.code or 1)
    return 0
