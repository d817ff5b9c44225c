"""A run is published whole: outputs/<run>/ is replaced only by a complete staging area."""

import pytest
import yaml

from hipfrac.params import load
from hipfrac.publish import publish


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPFRAC_OUTPUTS", str(tmp_path / "outputs"))
    f = tmp_path / "pubrun.yaml"
    f.write_text(yaml.safe_dump({"synth": {"out_dir": str(tmp_path / "syn")}}))
    return load(f)


def test_publish_swaps_the_whole_run_and_leaves_no_staging_debris(params):
    work = params.work_dir
    (work / "01_a" / "tables").mkdir(parents=True)
    (work / "01_a" / "tables" / "t.csv").write_text("x\n1\n")
    (work / ".failed").mkdir()
    (work / ".failed" / "02_b.ipynb").write_text("{}")
    (work / ".tmp-02_b-1").mkdir()
    published = publish(params)
    assert published == params.output_dir
    assert (published / "01_a" / "tables" / "t.csv").read_text() == "x\n1\n"
    assert not (published / ".failed").exists() and not (published / ".tmp-02_b-1").exists()

    # the next run: a file that disappeared from staging disappears from the published run too
    (work / "01_a" / "tables" / "t.csv").unlink()
    (work / "01_a" / "tables" / "u.csv").write_text("y\n7\n")
    publish(params)
    assert sorted(p.name for p in (published / "01_a" / "tables").iterdir()) == ["u.csv"]
    assert [p.name for p in published.parent.iterdir() if p.name.startswith(".")] == [".work"]


def test_nothing_to_publish_is_a_clear_error(params):
    with pytest.raises(FileNotFoundError, match="make all"):
        publish(params)
