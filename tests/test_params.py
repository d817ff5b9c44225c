"""Params files are validated on load: unknown keys, wrong types and bad values give clear errors."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from hipfrac.params import ParamsError, load

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_params_file_loads(path):
    p = load(path)
    assert p.run == path.stem
    assert p.cohort.period_start <= p.cohort.period_end


def _write(tmp_path, text, name="run1.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_unknown_top_level_key_names_key_and_file(tmp_path):
    f = _write(tmp_path, "cohrt:\n  min_age: 60\n")
    with pytest.raises(ParamsError) as exc:
        load(f)
    msg = str(exc.value)
    assert "run1.yaml" in msg and "unknown key 'cohrt'" in msg and "cohort" in msg


def test_unknown_nested_key_lists_allowed_keys(tmp_path):
    f = _write(tmp_path, "cohort:\n  min_agee: 60\n")
    with pytest.raises(ParamsError) as exc:
        load(f)
    msg = str(exc.value)
    assert "unknown key 'cohort.min_agee'" in msg and "min_age" in msg


def test_wrong_type_and_range_are_reported(tmp_path):
    f = _write(tmp_path, "synth:\n  scale: lots\ncohort:\n  washout_years: -1\n")
    with pytest.raises(ParamsError) as exc:
        load(f)
    msg = str(exc.value)
    assert "synth.scale" in msg and "cohort.washout_years" in msg


def test_bad_run_id_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="run id"):
        load(_write(tmp_path, "run: 'a/b'\n"))
    with pytest.raises(ParamsError, match="not valid YAML"):
        load(_write(tmp_path, "cohort: [unclosed\n", "bad.yaml"))
    with pytest.raises(ParamsError, match="not found"):
        load(tmp_path / "nope.yaml")


def test_defaults_and_derived_paths(tmp_path):
    p = load(_write(tmp_path, "synth:\n  out_dir: data/synthetic/x\n"))
    assert p.run == "run1"
    assert p.export.min_cell == 5 and p.real_data is False and p.cohort.min_age == 50
    assert p.cohort_path.parts[-3:] == ("cohort", "run1", "cohort.parquet")
    src = p.source_file("npr_episodes")
    assert src.path.endswith("data/synthetic/x/npr_episodes.csv")
    with pytest.raises(KeyError):
        p.source_file("nope")


def test_params_are_immutable_and_fingerprinted(tmp_path):
    p = load(_write(tmp_path, ""))
    with pytest.raises(ValidationError):
        p.real_data = True  # type: ignore[misc]
    assert p.fingerprint() == load(_write(tmp_path, "")).fingerprint()
    assert p.fingerprint() != load(_write(tmp_path, "real_data: true\n")).fingerprint()
