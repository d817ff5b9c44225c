"""Execute one notebook for one params file with papermill, atomically.

The notebook runs with cwd = notebooks/ and two injected parameters: `params_file` (absolute path)
and `output_dir` (a temporary directory). On success the temporary directory replaces
outputs/.work/<run>/<notebook>/ (the run's staging area; `hipfrac publish` moves a complete, scanned run
to outputs/<run>/); on failure the previous outputs stay untouched, the failing cell and its
traceback are printed, and the partly executed notebook is kept in outputs/<run>/.failed/ to inspect.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hipfrac.params import PROJECT_ROOT, load

KERNEL = os.environ.get("HIPFRAC_KERNEL", "hipfrac")


def run_notebook(notebook: str | Path, params_file: str | Path) -> int:
    """Execute `notebook` for `params_file`; return 0 on success, 1 on failure (message printed)."""
    import papermill as pm

    nb = Path(notebook).resolve()
    params = load(params_file)
    params_path = Path(params_file).resolve() if Path(params_file).exists() else PROJECT_ROOT / params_file
    run_dir = params.work_dir  # published to outputs/<run> by hipfrac.publish
    final = run_dir / nb.stem
    tmp = run_dir / f".tmp-{nb.stem}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        pm.execute_notebook(
            str(nb),
            str(tmp / nb.name),
            parameters={"params_file": str(params_path), "output_dir": str(tmp)},
            kernel_name=KERNEL,
            cwd=str(nb.parent),
            progress_bar=not in_ci and sys.stderr.isatty(),
            log_output=in_ci,
            report_mode=False,
        )
    except Exception as exc:  # papermill's PapermillExecutionError carries the cell and traceback
        failed = run_dir / ".failed"
        failed.mkdir(parents=True, exist_ok=True)
        if (tmp / nb.name).exists():
            shutil.copy2(tmp / nb.name, failed / nb.name)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"\nFAILED: {nb.name} with {params_path.name}\n{exc}\n"
              f"The partly executed notebook is in {failed / nb.name}; "
              f"previous outputs in {final} are untouched.", file=sys.stderr)
        return 1
    if any(tmp.iterdir()) and not any(tmp.glob("**/outputs.json")):
        # Exporter.finish() writes outputs.json (the notebook's manifest piece and XLSX workbook)
        print(f"warning: {nb.name} wrote outputs but never called out.finish(): its workbook and "
              f"manifest piece are missing", file=sys.stderr)
    old = run_dir / f".old-{nb.stem}-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    print(f"ok: {nb.name} -> {final}")
    return 0
