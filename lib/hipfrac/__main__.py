"""Command line: `python -m hipfrac <command> ...` (also installed as `hipfrac`).

Commands
  synth       generate the synthetic linked registry (extracts + truth.json)
  cohort      build the cached analysis cohort from the extracts named in a params file
  notebook    execute one notebook with papermill for one params file (atomic outputs)
  audit       run-level disclosure audit of a run's staging area (re-executes notebooks as needed)
  publish     replace outputs/<run> with the staging area outputs/.work/<run> (after a clean scan)
  manifest    write outputs/<run>/manifest.json (provenance: params, inputs, git, versions, outputs)
  scan        check every file of an output run for person-level content and small cells
  supplement  build the static HTML supplement of a run
  bench       time each pipeline stage (wall time, peak memory) into outputs/bench/bench.json
"""

from __future__ import annotations

import argparse
import sys


def _years(text: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    return int(a), int(b or a)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hipfrac", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic linked registry")
    s.add_argument("--params", help="take every setting from this params file's synth section")
    s.add_argument("--out", help="output directory (default data/synthetic/default)")
    s.add_argument("--seed", type=int)
    s.add_argument("--years", type=_years, help="first-last year, e.g. 2008-2024")
    s.add_argument("--scale", type=float, help="1.0 = Norway, 0.02 tests, 4.0 Nordic-size")
    s.add_argument("--format", choices=["csv", "parquet"])
    s.add_argument("--no-imperfections", action="store_true", help="clean data: no injected errors")

    c = sub.add_parser("cohort", help="build the analysis cohort")
    c.add_argument("--params", required=True)

    n = sub.add_parser("notebook", help="execute one notebook for one params file")
    n.add_argument("notebook", help="path of the notebook, e.g. notebooks/01_treatment_variation.ipynb")
    n.add_argument("--params", required=True)

    a = sub.add_parser("audit", help="run-level disclosure audit of the staging area outputs/.work/<run>")
    a.add_argument("--params", required=True)
    a.add_argument("--no-rerun", action="store_true",
                   help="report what more to withhold, without re-executing the notebooks")
    a.add_argument("--jobs", type=int, default=0,
                   help="notebooks re-executed at a time, each in its own process (default: one per core)")

    sc = sub.add_parser("scan", help="scan an output run for disclosure problems")
    sc.add_argument("path", help="outputs/<run>")
    sc.add_argument("--min-cell", type=int, default=None,
                    help="smallest count allowed (default: the run's params.export.min_cell from its manifest, else 5)")

    pb = sub.add_parser("publish", help="replace outputs/<run> with the complete, scanned staging area")
    pb.add_argument("--params", required=True)

    m = sub.add_parser("manifest", help="write the provenance manifest of a run")
    m.add_argument("--params", required=True)
    m.add_argument("--run-dir", help="output run directory (default outputs/<run>)")

    su = sub.add_parser("supplement", help="build the HTML supplement of a run")
    su.add_argument("--params", required=True)
    su.add_argument("--show-code", action="store_true", help="show code cells (folded by default)")

    b = sub.add_parser("bench", help="benchmark every stage")
    b.add_argument("--scale", type=float, action="append", help="scale(s) to run (default 1)")
    b.add_argument("--out", default="outputs/bench/bench.json")
    b.add_argument("--stages", help="comma-separated subset of stages")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "synth":
        if args.params:
            from hipfrac import params

            if not params.load(args.params).synth.enabled:
                print(f"{args.params}: synth.enabled is false (real extracts): nothing to generate")
                return 0
        from hipfrac import synth

        return synth.cli(args)
    if args.command == "cohort":
        from hipfrac import cohort, params

        cohort.build(params.load(args.params))
        return 0
    if args.command == "notebook":
        from hipfrac import runner

        return runner.run_notebook(args.notebook, args.params)
    if args.command == "audit":
        from hipfrac import audit

        return audit.cli(args)
    if args.command == "publish":
        from hipfrac import publish

        return publish.cli(args)
    if args.command == "manifest":
        from hipfrac import manifest

        return manifest.cli(args)
    if args.command == "scan":
        from hipfrac import scan

        return scan.cli(args)
    if args.command == "supplement":
        from hipfrac import supplement

        return supplement.cli(args)
    if args.command == "bench":
        from hipfrac import bench

        return bench.cli(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
