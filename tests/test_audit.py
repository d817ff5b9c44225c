"""The run-level audit: what each notebook withheld must stay hidden given everything the run publishes.

Two notebooks publish the same cells (patients of a hospital in a year) in different tables. Each
protects itself against its own outputs only, so their secondary suppression patterns differ and the
union reveals a withheld count; the audit finds it and the re-executed notebook withholds more.
"""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hipfrac import audit, results
from hipfrac.export import Exporter
from hipfrac.params import load

HOSP = ["AHUS", "BAERUM", "DRAMMEN", "KONGSBERG"]  # one region (Helse Sør-Øst)
N19 = [3, 40, 45, 50]
N20 = [30, 900, 31, 800]


def _by_year(years):
    rows = [(h, y, n) for y, ns in ((2019, N19), (2020, N20)) if y in years for h, n in zip(HOSP, ns)]
    df = pd.DataFrame(rows, columns=["hospital", "year", "n"])
    return results.annotate(df, counts=["n"], dims=["hospital", "year"])


def _publish_a(params, d):
    out = Exporter(params, "01_a", output_dir=d / "01_a")
    out.table(_by_year({2019, 2020}), "patients_by_hospital_year")
    out.finish()


def _publish_b(params, d):
    out = Exporter(params, "02_b", output_dir=d / "02_b")
    t = _by_year({2019})
    out.table(t, "patients_2019")
    out.table(results.rename(t, {"n": "n"}).assign(share=t["n"] / t["n"].sum()), "shares_2019")
    out.finish()


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPFRAC_OUTPUTS", str(tmp_path / "outputs"))
    pfile = tmp_path / "audrun.yaml"
    pfile.write_text(yaml.safe_dump({"allow_outside_project": True, "synth": {"out_dir": str(tmp_path / "syn")}}))
    params = load(pfile)
    monkeypatch.setenv("HIPFRAC_AUDIT_DIR", str(params.audit_dir))
    monkeypatch.delenv("HIPFRAC_AUDIT_PLAN", raising=False)
    return params, pfile


def _withheld(d, nb, name):
    t = pd.read_csv(d / nb / "tables" / f"{name}.csv")
    return {(h, int(y)) for h, y, n in zip(t.hospital, t.year, t.n) if np.isnan(n)}


def _recoverable(d):
    """Cells of the union that an attacker determines exactly: the 2019 and 2020 column totals are known
    (published elsewhere as the region's patients), every visible cell of either table is known."""
    known = {}
    for nb, name in (("01_a", "patients_by_hospital_year"), ("02_b", "patients_2019")):
        t = pd.read_csv(d / nb / "tables" / f"{name}.csv")
        for h, y, n in zip(t.hospital, t.year, t.n):
            if not np.isnan(n):
                known[(h, int(y))] = n
    found = {}
    for y, ns in ((2019, N19), (2020, N20)):
        hidden = [h for h in HOSP if (h, y) not in known]
        if len(hidden) == 1:
            found[(hidden[0], y)] = sum(ns) - sum(known[(h, y)] for h in HOSP if h != hidden[0])
    for h, n19, n20 in zip(HOSP, N19, N20):  # hospital totals (both years) assumed published too
        pair = [(h, 2019), (h, 2020)]
        missing = [c for c in pair if c not in known and c not in found]
        if len(missing) == 1:
            other = [c for c in pair if c != missing[0]][0]
            v = known.get(other, found.get(other))
            found[missing[0]] = n19 + n20 - v
    return found


def test_each_notebook_alone_is_safe_but_the_union_is_audited_and_fixed(run, monkeypatch, tmp_path):
    params, pfile = run
    d = params.work_dir
    _publish_a(params, d)
    _publish_b(params, d)
    assert ("AHUS", 2019) in _withheld(d, "01_a", "patients_by_hospital_year")
    before = _recoverable(d)
    assert ("AHUS", 2019) in before and before[("AHUS", 2019)] == 3, \
        "the two notebooks' own protection leaves the small cell recoverable from the union"

    reruns = []

    def fake_run_notebook(path, params_file, env=None):  # what the runner does: re-execute with the plan
        reruns.append(path.stem)
        monkeypatch.setenv("HIPFRAC_AUDIT_PLAN", env["HIPFRAC_AUDIT_PLAN"])
        {"01_a": _publish_a, "02_b": _publish_b}[path.stem](params, d)
        return 0

    from hipfrac import runner

    monkeypatch.setattr(runner, "run_notebook", fake_run_notebook)
    res = audit.run(params, pfile, notebooks_dir=tmp_path, log=lambda *_: None)
    assert reruns, "the audit re-executes a notebook that must withhold more"
    assert not res.exposed
    assert _recoverable(d) == {}
    report = json.loads((params.audit_dir / audit.REPORT).read_text())
    assert report["rounds"] >= 2 and report["exposed"] == [] and report["pending"] == 0
    public = json.loads((d / audit.PUBLIC).read_text())
    assert "value" not in json.dumps(public) and public["exposed"] == 0
    # derived values of a cell the audit withheld are withheld with it
    shares = pd.read_csv(d / "02_b" / "tables" / "shares_2019.csv")
    assert (shares["n"].isna() == shares["share"].isna()).all()


def test_an_exposed_small_count_is_fatal_in_a_real_data_run(run, monkeypatch, capsys):
    params, pfile = run
    d = params.work_dir
    _publish_a(params, d)
    _publish_b(params, d)
    strict = params.model_copy(update={"real_data": True})
    with pytest.raises(SystemExit):
        audit.run(strict, pfile, rerun=False, log=lambda *_: None)
    err = capsys.readouterr().err
    assert "must be withheld" in err and "02_b/table:patients_2019" in err, err
