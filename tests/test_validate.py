"""Bad-input battery: each problem injected into small hand-made extracts gives its clear message; fatal
problems stop the build naming file, column and rows; warnings are counted; nothing disappears uncounted."""

import pandas as pd
import pytest

from cohort_extracts import base_frames, write_run
from hipfrac import cohort
from hipfrac.validate import ValidationError


def _build(tmp_path, mutate=None, **cohort_opts):
    frames = base_frames()
    if mutate:
        mutate(frames)
    params = write_run(tmp_path, frames, cohort=cohort_opts or None)
    cohort.build(params, verbose=False)
    report = cohort.load_companion(params, "validation_report")
    return params, frames, report


def _problem(report, source, column, problem):
    r = report[(report["source"] == source) & (report["column"] == column)
               & report["problem"].str.contains(problem, regex=False)]
    assert len(r) == 1, f"expected one '{problem}' in {source}.{column}; report:\n{report.to_string()}"
    return r.iloc[0]


def _accounted(params, frames):
    """Every row read is kept or dropped with a reason."""
    ex = cohort.load_companion(params, "extracts").set_index("source")
    drops = cohort.load_companion(params, "drops")
    for src, row in ex.iterrows():
        assert row["n_read"] == len(frames[src])
        assert row["n_read"] == row["n_kept"] + row["n_dropped"]
        assert drops.loc[(drops["stage"] == "validation") & (drops["source"] == src), "n"].sum() == row["n_dropped"]


# ---- fatal ---------------------------------------------------------------------------------------
def test_missing_required_column_is_fatal_and_named(tmp_path):
    def mutate(f):
        f["nhfr_operations"] = f["nhfr_operations"].drop(columns=["surgery_datetime"])
    with pytest.raises(ValidationError) as e:
        _build(tmp_path, mutate)
    msg = str(e.value)
    assert "nhfr_operations.csv" in msg and "'surgery_datetime'" in msg and "required column missing" in msg


def test_wrong_type_is_fatal_with_rows(tmp_path):
    def mutate(f):
        f["nhfr_operations"]["asa"] = "three"
    with pytest.raises(ValidationError) as e:
        _build(tmp_path, mutate)
    msg = str(e.value)
    assert "nhfr_operations.csv" in msg and "column 'asa'" in msg and "wrong type" in msg
    assert "rows 1, 2, 3, 4, 5, ..." in msg


def test_rename_maps_a_delivery_onto_the_contract(tmp_path):
    frames = base_frames()
    frames["death_registry"] = frames["death_registry"].rename(columns={"death_date": "DODSDATO"})
    params = write_run(tmp_path, frames, sources={"death_registry": {"rename": {"DODSDATO": "death_date"}}})
    cohort.build(params, verbose=False)
    assert cohort.load(params)["dead"].sum() == 2


# ---- warnings (all injected into one set of extracts, built once) ---------------------------------
def _inject(f):
    n, npr = f["nhfr_operations"], f["npr_episodes"]
    npr.loc[0, "admission_date"] = "2013-13-45"       # unparseable date: P0000001's Charlson stay
    npr.loc[3, "diag_main"] = "S72.1X"                # not ICD-10 as delivered
    npr.loc[4, "procedures"] = "NFJ52 12345"          # NCSP list with a bad code
    npr.loc[11, "discharge_date"] = "2018-01-01"      # discharge before admission
    f["prescriptions"].loc[0, "atc"] = "M05"          # not a level-5 ATC code
    f["kpr_services"].loc[0, "municipality"] = "12"   # not a municipality number
    n.loc[n.op_id == "O00000011", "hospital"] = "NOWHERE"          # unknown hospital
    n.loc[n.op_id == "O00000001", "fracture_type"] = "garden4"     # not a fracture type code
    n.loc[n.op_id == "O00000002", "surgery_datetime"] = "2016-02-28 10:00"   # surgery before fracture
    f["death_registry"].loc[1, "death_date"] = "2019-01-01"        # P0000010 dies before the fracture
    s = f["ssb_persons"]
    s.loc[s.person_id == "P0000005", "sex"] = ""                   # missing sex
    f["nhfr_operations"] = pd.concat([n, n.iloc[[0, 0]]], ignore_index=True)   # duplicate keys


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("battery")
    params, frames, rep = _build(tmp, _inject)
    return params, frames, rep, cohort.load(params).set_index("person_id"), \
        cohort.load_companion(params, "flowchart").set_index("label")


def test_nothing_disappears_uncounted(battery):
    params, frames, rep, df, flow = battery
    _accounted(params, frames)
    assert (flow["n_in"] == flow["n_excluded"] + flow["n_out"]).all()
    assert flow["n_out"].iloc[-1] == len(df)


def test_unparseable_date_is_dropped_and_counted(battery):
    params, frames, rep, df, flow = battery
    r = _problem(rep, "npr_episodes", "admission_date", "unparseable date")
    assert r["severity"] == "warning" and r["count"] == 1 and r["example_rows"] == "1" and r["action"] == "drop"
    drops = cohort.load_companion(params, "drops")
    assert drops.query("source == 'npr_episodes'")["reason"].tolist() == ["unparseable date (admission_date)"]
    assert df.loc["P0000001", "charlson"] == 0          # the dropped stay held its comorbidity


def test_codes_outside_code_lists(battery):
    params, frames, rep, df, flow = battery
    assert _problem(rep, "npr_episodes", "diag_main", "ICD-10")["example_rows"] == "4"
    assert _problem(rep, "npr_episodes", "procedures", "NCSP")["example_rows"] == "5"
    assert _problem(rep, "prescriptions", "atc", "ATC")["count"] == 1
    assert _problem(rep, "kpr_services", "municipality", "municipality")["count"] == 1
    r = _problem(rep, "nhfr_operations", "hospital", "code list")
    assert r["example_rows"] == "12" and r["action"] == "null"
    # the duplicates (checked later) carry the bad code too
    assert _problem(rep, "nhfr_operations", "fracture_type", "code list")["example_rows"] == "1 13 14"
    assert pd.isna(df.loc["P0000001", "fracture_type"]) and df.loc["P0000001", "osteo_med_3m"] == 0


def test_duplicate_keys_dropped_and_counted(battery):
    params, frames, rep, df, flow = battery
    r = _problem(rep, "nhfr_operations", "op_id", "duplicate key")
    assert r["count"] == 2 and r["example_rows"] == "13 14"
    assert (df.index == "P0000001").sum() == 1


def test_impossible_orders(battery):
    params, frames, rep, df, flow = battery
    assert _problem(rep, "nhfr_operations", "surgery_datetime", "surgery before fracture")["example_rows"] == "3"
    assert _problem(rep, "npr_episodes", "discharge_date", "discharge before admission")["example_rows"] == "12"
    assert _problem(rep, "death_registry", "death_date", "death before fracture")["example_rows"] == "2"
    assert pd.isna(df.loc["P0000002", "hours_fracture_to_surgery"]) and pd.isna(df.loc["P0000002", "surgery_48h"])
    assert flow.loc["invalid record: death before the fracture", "n_excluded"] == 1
    assert "P0000010" not in df.index


def test_unknown_to_ssb_missing_identity_unknown_hospital(battery):
    params, frames, rep, df, flow = battery
    assert _problem(rep, "nhfr_operations", "person_id", "person unknown to SSB")["example_rows"] == "9"
    assert _problem(rep, "ssb_persons", "sex", "missing value")["count"] == 17
    assert flow.loc["person unknown to SSB (no identity or residence data)", "n_excluded"] == 1
    assert flow.loc["missing sex or birth date", "n_excluded"] == 1
    assert "P0000005" not in df.index and "P0000008" not in df.index


def test_other_coding_is_fatal(tmp_path):
    def mutate(f):
        f["npr_episodes"]["diag_main"] = f["npr_episodes"]["diag_main"].str[:3] + "." + \
            f["npr_episodes"]["diag_main"].str[3:]                      # ICD-10 delivered with dots
    with pytest.raises(ValidationError) as e:
        _build(tmp_path, mutate)
    msg = str(e.value)
    assert "npr_episodes.csv" in msg and "column 'diag_main'" in msg and "another coding" in msg
