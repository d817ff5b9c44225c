"""Notebook 00's results carry their disclosure metadata (issue 13): Table 1, flowchart, extracts, coverage,
completeness, registrations, self-sufficiency, incidence; and the figures draw withheld values as such."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from disclosure_attacks import attack_run  # noqa: E402
from hipfrac import coverage, incidence, overview, protection, results, table1  # noqa: E402
from hipfrac.export import Exporter  # noqa: E402
from hipfrac.figures import cohort as cohortfig  # noqa: E402
from hipfrac.params import load  # noqa: E402


def _tiny_cohort() -> pd.DataFrame:
    """Three regions; small cells in sex, cognitive, fracture type (a missing of 1) and hours."""
    rows = []
    spec = {"Helse Nord": 12, "Helse Vest": 30, "Helse Midt-Norge": 25}
    k = 0
    for region, n in spec.items():
        for i in range(n):
            k += 1
            rows.append({"res_region": region, "sex": "male" if i < (3 if region == "Helse Nord" else n // 3) else "female",
                         "cognitive": "yes" if i % 7 == 0 else ("uncertain" if (region == "Helse Vest" and i < 2) else "no"),
                         "fracture_type": (None if (region == "Helse Nord" and i == 0) else
                                           "subtroch" if i % 9 == 1 else "fn_displaced" if i % 2 else "troch_a1"),
                         "birth_country": "norway" if i > 1 else "other",
                         "age": 60 + (k * 7) % 40, "hours_fracture_to_surgery": np.nan if k == 5 else float(k % 50)})
    c = pd.DataFrame(rows)
    c["fracture_group"] = c["fracture_type"].map(lambda t: None if t is None else
                                                 {"subtroch": "subtrochanteric", "fn_displaced": "femoral_neck",
                                                  "troch_a1": "trochanteric"}[t])
    return results.with_population(c, [], "patients")


CAT = ["sex", "cognitive", "birth_country", "fracture_group", "fracture_type"]
CONT = ["age", "hours_fracture_to_surgery"]


def _t1(c, groupby="res_region"):
    return table1.table_one(c, groupby, categorical=CAT, continuous=CONT, nonnormal=["hours_fracture_to_surgery"])


def test_table1_long_result_withholds_small_cells_and_their_derived_values():
    c = _tiny_cohort()
    t = _t1(c)
    assert {"variable", "level", "group", "n", "pct", "mean", "sd", "median", "q1", "q3"} <= set(t.columns)
    assert set(t["group"]) == {"Overall", "Helse Nord", "Helse Vest", "Helse Midt-Norge"}
    # every level in every group (zeros included), missing as a level; norway is a level, not the total
    ft = t[t["variable"] == "fracture_type"]
    assert ft.groupby("group").size().nunique() == 1 and "missing" in set(ft["level"])
    pr = protection.protect(t, 5, strict=True)
    safe = pr.frame
    small = (t["n"] >= 1) & (t["n"] <= 4)
    assert small.any() and safe.loc[small, "n"].isna().all()
    assert safe.loc[small, "pct"].isna().all()
    assert not any(str(c).startswith("_") for c in safe.columns)
    # the fracture group's missing (1) is withheld in the group and in its types (one cell)
    miss = safe[(safe["level"] == "missing") & safe["variable"].isin(["fracture_group", "fracture_type"])
                & (safe["group"] == "Helse Nord")]
    assert miss["n"].isna().all()
    # each group's levels add up to its size: no group has exactly one withheld level of a variable
    for (_v, _g), d in safe[safe["variable"].isin(CAT)].groupby(["variable", "group"]):
        assert d["n"].isna().sum() != 1
    # Overall minus the visible regions: no level has exactly one withheld cell across the four groups
    for (_v, _lev), d in safe[safe["variable"].isin(CAT)].groupby(["variable", "level"]):
        assert d["n"].isna().sum() != 1


def test_table1_display_never_prints_a_false_mark_and_matches_tableone():
    import tableone

    c = _tiny_cohort()
    safe = protection.protect(_t1(c), 5).frame
    wide = table1.display(safe, table1.smd_table(safe), nonnormal=["hours_fracture_to_surgery"])
    assert results.is_result(wide)
    text = wide.astype(str).to_numpy().ravel()
    assert not any(s.strip().startswith("<") and "0.001" not in s for s in text)
    assert "s" in set(text)
    # published cells are tableone's
    d = c[CAT + CONT + ["res_region"]].copy()
    for v in CAT:
        d[v] = d[v].astype("string").fillna("missing").astype(str)
    ref = tableone.TableOne(d, columns=CONT + CAT, categorical=CAT, continuous=CONT,
                            nonnormal=["hours_fracture_to_surgery"], groupby="res_region", missing=False,
                            overall=True, decimals=1, pval=False, smd=True).tableone
    ref.columns = [x[-1] if isinstance(x, tuple) else x for x in ref.columns]
    ref = ref.reset_index()
    ref.columns = ["variable", "level"] + list(ref.columns[2:])
    m = wide.merge(ref.astype(str), on=["variable", "level"], suffixes=("", "_ref"))
    assert len(m) >= 15
    checked = 0
    for col in [x for x in wide.columns if x not in ("variable", "level")]:
        for a, b in zip(m[col], m[col + "_ref"]):
            if a not in ("s", ""):
                assert a.replace("<0.001", "0.000") == b.replace("<0.001", "0.000") or \
                    (col.startswith("SMD") and abs(float(a.lstrip("<")) - float(b.lstrip("<"))) < 1e-3), (col, a, b)
                checked += 1
    assert checked >= 30
    # an SMD is published only when every count it uses is
    smd = table1.smd_table(safe)
    withheld_vars = set(safe.loc[safe["n"].isna(), "variable"])
    assert smd[smd["variable"].isin(withheld_vars)]["smd"].isna().any()


def _run_dir(tmp_path, monkeypatch, fill):
    key = tmp_path / "key"
    monkeypatch.setenv("HIPFRAC_ANSWER_KEY", str(key))
    run = tmp_path / "run"
    out = Exporter(load("params/smoke.yaml"), "00_tiny", output_dir=run / "00_tiny")
    fill(out)
    out.finish()
    return run, key


def test_table1_written_run_resists_the_attacks(tmp_path, monkeypatch):
    c = _tiny_cohort()

    def fill(out):
        out.table(_t1(c, None), "table1_overall")
        t = _t1(c)
        out.table(t, "table1_by_region")
        safe = out.protect(t)
        out.table(table1.display(safe, table1.smd_table(safe)), "table1_by_region_formatted")

    run, key = _run_dir(tmp_path, monkeypatch, fill)
    rep = attack_run(run, answer_key=key, min_cell=5, cohort=c, joint=False,
                     classes=("table1", "differencing", "hierarchy", "within_row"))
    examined = rep.classes["table1"].examined
    assert examined >= 5  # the attack saw the withheld cells
    assert rep.successes() == [] and rep.leaks() == []


def test_flowchart_steps_are_a_chain_and_a_small_exclusion_is_withheld_with_its_neighbours(tmp_path, monkeypatch):
    flow = pd.DataFrame({"step": [1, 2, 3, 4], "label": ["a", "b", "reviewer step", "d"],
                         "n_in": [500, 400, 390, 387], "n_excluded": [100, 10, 3, 0],
                         "n_out": [400, 390, 387, 387]})
    f = overview.flowchart(flow)
    pr = protection.protect(f, 5, strict=True)
    assert pd.isna(pr.frame.at[2, "n_excluded"])
    # not recoverable from the running counts: n_in - n_out of step 3 is hidden
    assert pd.isna(pr.frame.at[2, "n_in"]) or pd.isna(pr.frame.at[2, "n_out"])
    assert pr.primary >= 1
    with pytest.raises(ValueError, match="do not add up"):
        overview.flowchart(flow.assign(n_out=[400, 391, 387, 387]))

    def fill(out):
        out.table(overview.flowchart(flow), "flowchart")
        out.figure("flowchart", cohortfig.flowchart_figure, overview.flowchart(flow))

    run, key = _run_dir(tmp_path, monkeypatch, fill)
    import json

    meta = json.loads((run / "00_tiny" / "tables" / "flowchart.meta.json").read_text())
    assert [2, "n_excluded"] in meta["suppressed"]["cells"] and meta["suppressed"]["primary"] >= 1
    rep = attack_run(run, answer_key=key, min_cell=5, joint=False)
    assert rep.successes() == [] and rep.leaks() == []


def test_extracts_and_validation_report_are_records_not_patients():
    e = overview.extracts(pd.DataFrame({"source": ["a", "b"], "format": ["csv", "csv"], "n_read": [100, 50],
                                        "n_dropped": [3, 0], "n_kept": [97, 50]}))
    assert e.attrs[results.KEY]["universe"] == "records:{source}"
    cells = results.row_cells(results.Meta(e))
    assert cells[(0, "n_read")].universe == "records:a" and cells[(1, "n_read")].universe == "records:b"
    pr = protection.protect(e, 5, strict=True)
    assert pd.isna(pr.frame.at[0, "n_dropped"])
    assert pd.isna(pr.frame.at[0, "n_read"]) or pd.isna(pr.frame.at[0, "n_kept"])
    # records of two files never add up: the other file's counts are not complements
    assert pr.frame.loc[1, ["n_read", "n_dropped", "n_kept"]].notna().all()
    v = overview.validation_report(pd.DataFrame({"source": ["a", "a"], "column": ["x", "y"], "problem": ["p", "q"],
                                                 "severity": ["warning"] * 2, "action": ["keep", "drop"],
                                                 "count": [2, 40]}))
    pv = protection.protect(v, 5, strict=True)
    assert pd.isna(pv.frame.at[0, "count"]) and pv.frame.at[1, "count"] == 40


def test_coverage_withholds_small_linked_counts_and_the_coverage_built_on_them():
    cov = pd.DataFrame({"hospital": ["AHUS", "AHUS", "Bodø", "Bodø"], "year": [2014, 2015, 2014, 2015],
                        "n_both": [50, 60, 40, 45], "n_nhfr_only": [0, 1, 0, 0], "n_npr_only": [10, 2, 8, 9]})
    t = coverage.coverage_table(cov, ["hospital", "year"], years=(2014, 2015))
    m = t.attrs[results.KEY]
    assert m["universe"] == "records:coverage" and ["#period", "2014-2015"] in m["population"]
    pr = protection.protect(t, 5, strict=True)
    i = t.index[(t["hospital"] == "AHUS") & (t["year"] == 2015)][0]
    assert pd.isna(pr.frame.at[i, "n_npr_only"]) and pd.isna(pr.frame.at[i, "coverage"])
    assert pd.isna(pr.frame.at[i, "n_nhfr_only"]) and pd.isna(pr.frame.at[i, "level"])
    # the other year of the hospital is a complement (else the hospital total would give it away)
    assert pr.secondary >= 1


def test_completeness_registrations_and_self_sufficiency_protect_small_complements():
    c = pd.DataFrame({"hospital": ["H1"] * 30 + ["H2"] * 30, "asa": [1.0] * 28 + [np.nan] * 2 + [2.0] * 30,
                      "source": ["both"] * 60, "year": [2014] * 30 + [2014] * 27 + [2015] * 3,
                      "referral_area": ["Bergen"] * 28 + ["Fonna"] * 32,
                      "hosp_trust": ["T1"] * 30 + ["T2"] * 30, "res_trust": ["T1"] * 27 + ["T2"] * 33,
                      "hosp_region": ["R"] * 60, "res_region": ["R"] * 60})
    c = results.with_population(c, [], "patients")
    comp = coverage.completeness(c, "hospital", variables={"asa": None})
    pr = protection.protect(comp, 5, strict=True)
    assert pr.frame["n_missing"].isna().iloc[0] and pr.frame["complete"].isna().iloc[0]
    assert "_n_pop" not in pr.frame.columns
    reg = coverage.registrations(c, ["hospital", "year"])
    pr = protection.protect(reg, 5, strict=True)
    assert pr.frame["n"].isna().sum() >= 2  # the 3 of H2 in 2015 and its complement
    s = coverage.self_sufficiency(c, "referral_area")
    pr = protection.protect(s, 5, strict=True)
    # Bergen: 28 patients, 27 in their own trust: "all but 1" must not be readable
    b = pr.frame[pr.frame["referral_area"] == "Bergen"].iloc[0]
    assert pd.isna(b["n"]) or pd.isna(b["n_own_trust"])
    assert pd.isna(b["own_trust"])


def test_incidence_rates_are_derived_from_their_events():
    data = pd.DataFrame([{"referral_area": a, "year": y, "sex": s, "age_band5": b,
                          "events": 3 if (a == "Bergen" and y == 2014 and s == "male") else 20, "population": 5000}
                         for a in ("Bergen", "Fonna") for y in (2014, 2015) for s in ("female", "male")
                         for b in ("80-84", "85-89")])
    r = incidence.standardised_incidence(data, "referral_area", by_year=True).round({"std_rate": 1})
    assert results.is_result(r)
    pr = protection.protect(r, 5, strict=True)
    assert pr.frame["n"].notna().all()  # person-years: public
    assert pr.frame[["std_rate", "crude_rate", "observed", "expected"]].notna().all().all()  # 3 is in a stratum
    r2 = incidence.standardised_incidence(data.assign(events=np.where(data["referral_area"] == "Bergen", 1, 20)),
                                          "referral_area", by_year=True)
    p2 = protection.protect(r2, 5, strict=True)
    bergen = p2.frame["referral_area"] == "Bergen"
    assert p2.frame.loc[bergen, ["events", "std_rate", "lower", "upper", "observed"]].isna().all().all()
    st = incidence.area_variation(incidence.standardised_incidence(data, "referral_area"))
    pd.testing.assert_series_equal(protection.protect(st, 5, strict=True).frame["value"], st["value"])


def test_figures_show_withheld_cells_with_a_legend_entry():
    reg = pd.DataFrame({"hospital": ["A", "A", "B"], "year": [2014, 2015, 2014], "n": [10, np.nan, 12]})
    fig = cohortfig.registrations_heatmap(reg)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("withheld" in x for x in labels)
    cov = pd.DataFrame({"hospital": ["A", "B"], "hospital_name": ["A", "B"], "region": ["Helse Vest"] * 2,
                        "coverage": [0.9, np.nan]})
    fig = cohortfig.coverage_dotplot(cov)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("withheld" in x for x in labels)
    assert "B" in [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_registrations_missing_from_one_register_follow_protect_missing():
    """A fracture in NPR only is a registration missing from NHFR: a missing-data count, published unless
    the data controller sets export.protect_missing (then withheld with the coverage built on it)."""
    cov = pd.DataFrame({"hospital": ["AHUS", "AHUS", "Bodø", "Bodø"], "year": [2014, 2015, 2014, 2015],
                        "n_both": [500, 600, 400, 450], "n_nhfr_only": [0, 1, 0, 0], "n_npr_only": [10, 2, 8, 9]})
    t = coverage.coverage_table(cov, ["hospital", "year"], years=(2014, 2015))
    lenient = protection.protect(t, 5, protect_missing=False).frame
    assert lenient["coverage"].notna().all() and lenient["n_npr_only"].notna().all()
    strict = protection.protect(t, 5, protect_missing=True).frame
    assert strict["n_npr_only"].isna().any() and strict["coverage"].isna().any()


def test_table1_levels_named_like_a_total_are_the_same_cells_as_elsewhere():
    """A total hip replacement (operation_type "total") is the cell operation_type=total, as in the Cox
    tables of notebook 03: before, Table 1 renamed it "total (level)", a second name for the same patients,
    and the union of 00 and 03 was an infeasible system for the audit. A level of a unit variable named
    like a total is still not the total row."""
    c = _tiny_cohort()
    c["operation_type"] = np.where(np.arange(len(c)) % 5 == 0, "total", "hemi")
    c = results.with_population(c, [], "patients")
    t = table1.table_one(c, None, categorical=["operation_type", "birth_country"], continuous=[])
    cells = {cell for cell in results.row_cells(results.Meta(t)).values()}
    names = {cell.get("operation_type") for cell in cells}
    assert "total" in names and not any("(level)" in str(x) for x in names)
    assert {cell.get("birth_country") for cell in cells} >= {"norway", "other"}
    assert results._is_total("hospital", "Norway") and not results._is_total("operation_type", "total")
