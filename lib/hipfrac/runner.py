"""Execute one notebook for one params file with papermill, atomically.

The notebook runs with cwd = notebooks/ and two injected parameters: `params_file` (absolute path)
and `output_dir` (a temporary directory). On success the temporary directory replaces
outputs/.work/<run>/<notebook>/ (the run's staging area; `hipfrac publish` moves a complete, scanned run
to outputs/<run>/); on failure the previous outputs stay untouched, the failing cell and its
traceback are printed, and the partly executed notebook is kept in outputs/<run>/.failed/ to inspect.

The executed notebook keeps only the outputs that came through the Exporter (marked in their metadata:
tables, figures, texts and notes it showed, all disclosure-checked); anything else a cell printed or
displayed (a stray print of a frame, a warning, an inline figure) is dropped, and counted in the runner's
message. The Exporter writes the cells of every output to the run's private audit store
(params.audit_dir, environment variable HIPFRAC_AUDIT_DIR) for the run-level audit (hipfrac.audit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from hipfrac import safepaths
from hipfrac.params import PROJECT_ROOT, load

KERNEL = os.environ.get("HIPFRAC_KERNEL", "hipfrac")


def keep_exporter_outputs(path: Path) -> list[str]:
    """Drop every output of the executed notebook at `path` that did not come through the Exporter (its
    metadata has no "hipfrac" key); execution counts stay. Returns what was dropped ("cell 12: stream
    stderr"), cells numbered as in the source notebook (1 = first cell)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    dropped = []
    injected = sum(1 for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", []))
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        keep = []
        for o in cell.get("outputs", []):
            if "hipfrac" in (o.get("metadata") or {}):
                keep.append(o)
            else:
                what = o.get("name") if o.get("output_type") == "stream" else ",".join(sorted(o.get("data", {})))
                dropped.append(f"cell {k + 1 - injected}: {o.get('output_type')} {what}".rstrip())
        cell.outputs = keep
    nbformat.write(nb, str(path))
    return dropped


@contextmanager
def _environment(env: dict | None):
    """os.environ updated with `env` for the duration (the kernel inherits the runner's environment)."""
    if not env:
        yield
        return
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(notebook: str | Path, params_file: str | Path, env: dict | None = None) -> int:
    """Execute `notebook` for `params_file`; return 0 on success, 1 on failure (message printed).

    env: environment variables for the kernel (e.g. HIPFRAC_AUDIT_PLAN from the run-level audit).
    """
    import papermill as pm

    nb = Path(notebook).resolve()
    params = load(params_file)
    params_path = Path(params_file).resolve() if Path(params_file).exists() else PROJECT_ROOT / params_file
    run_dir = params.work_dir  # published to outputs/<run> by hipfrac.publish
    final = run_dir / nb.stem
    tmp = run_dir / f".tmp-{nb.stem}-{os.getpid()}"
    try:
        safepaths.check_replaceable(final)   # outputs are replaced only in hipfrac's own directories
    except safepaths.NotOwnedError as exc:
        print(f"\nFAILED: {nb.name}: {exc}", file=sys.stderr)
        return 1
    safepaths.ensure_dir(run_dir)
    safepaths.make_owned(tmp)
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    store = params.audit_dir
    store.mkdir(parents=True, exist_ok=True)
    stale = store / f"{nb.stem}.jsonl"  # this notebook's cells from a previous execution
    stale.unlink(missing_ok=True)
    env = {"HIPFRAC_AUDIT_DIR": str(store), **(env or {})}
    try:
        with _environment(env):
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
    if any(p.name != safepaths.MARKER for p in tmp.iterdir()) and not any(tmp.glob("**/outputs.json")):
        # Exporter.finish() writes outputs.json (the notebook's manifest piece and XLSX workbook)
        print(f"warning: {nb.name} wrote outputs but never called out.finish(): its workbook and "
              f"manifest piece are missing", file=sys.stderr)
    dropped = keep_exporter_outputs(tmp / nb.name)
    safepaths.replace(tmp, final)
    note = (f" ({len(dropped)} output(s) not from the Exporter dropped: {'; '.join(dropped[:6])}"
            f"{' ...' if len(dropped) > 6 else ''})") if dropped else ""
    print(f"ok: {nb.name} -> {final}{note}")
    return 0


def _notebook_command(notebook: Path, params_file) -> list[str]:
    """The command executing one notebook in its own process (python -m hipfrac notebook)."""
    return [sys.executable, "-m", "hipfrac", "notebook", str(notebook), "--params", str(params_file)]


def run_notebooks(notebooks, params_file, env: dict | None = None, jobs: int = 1, log=print) -> int:
    """Execute several notebooks for `params_file`, `jobs` at a time; return 0 if every one succeeded.

    jobs = 1 runs them one after another in this process (:func:`run_notebook`). With more jobs each runs in
    its own process (``python -m hipfrac notebook``) with `env` added to its environment (this process's
    environment is not changed); each notebook's output is printed whole when it finishes. Every notebook
    writes only its own staging folder and audit file, so the results do not depend on the order."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [Path(n) for n in notebooks]
    if jobs <= 1 or len(paths) <= 1:
        return max([run_notebook(p, params_file, env=env) for p in paths], default=0)
    full_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}

    def one(p: Path) -> int:
        r = subprocess.run(_notebook_command(p, params_file), env=full_env, capture_output=True, text=True)
        log((r.stdout + r.stderr).rstrip())
        return 0 if r.returncode == 0 else 1

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return max(pool.map(one, paths), default=0)
