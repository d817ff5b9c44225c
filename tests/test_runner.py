"""The notebook runner: outputs land atomically; a failing notebook leaves the last good outputs."""

import json

import nbformat
import pytest
import yaml

from hipfrac.runner import run_notebook


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hipfrac", "display_name": "Python (hipfrac)", "language": "python"}
    params = nbformat.v4.new_code_cell('params_file = "x"\noutput_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPFRAC_OUTPUTS", str(tmp_path / "outputs"))
    pfile = tmp_path / "runx.yaml"
    pfile.write_text(yaml.safe_dump({"allow_outside_project": True, "synth": {"out_dir": str(tmp_path / "syn")}}))
    return tmp_path, pfile


def test_success_moves_outputs_into_place_and_failure_keeps_them(env, capsys):
    tmp, pfile = env
    nb = tmp / "07_demo.ipynb"
    _notebook(nb, "from pathlib import Path\nPath(output_dir, 'result.txt').write_text('good')")
    assert run_notebook(nb, pfile) == 0
    final = tmp / "outputs" / ".work" / "runx" / "07_demo"
    assert (final / "result.txt").read_text() == "good"
    executed = json.loads((final / "07_demo.ipynb").read_text())
    assert any("output_dir" in "".join(c["source"]) for c in executed["cells"])  # injected parameters

    _notebook(nb, "from pathlib import Path\nPath(output_dir, 'result.txt').write_text('bad')\n"
                  "raise ValueError('boom in cell two')")
    assert run_notebook(nb, pfile) == 1
    err = capsys.readouterr().err
    assert "boom in cell two" in err and "FAILED" in err
    assert (final / "result.txt").read_text() == "good", "last good outputs must survive a failure"
    assert (tmp / "outputs" / ".work" / "runx" / ".failed" / "07_demo.ipynb").exists()
    leftovers = [p.name for p in (tmp / "outputs" / ".work" / "runx").iterdir() if p.name.startswith((".tmp", ".old"))]
    assert not leftovers


def test_executed_notebook_keeps_only_exporter_outputs_and_gets_the_audit_store(env, capsys):
    tmp, pfile = env
    nb = tmp / "08_demo.ipynb"
    _notebook(nb, "import os\nfrom pathlib import Path\nfrom IPython.display import Markdown, display\n"
                  "print('hospital X: 3 patients, 1 died')\n"               # a stray print of a small count
                  "display(Markdown('not through the Exporter: 2 of 3'))\n"
                  "display(Markdown('*through the Exporter*'), metadata={'hipfrac': {'output': 'markdown'}})\n"
                  "Path(output_dir, 'env.txt').write_text(os.environ['HIPFRAC_AUDIT_DIR'] + '|' + "
                  "os.environ.get('HIPFRAC_TEST_FLAG', ''))\n"
                  "'a cell value printed as Out[]'")
    from hipfrac.params import load

    store = load(pfile).audit_dir
    store.mkdir(parents=True)
    (store / "08_demo.jsonl").write_text('{"stale": true}\n')
    assert run_notebook(nb, pfile, env={"HIPFRAC_TEST_FLAG": "on"}) == 0
    assert "3 output(s) not from the Exporter dropped" in capsys.readouterr().out
    final = tmp / "outputs" / ".work" / "runx" / "08_demo"
    executed = nbformat.read(final / "08_demo.ipynb", as_version=4)
    outs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert len(outs) == 1 and "through the Exporter" in json.dumps(outs[0])
    assert "3 patients" not in json.dumps(outs) and "2 of 3" not in json.dumps(outs)
    assert (final / "env.txt").read_text() == f"{store}|on"
    assert not (store / "08_demo.jsonl").exists(), "the notebook's cells of an earlier execution are removed"
    import os

    assert "HIPFRAC_TEST_FLAG" not in os.environ


def test_run_notebooks_in_parallel_processes_pass_the_plan_and_report_failure(tmp_path, monkeypatch):
    """The audit re-executes a round's notebooks side by side, each in its own process: every process gets
    the plan in its environment (this process's environment is not changed) and one failure fails all."""
    import os
    import sys

    from hipfrac import runner

    def command(nb, params_file):
        code = ("import os, pathlib, sys; p = pathlib.Path(sys.argv[1]); "
                "p.with_suffix('.env').write_text(os.environ.get('HIPFRAC_AUDIT_PLAN', '')); "
                "sys.exit(1 if p.stem == 'bad' else 0)")
        return [sys.executable, "-c", code, str(nb)]

    monkeypatch.setattr(runner, "_notebook_command", command)
    monkeypatch.delenv("HIPFRAC_AUDIT_PLAN", raising=False)
    logged = []
    good = [tmp_path / "a.ipynb", tmp_path / "b.ipynb", tmp_path / "c.ipynb"]
    assert runner.run_notebooks(good, "p.yaml", env={"HIPFRAC_AUDIT_PLAN": "plan.json"}, jobs=2,
                                log=logged.append) == 0
    assert [(tmp_path / f"{n}.env").read_text() for n in "abc"] == ["plan.json"] * 3
    assert "HIPFRAC_AUDIT_PLAN" not in os.environ and len(logged) == 3
    assert runner.run_notebooks(good + [tmp_path / "bad.ipynb"], "p.yaml", jobs=2, log=logged.append) == 1
