"""Provenance: the run manifest fingerprints inputs and outputs, names the commit, and two notebook
runs on the same inputs give byte-identical tables."""

import hashlib
import json
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
import yaml

from hipfrac import manifest
from hipfrac.params import PROJECT_ROOT, load


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A params file whose synthetic extracts, cohort and outputs live in tmp_path."""
    monkeypatch.setenv("HIPFRAC_OUTPUTS", str(tmp_path / "outputs"))
    syn, coh = tmp_path / "syn", tmp_path / "coh"
    syn.mkdir()
    coh.mkdir()
    (syn / "nhfr_operations.csv").write_text("op_id;person_id\nO00000001;P0000001\n")
    (syn / "death_registry.csv").write_text("person_id;death_date\n")
    (syn / "truth.json").write_text('{"seed": 7}\n')
    pd.DataFrame({"a": [1, 2]}).to_parquet(coh / "cohort.parquet")
    pfile = tmp_path / "mrun.yaml"
    pfile.write_text(yaml.safe_dump({"allow_outside_project": True, "synth": {"out_dir": str(syn)},
                                     "cohort": {"out_dir": str(coh)}}))
    return tmp_path, pfile


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_manifest_contents(fake_run):
    import matplotlib

    matplotlib.use("Agg")
    from test_export import exported_copy

    tmp, pfile = fake_run
    params = load(pfile)
    run_dir = params.output_dir
    exported_copy(run_dir / "99_demo")
    (run_dir / "supplement").mkdir()
    (run_dir / "supplement" / "index.html").write_text("<html></html>")
    path = manifest.write(params, pfile)
    assert path == run_dir / "manifest.json"
    man = json.loads(path.read_text())

    assert man["run"] == "mrun" and man["params"] == params.resolved()
    assert man["params_fingerprint"] == params.fingerprint()
    inputs = {i["path"]: i for i in man["inputs"]}
    for f in (tmp / "syn" / "nhfr_operations.csv", tmp / "syn" / "truth.json", tmp / "coh" / "cohort.parquet", pfile):
        entry = inputs[str(f)]
        assert entry["sha256"] == _sha(f) and entry["size"] == f.stat().st_size
    git = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert man["git"]["commit"] == git.stdout.strip() and isinstance(man["git"]["dirty"], bool)
    assert man["packages"]["pandas"] == pd.__version__ and man["packages"]["python"]
    assert man["platform"]["machine"]
    assert man["started"] <= man["finished"] <= man["manifest_written"]
    outs = {o["path"]: o for o in man["outputs"]}
    assert "manifest.json" not in outs and not any(p.startswith("supplement/") for p in outs)
    csv = run_dir / "99_demo" / "tables" / "funnel.csv"
    assert outs["99_demo/tables/funnel.csv"]["sha256"] == _sha(csv)
    assert "99_demo/figures/funnel.pdf" in outs and "99_demo/outputs.json" in outs
    nb = man["notebooks"][0]
    assert nb["notebook"] == "99_demo" and [t["name"] for t in nb["tables"]] == ["funnel", "cox"]
    assert man["suppressed_cells"]["primary"] == 1


def test_manifest_cli(fake_run):
    tmp, pfile = fake_run
    r = subprocess.run([sys.executable, "-m", "hipfrac", "manifest", "--params", str(pfile)],
                       capture_output=True, text=True, env={**__import__("os").environ})
    assert r.returncode == 0, r.stderr
    assert "manifest:" in r.stdout and (tmp / "outputs" / "mrun" / "manifest.json").exists()


NOTEBOOK_BODY = """
import pandas as pd, numpy as np
import hipfrac.params
from hipfrac.export import Exporter
params = hipfrac.params.load(params_file)
out = Exporter(params, notebook="98_determinism", output_dir=output_dir)
rng = np.random.default_rng(params.synth.seed)
df = pd.DataFrame({"hospital": [f"H{i:02d}" for i in range(12)], "n": rng.integers(3, 400, 12)})
df["events"] = (df.n * rng.uniform(0.6, 0.95, 12)).round().astype(int)
df["prop"] = df.events / df.n
out.table(df, "overview", counts=["n", "events"], derived={"events": ["prop"], "n": ["prop"]})
out.finish()
"""


def test_two_notebook_runs_give_identical_tables(fake_run):
    """The real path: papermill executes a notebook twice; its tables are byte-identical and the run
    manifest lists them with the same hashes (figures: test_export, without a kernel)."""
    from hipfrac.runner import run_notebook

    tmp, pfile = fake_run
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hipfrac", "display_name": "Python (hipfrac)", "language": "python"}
    par = nbformat.v4.new_code_cell('params_file = "../params/smoke.yaml"\noutput_dir = None')
    par.metadata["tags"] = ["parameters"]
    nb.cells = [par, nbformat.v4.new_code_cell(NOTEBOOK_BODY)]
    path = tmp / "98_determinism.ipynb"
    nbformat.write(nb, path)
    params = load(pfile)
    out_dir = params.work_dir / "98_determinism"
    hashes = []
    for _ in range(2):
        assert run_notebook(path, pfile) == 0
        files = sorted(p for p in out_dir.rglob("*") if p.suffix in (".csv", ".md", ".tex", ".xlsx", ".png", ".pdf"))
        hashes.append({p.relative_to(out_dir).as_posix(): _sha(p) for p in files})
        manifest.write(params, pfile, params.work_dir)
    assert hashes[0] == hashes[1] and "tables/overview.csv" in hashes[0]
    man = json.loads((params.work_dir / "manifest.json").read_text())
    listed = {o["path"]: o["sha256"] for o in man["outputs"]}
    assert listed["98_determinism/tables/overview.csv"] == hashes[0]["tables/overview.csv"]
    assert "98_determinism/98_determinism.ipynb" in listed
