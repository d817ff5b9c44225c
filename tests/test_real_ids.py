"""Real deliveries carry their own pseudonymous ids: `sources.id_format: any` accepts them."""

import pandas as pd
import pytest
import yaml

from hipfrac import cohort
from hipfrac.params import load
from hipfrac.validate import ValidationError


def _relabel(src, dst, fmt="csv"):
    """Copy the tiny registry with every id rewritten into another (real-looking) format."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.csv"):
        df = pd.read_csv(f, sep=";", dtype=str, keep_default_na=False)
        for c in df.columns:
            if c.endswith("_id"):
                df[c] = df[c].where(df[c] == "", "LNR" + df[c].str[1:] + "X")
        df.to_csv(dst / f.name, sep=";", index=False)


def _params(tmp_path, tiny_synth, id_format):
    data = tmp_path / "extracts"
    if not data.exists():
        _relabel(tiny_synth, data)
    spec = {"run": f"ids_{id_format}", "allow_outside_project": True, "synth": {"enabled": False, "out_dir": str(data)},
            "sources": {"id_format": id_format}, "cohort": {"out_dir": str(tmp_path / id_format)}}
    f = tmp_path / f"ids_{id_format}.yaml"
    f.write_text(yaml.safe_dump(spec))
    return load(f)


def test_contract_id_format_stops_on_foreign_ids_and_any_accepts_them(tmp_path, tiny_synth, tiny_cohort):
    with pytest.raises(ValidationError, match="person_id"):
        cohort.build(_params(tmp_path, tiny_synth, "contract"))
    p = _params(tmp_path, tiny_synth, "any")
    cohort.build(p)
    built = cohort.load(p)
    assert len(built) == len(tiny_cohort)
    assert built["person_id"].str.startswith("LNR").all()
