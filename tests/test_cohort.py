"""The analysis cohort: contract (columns and types), flowchart conservation, derived variables on hand-made
extracts with known answers, recovery of the synthetic registry's injected imperfections and coverage,
cache behaviour, and the generated dictionary page."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

from cohort_extracts import base_frames, write_run
from hipfrac import cohort

ARROW = {"string": "string", "int": "int64", "float": "double", "bool": "bool", "date": "date32[day]",
         "datetime": "timestamp[us]"}


# ---- hand-made extracts: every derived value known ------------------------------------------------
@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    params = write_run(tmp_path_factory.mktemp("handmade"), base_frames())
    cohort.build(params, verbose=False)
    return params, cohort.load(params).set_index("person_id")


def test_flowchart_on_handmade(handmade):
    params, df = handmade
    flow = cohort.load_companion(params, "flowchart").set_index("label")
    assert (flow["n_in"] == flow["n_excluded"] + flow["n_out"]).all()
    assert (flow["n_out"].iloc[:-1].to_numpy() == flow["n_in"].iloc[1:].to_numpy()).all()
    ex = flow["n_excluded"]
    assert flow["n_in"].iloc[0] == 13                       # 11 NHFR primaries + 2 NPR-only fractures
    assert ex["fracture date outside the study period"] == 2   # P0000009 (2012) and P0000006's 2010 stay
    assert ex["age under 50 years"] == 1 and ex["previous hip fracture within 5 years (washout)"] == 1
    assert ex["pathological fracture (M844, M907, C795)"] == 1
    assert ex["not resident in Norway (residence municipality unknown)"] == 1
    assert sorted(df.index) == ["P0000001", "P0000002", "P0000005", "P0000010"]


def test_clean_extracts_validate_with_warnings_only(handmade):
    params, _ = handmade
    text = (params.cohort_dir / "validation_report.txt").read_text()
    assert text.startswith("Validation: 0 fatal problem(s)")
    assert set(cohort.load_companion(params, "validation_report")["severity"]) == {"warning"}
    ex = cohort.load_companion(params, "extracts")
    assert (ex["n_read"] == ex["n_kept"] + ex["n_dropped"]).all() and ex["n_dropped"].sum() == 0


def test_derived_variables_on_handmade(handmade):
    _, df = handmade
    p1, p2, p5, p10 = (df.loc[k] for k in ["P0000001", "P0000002", "P0000005", "P0000010"])
    assert p1["source"] == "both" and p2["source"] == "nhfr_only"
    assert p1["charlson"] == 3 and p1["cci_chf"] == 1 and p1["cci_diabwc"] == 1 and p1["cci_canc"] == 0
    assert p10["charlson"] == 2 and p10["cci_dementia"] == 1        # index-stay F03 alone would not count
    assert p1["residence"] == "home_care" and p10["residence"] == "nursing_home" and p2["residence"] == "home"
    assert p2["new_nursing_home"] == 1 and p10["new_nursing_home"] == 0
    assert p1["hours_fracture_to_surgery"] == 23 and p1["hours_admission_to_surgery"] == 21
    assert p2["hours_fracture_to_surgery"] == 50 and p2["delay_band"] == ">48h" and p2["surgery_48h"] == 0
    assert p1["reoperation_1y"] == 1 and p2["reoperation_1y"] == 0
    assert p1["dead"] == 1 and p1["followup_days"] == 205 and p1["dead_1y"] == 1 and p1["dead_30d"] == 0
    assert p10["dead_30d"] == 1 and p10["followup_days"] == 10
    assert p2["dead"] == 0 and p2["followup_days"] == (pd.Timestamp("2024-12-31") - pd.Timestamp("2016-03-01")).days
    assert p5["second_hip_fracture"] == 1 and p5["days_to_second_fracture"] == 1461
    assert p5["any_new_fracture"] == 1 and p5["new_fracture_date"] == pd.Timestamp("2016-05-05")
    assert p1["osteo_med_3m"] == 1 and p1["days_to_osteo_med"] == 52
    assert p1["osteo_med_last_date"] == pd.Timestamp("2015-11-01")
    assert p2["osteo_med_before"] == 1 and p2["osteo_med_12m"] == 0       # A10BA02 is not osteoporosis
    assert p1["guideline_implant"] == 1 and p2["guideline_implant"] == 1 and p5["guideline_implant"] == 1
    assert p1["age_band"] == "80-89" and p1["age_band5"] == "80-84" and abs(p1["age"] - 80.24) < 0.01
    assert p1["referral_area"] == "Oslo" and p1["res_region"] == "Helse Sør-Øst"


def test_npr_only_fractures_included_when_asked(tmp_path):
    params = write_run(tmp_path, base_frames(), cohort={"include_npr_only": True})
    cohort.build(params, verbose=False)
    df = cohort.load(params).set_index("person_id")
    assert df.loc["P0000003", "source"] == "npr_only" and pd.isna(df.loc["P0000003", "op_id"])
    assert pd.isna(df.loc["P0000003", "surgery_48h"]) and pd.isna(df.loc["P0000003", "reoperation_1y"])


def test_incidence_events_count_npr_only_fractures_whatever_the_cohort_keeps(tiny_params, tiny_cohort, tmp_path):
    """The incidence companion holds every index fracture (NPR-only ones too): it equals the cohort built
    with include_npr_only, counted by stratum (events and those with an NHFR form)."""
    keys = ["year", "referral_area", "sex", "age_band5"]
    inc = cohort.load_companion(tiny_params, "incidence_events")
    assert not tiny_params.cohort.include_npr_only
    with_npr = tiny_params.model_copy(update={
        "cohort": tiny_params.cohort.model_copy(update={"include_npr_only": True, "out_dir": str(tmp_path)})})
    cohort.build(with_npr, verbose=False)
    full = cohort.load(with_npr)
    assert (full["source"] == "npr_only").sum() > 0
    want = full.groupby(keys).size().rename("events")
    got = inc.set_index(keys)["events"]
    assert got[got > 0].sort_index().equals(want.sort_index().astype("int64"))
    assert inc["events"].sum() == len(full) > len(tiny_cohort)
    reg = full[full["source"] != "npr_only"].groupby(keys).size()
    assert got.index.equals(inc.set_index(keys).index)
    assert inc.set_index(keys)["events_registered"].reindex(reg.index).astype("int64").equals(reg.astype("int64"))
    assert inc["events_registered"].sum() == reg.sum()
    assert cohort.load_companion(with_npr, "incidence_events").equals(inc)


def test_cache_is_reused_and_invalidated(handmade, capsys):
    params, _ = handmade
    mtime = params.cohort_path.stat().st_mtime_ns
    cohort.build(params)
    assert "up to date" in capsys.readouterr().out
    assert params.cohort_path.stat().st_mtime_ns == mtime
    fp = cohort.fingerprint(params)
    changed = params.model_copy(update={"cohort": params.cohort.model_copy(update={"min_age": 60})})
    assert cohort.fingerprint(changed) != fp


def test_load_without_build_is_a_clear_error(tmp_path):
    params = write_run(tmp_path, base_frames(), write=False)
    with pytest.raises(cohort.CohortNotBuiltError, match="make cohort"):
        cohort.load(params)


def test_dictionary_page_is_current():
    assert cohort.dictionary_docs_path().read_text(encoding="utf-8") == cohort.dictionary_markdown()


# ---- the tiny synthetic registry -----------------------------------------------------------------
def test_columns_and_types_equal_the_dictionary(tiny_cohort, tiny_params):
    spec = cohort.dictionary()
    schema = pq.read_schema(tiny_params.cohort_path)
    assert schema.names == list(spec)
    for f in schema:
        assert str(f.type) == ARROW[spec[f.name]["type"]], f.name
        assert f.nullable == bool(spec[f.name].get("nullable")), f.name
    for col, s in spec.items():
        if "codes" in s:
            assert set(tiny_cohort[col].dropna()) <= set(map(str, s["codes"])), col
    assert not tiny_cohort["person_id"].duplicated().any()


def test_previous_hip_fracture_found_in_the_extracts(tiny_cohort, tiny_params, tiny_synth):
    """previous_hip_fracture = an NPR hip fracture stay (S72.0-S72.2) of the person more than the washout
    before the index, counted independently from the extract."""
    from hipfrac.synth import io

    npr = io.read(tiny_synth / "npr_episodes.csv")
    hip = npr[npr["diag_main"].isin(["S720", "S721", "S722"])]
    first = pd.to_datetime(hip.groupby("person_id")["admission_date"].min())
    washout = pd.DateOffset(years=tiny_params.cohort.washout_years)
    earlier = tiny_cohort["person_id"].map(first) < tiny_cohort["fracture_date"] - washout
    assert (tiny_cohort["previous_hip_fracture"] == earlier.astype(int)).all()
    assert 0.005 < tiny_cohort["previous_hip_fracture"].mean() < 0.08


def test_flowchart_conserves_on_synthetic(tiny_cohort, tiny_params):
    flow = cohort.load_companion(tiny_params, "flowchart")
    assert (flow["n_in"] == flow["n_excluded"] + flow["n_out"]).all()
    assert (flow["n_out"].iloc[:-1].to_numpy() == flow["n_in"].iloc[1:].to_numpy()).all()
    assert flow["n_out"].iloc[-1] == len(tiny_cohort)
    drops = cohort.load_companion(tiny_params, "drops").query("stage == 'flowchart'")
    assert drops["n"].sum() == flow["n_excluded"].sum()


# truth.json imperfection -> (source, column, problem text) in the validation report
IMPERFECTIONS = {
    "duplicate_nhfr_forms": ("nhfr_operations", "op_id", "duplicate form"),
    "duplicate_npr_rows": ("npr_episodes", "episode_id", "duplicate key"),
    "impossible_dates_nhfr": ("nhfr_operations", "surgery_datetime", "surgery before fracture"),
    "impossible_dates_npr": ("npr_episodes", "discharge_date", "discharge before admission"),
    "invalid_fracture_type": ("nhfr_operations", "fracture_type", "code list"),
    "invalid_icd10_npr": ("npr_episodes", "diag_main", "ICD-10"),
    "missing_asa": ("nhfr_operations", "asa", "missing value"),
    "missing_cognitive": ("nhfr_operations", "cognitive", "missing value"),
}


def test_recovers_injected_imperfections(tiny_cohort, tiny_params, tiny_synth):
    truth = json.loads((tiny_synth / "truth.json").read_text())["imperfections"]
    rep = cohort.load_companion(tiny_params, "validation_report")
    for name, (src, col, text) in IMPERFECTIONS.items():
        hit = rep[(rep["source"] == src) & (rep["column"] == col) & rep["problem"].str.contains(text)]
        got = int(hit["count"].sum())
        assert got == truth[name], f"{name}: report {got}, truth {truth[name]}"
    # forms missing from NHFR are the operated NPR-only fractures
    cov = cohort.load_companion(tiny_params, "coverage")
    assert cov["n_npr_only"].sum() == truth["nhfr_missing_primary"]
    assert cov["n_nhfr_only"].sum() == 0


def test_coverage_recovers_truth(tiny_cohort, tiny_params, tiny_synth):
    """Per-hospital coverage is binomial around the generator's coverage: chi-square test of fit."""
    truth = json.loads((tiny_synth / "truth.json").read_text())["coverage"]["by_hospital"]
    cov = cohort.load_companion(tiny_params, "coverage").groupby("hospital")[["n_nhfr", "n_total"]].sum()
    p = cov.index.map(truth).to_numpy(float)
    z2 = (cov["n_nhfr"] - cov["n_total"] * p) ** 2 / (cov["n_total"] * p * (1 - p))
    pval = stats.chi2.sf(z2.sum(), len(cov))
    assert pval > 0.001, f"coverage does not fit the truth: chi2={z2.sum():.1f} on {len(cov)} df"
    c = cohort.load_companion(tiny_params, "coverage")
    assert np.allclose(c["coverage"], (c["n_both"] + c["n_nhfr_only"]) / c["n_total"])


def test_rebuild_is_byte_identical(handmade, tmp_path):
    params, _ = handmade
    other = write_run(tmp_path, base_frames())
    cohort.build(other, verbose=False)
    for name in ["cohort", "flowchart", "coverage", "drops", "population", "incidence_events"]:
        a = (params.cohort_dir / f"{name}.parquet").read_bytes()
        b = (other.cohort_dir / f"{name}.parquet").read_bytes()
        assert a == b, name


# ---- national scale (slow: make test-slow) -------------------------------------------------------
@pytest.mark.slow
def test_national_scale_recovers_imperfections_and_coverage(tmp_path_factory):
    """Scale 1 synthetic Norway: every injected imperfection found exactly, NPR-only operated fractures =
    NHFR forms left out, and hospital coverage within binomial noise of the generator's coverage."""
    from hipfrac import synth
    from hipfrac.params import load

    d = tmp_path_factory.mktemp("national")
    spec = {"run": "national", "allow_outside_project": True, "synth": {"scale": 1.0, "seed": 2026, "out_dir": str(d / "synthetic")},
            "cohort": {"out_dir": str(d / "cohort")}}
    (d / "national.yaml").write_text(json.dumps(spec))
    params = load(d / "national.yaml")
    s = params.synth
    synth.generate(params.synth_dir, seed=s.seed, years=s.years, scale=s.scale, imperfections=True, fmt=s.format)
    cohort.build(params, verbose=False)
    truth = json.loads((params.synth_dir / "truth.json").read_text())
    rep = cohort.load_companion(params, "validation_report")
    for name, (src, col, text) in IMPERFECTIONS.items():
        hit = rep[(rep["source"] == src) & (rep["column"] == col) & rep["problem"].str.contains(text)]
        assert int(hit["count"].sum()) == truth["imperfections"][name], name
    cov = cohort.load_companion(params, "coverage")
    assert cov["n_npr_only"].sum() == truth["imperfections"]["nhfr_missing_primary"]
    g = cov.groupby("hospital")[["n_nhfr", "n_total"]].sum()
    p = g.index.map(truth["coverage"]["by_hospital"]).to_numpy(float)
    z2 = (g["n_nhfr"] - g["n_total"] * p) ** 2 / (g["n_total"] * p * (1 - p))
    assert stats.chi2.sf(z2.sum(), len(g)) > 0.001
    assert np.abs(g["n_nhfr"] / g["n_total"] - p).max() < 0.05


def test_typed_parquet_extracts_give_the_same_cohort(handmade, tmp_path):
    """The same extracts delivered as typed parquet (dates as dates, numbers as numbers) link to the same
    cohort as the semicolon CSV files."""
    from hipfrac import ingest, schema
    from hipfrac.params.sources import SourceFile

    params, df = handmade
    ext = tmp_path / "parquet"
    ext.mkdir()
    sources = {}
    for name, spec in schema.TABLES.items():
        types = {c.name: c.dtype for c in spec.columns}
        typed = ingest.read_frame(SourceFile(path=str(params.source_file(name).path)), types).drop(columns="_row")
        typed.to_parquet(ext / f"{name}.parquet", index=False)
        sources[name] = {"path": str(ext / f"{name}.parquet")}
    other = write_run(tmp_path, base_frames(), sources=sources, write=False)
    cohort.build(other, verbose=False)
    pd.testing.assert_frame_equal(cohort.load(other).set_index("person_id"), df)


def test_recode_maps_delivered_hospital_ids_onto_the_contract(handmade, tmp_path):
    """A real delivery with NPR's numeric RESH ids instead of the contract's hospital codes: `recode`
    (inline or a CSV map) gives the same cohort as the contract-coded extracts, and the report counts it."""
    params, base = handmade
    frames = base_frames()
    codes = sorted(set(frames["nhfr_operations"]["hospital"]) | set(frames["npr_episodes"]["hospital"]))
    resh = {c: str(970000000 + i) for i, c in enumerate(codes)}
    for name in ("nhfr_operations", "npr_episodes"):
        frames[name]["hospital"] = frames[name]["hospital"].map(resh)
    (tmp_path / "resh.csv").write_text("resh;hospital\n" + "".join(f"{v};{k}\n" for k, v in resh.items()))
    inverse = {v: k for k, v in resh.items()}
    p = write_run(tmp_path, frames, sources={"nhfr_operations": {"path": str(tmp_path / "extracts" /
                                                                               "nhfr_operations.csv"),
                                                                  "recode": {"hospital": str(tmp_path / "resh.csv")}},
                                             "npr_episodes": {"path": str(tmp_path / "extracts" / "npr_episodes.csv"),
                                                              "recode": {"hospital": inverse}}})
    cohort.build(p, verbose=False)
    pd.testing.assert_frame_equal(cohort.load(p), cohort.load(params))
    rep = cohort.load_companion(p, "validation_report")
    rec = rep[rep["problem"].str.contains("recode")].set_index("source")["count"]
    assert rec["nhfr_operations"] == frames["nhfr_operations"]["hospital"].notna().sum()
    assert rec["npr_episodes"] == frames["npr_episodes"]["hospital"].notna().sum()
    # without the map the RESH ids are another coding: a fatal error that points to `recode`
    from hipfrac.validate import ValidationError

    raw = write_run(tmp_path / "raw", frames)
    with pytest.raises(ValidationError, match="hospital.*code list.*recode"):
        cohort.build(raw, verbose=False)


def test_recode_errors_are_clear(tmp_path):
    from hipfrac import ingest

    bad = tmp_path / "bad.csv"
    bad.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(ingest.IngestError, match="two columns"):
        ingest.recode_map(str(bad))
    twice = tmp_path / "twice.csv"
    twice.write_text("from,to\n1,A\n1,B\n")
    with pytest.raises(ingest.IngestError, match="more than once"):
        ingest.recode_map(str(twice))
    with pytest.raises(ingest.IngestError, match="not found"):
        ingest.recode_map(str(tmp_path / "missing.csv"))
    p = write_run(tmp_path / "r", base_frames(), sources={"death_registry": {
        "path": str(tmp_path / "r" / "extracts" / "death_registry.csv"), "recode": {"hospital": {"1": "A"}}}})
    with pytest.raises(ingest.IngestError, match="recode names column 'hospital'"):
        cohort.build(p, verbose=False)
