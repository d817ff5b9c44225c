"""Committed notebooks carry no outputs (they could leak person-level data on real runs) and are thin."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_a_parameters_cell(nb):
    doc = json.loads(nb.read_text())
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    stored = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not stored, f"{nb.name}: code cells {stored} carry outputs or execution counts; strip them"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    assert "params_file" in src and "output_dir" in src
    assert doc["metadata"].get("kernelspec", {}).get("name") == "hipfrac"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_writes_outputs_only_through_the_exporter(nb):
    doc = json.loads(nb.read_text())
    src = "\n".join("".join(c["source"]) for c in doc["cells"] if c["cell_type"] == "code")
    for forbidden in (".to_csv(", ".savefig(", "to_excel(", "sys.path", ".head(", ".sample("):
        assert forbidden not in src, f"{nb.name} uses {forbidden}: write through hipfrac.export / no person-level displays"
