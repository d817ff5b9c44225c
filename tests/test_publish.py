"""A run is published whole: outputs/<run>/ is replaced only by a complete staging area."""

import pytest
import yaml

from hipfrac import digest
from hipfrac.params import load
from hipfrac.publish import PublishError, publish


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPFRAC_OUTPUTS", str(tmp_path / "outputs"))
    f = tmp_path / "pubrun.yaml"
    f.write_text(yaml.safe_dump({"allow_outside_project": True, "synth": {"out_dir": str(tmp_path / "syn")}}))
    return load(f)


def test_publish_swaps_the_whole_run_and_leaves_no_staging_debris(params):
    work = params.work_dir
    (work / "01_a" / "tables").mkdir(parents=True)
    (work / "01_a" / "tables" / "t.csv").write_text("x\n1\n")
    (work / ".failed").mkdir()
    (work / ".failed" / "02_b.ipynb").write_text("{}")
    (work / ".tmp-02_b-1").mkdir()
    digest.record(work, 5)  # what a clean `hipfrac scan` leaves
    published = publish(params)
    assert published == params.output_dir
    assert (published / "01_a" / "tables" / "t.csv").read_text() == "x\n1\n"
    assert not (published / ".failed").exists() and not (published / ".tmp-02_b-1").exists()

    # the next run: a file that disappeared from staging disappears from the published run too
    (work / "01_a" / "tables" / "t.csv").unlink()
    (work / "01_a" / "tables" / "u.csv").write_text("y\n7\n")
    digest.record(work, 5)
    publish(params)
    assert sorted(p.name for p in (published / "01_a" / "tables").iterdir()) == ["u.csv"]
    assert [p.name for p in published.parent.iterdir() if p.name.startswith(".")] == [".work"]


def test_nothing_to_publish_is_a_clear_error(params):
    with pytest.raises(FileNotFoundError, match="make all"):
        publish(params)


def _staged(params):
    work = params.work_dir
    (work / "01_a" / "tables").mkdir(parents=True)
    (work / "01_a" / "tables" / "t.csv").write_text("x\n10\n")
    return work


def test_publish_refuses_a_run_that_was_never_scanned_clean(params):
    _staged(params)
    with pytest.raises(PublishError, match="no clean disclosure scan"):
        publish(params)
    assert not params.output_dir.exists()


@pytest.mark.parametrize("change", ["edit", "add", "remove"])
def test_publish_refuses_bytes_changed_after_the_scan(params, change):
    work = _staged(params)
    (work / "01_a" / "tables" / "u.csv").write_text("y\n20\n")
    digest.record(work, 5)
    if change == "edit":
        (work / "01_a" / "tables" / "t.csv").write_text("x\n3\n")  # a small count slipped in after the scan
    elif change == "add":
        (work / "01_a" / "leak.csv").write_text("person_id\n123\n")
    else:
        (work / "01_a" / "tables" / "u.csv").unlink()
    with pytest.raises(PublishError, match="changed after its disclosure scan"):
        publish(params)
    assert not params.output_dir.exists()
    assert [p.name for p in params.output_dir.parent.iterdir() if p.name.startswith(".publish")] == []


def test_a_scan_with_findings_forgets_the_digest(params, capsys):
    import argparse

    from hipfrac import scan

    work = _staged(params)
    digest.record(work, 5)
    (work / "01_a" / "tables" / "t.csv").write_text("person_id,birth_date\n01010112345,1931-01-01\n")
    assert scan.cli(argparse.Namespace(path=str(work), min_cell=5)) == 1
    with pytest.raises(PublishError, match="no clean disclosure scan"):
        publish(params)
    (work / "01_a" / "tables" / "t.csv").write_text("x\n10\n")
    assert scan.cli(argparse.Namespace(path=str(work), min_cell=5)) == 0
    assert publish(params) == params.output_dir
