"""Disclosure metadata of the prevention results (hipfrac.prevention, notebook 04; issue 13).

Each annotated function is protected on small synthetic data: small events and small non-events (n - events
of 1-4, "all but 2 treated"), small not-eligible remainders and small steps between CIF horizons must be
withheld with the columns derived from them; the metadata's claims (what n_risk, the steps and exits count)
are checked against the data.
"""

import numpy as np
import pandas as pd
import pytest

from hipfrac import competing, protection, results, sdc
from hipfrac import prevention as pv
from hipfrac.params import Params
from test_prevention_analysis import simulate_cohort

MIN = 5


def _cohort(rows):
    """A hand-made cohort: rows of (res_region, followup_days, osteo_med_12m)."""
    d = pd.DataFrame(rows, columns=["res_region", "followup_days", "osteo_med_12m"])
    for c in ("osteo_med_before", "osteo_med_3m", "osteo_med_6m"):
        d[c] = 0
    return results.with_population(d.reset_index(drop=True))


def _block(region, eligible, treated, not_eligible=0):
    return ([(region, 400.0, 1)] * treated + [(region, 400.0, 0)] * (eligible - treated)
            + [(region, 100.0, 0)] * not_eligible)


@pytest.fixture(scope="module")
def small():
    return simulate_cohort(n=600, seed=3)


@pytest.fixture(scope="module")
def params():
    return Params()


def _row(frame, **kw):
    m = np.ones(len(frame), dtype=bool)
    for k, v in kw.items():
        m &= (frame[k] == v).to_numpy()
    assert m.sum() == 1
    return int(np.flatnonzero(m)[0])


def test_uptake_withholds_small_events_non_events_and_not_eligible():
    cohort = _cohort(_block("Helse Nord", 20, 3) + _block("Helse Vest", 20, 18) + _block("Helse Sør-Øst", 40, 12)
                     + _block("Helse Midt-Norge", 30, 10, not_eligible=2))
    res = pv.medication_uptake(cohort, by="res_region", indicators=["12m"])
    assert results.is_result(res)
    prot = protection.protect(res, MIN, strict=True, name="uptake")
    f, mask = prot.frame, prot.mask
    assert "_n_pop" not in f.columns
    nord, vest, so, midt = (_row(f, res_region=r) for r in ("Helse Nord", "Helse Vest", "Helse Sør-Øst",
                                                              "Helse Midt-Norge"))
    assert mask.at[nord, "events"] and mask.at[nord, "prop"] and mask.at[nord, "upper"]
    # 18 of 20: the 2 untreated must not be readable from n - events
    assert mask.at[vest, "n"] or mask.at[vest, "events"]
    assert mask.at[vest, "prop"] and mask.at[vest, "lower"]
    # 2 patients of Midt-Norge died before the window ends: n must not tell them (its population is known)
    assert mask.at[midt, "n"]
    assert not mask.loc[so, ["n", "events", "prop"]].any()
    assert f.at[so, "events"] == 12


def test_uptake_tables_share_one_status_variable(small):
    nat = pv.medication_uptake(small)
    units = pv.uptake_by_units(small, ["res_region"], "12m", ["sex"])
    funnel = pv.unit_funnel(small, "res_region", "12m")[0]
    re = pv.unit_random_effect(small, "res_region", "12m")
    cell = lambda fr, i, c: results.row_cells(results.Meta(fr))[(i, c)]  # noqa: E731
    i12 = _row(nat, indicator="12m")
    assert cell(re, 0, "n_obs") == cell(nat, i12, "n")
    r = small["res_region"].iloc[0]
    assert cell(units, _row(units, unit=r), "events") == cell(funnel, _row(funnel, res_region=r), "events")
    m = results.Meta(units)
    assert m.derived["expected"] == ["n"]          # a sum of model probabilities, withheld with n only
    assert set(m.derived["std_rate"]) == {"n", "events"}
    for name, fr in (("units", units), ("funnel", funnel), ("re", re)):
        protection.protect(fr, MIN, strict=True, name=name)  # every column has a role


def test_funnel_outside_lists_only_visible_flags(small):
    funnel = pv.unit_funnel(small, "res_region", "12m")[0]
    shown = funnel.copy()
    shown["outside_99.8"] = ["high", np.nan, "low", ""][: len(shown)]
    out = pv.funnel_outside(funnel, shown)
    assert list(out["res_region"]) == [funnel["res_region"].iloc[0], funnel["res_region"].iloc[2]]
    assert results.is_result(out)


def test_who_is_treated_protects_small_levels(small):
    who = pv.who_is_treated(small, "12m", factors=("sex", "cognitive"))
    assert results.Meta(who).dims == {"level": "{factor}"}
    prot = protection.protect(who, MIN, strict=True, name="who")
    ev = who["events"].to_numpy()
    non = (who["n"] - who["events"]).to_numpy()
    for i in range(len(who)):
        if 1 <= ev[i] < MIN:
            assert prot.mask.at[i, "events"] and prot.mask.at[i, "prop"]
        if 1 <= non[i] < MIN:
            assert prot.mask.at[i, "n"] or prot.mask.at[i, "events"]


def test_persistence_counts_and_small_non_events(small):
    per = pv.persistence(small, (1, 3), 180, by="res_region")
    prot = protection.protect(per, MIN, strict=True, name="persistence")
    assert not {"_n_pop", "_n_stopped", "_n_left", "_lv_n"} & set(prot.frame.columns)
    for i, r in per.reset_index(drop=True).iterrows():
        if 1 <= r["n"] - r["events"] < MIN or 1 <= r["events"] < MIN:
            assert prot.mask.at[i, "prop"] and (prot.mask.at[i, "n"] or prot.mask.at[i, "events"])
    # one status variable over the horizons: the 3-year risk set lies within the 1-year one
    m = results.Meta(per)
    cells = results.row_cells(m)
    i1, i3 = (_row(per.reset_index(drop=True), res_region="Helse Nord", years=y) for y in (1.0, 3.0))
    a1 = set(dict(cells[(i1, "n")].conds)["#persist"].split("|"))
    a3 = set(dict(cells[(i3, "n")].conds)["#persist"].split("|"))
    assert a3 < a1


def test_cif_metadata_matches_the_data(small, params):
    cif = pv.new_fracture_cifs(small, params, outcomes=("second_hip_fracture",), by=("sex",))
    d = pv.fracture_competing_data(small, "second_hip_fracture")
    t = d["time"] / pv.DAYS_PER_YEAR
    for _, r in cif.iterrows():
        g = np.ones(len(d), bool) if r["by"] == "all" else (d[r["by"]] == r["group"]).to_numpy()
        h = r["years"]
        if not np.isfinite(r["n_risk"]):
            continue
        ev = int(((d["event"] == 1) & (t <= h) & g).sum())
        assert r["events"] == ev
        assert r["n_risk"] == int(((t > h) & g).sum())
        assert r["_exits"] == int(((d["event"] != 1) & (t <= h) & g).sum())
        assert r["n"] == int(g.sum())
    # every step between horizons holds >= MIN new fractures, or one side of it is withheld
    prot = protection.protect(cif, MIN, strict=True, name="cif")
    for (_by, _g), grp in cif.groupby(["by", "group"]):
        grp = grp.sort_values("years")
        idx = list(grp.index)
        steps = grp["_fx_step"].to_numpy()
        for k, i in enumerate(idx):
            if 1 <= steps[k] < MIN:
                prev_hidden = k > 0 and prot.mask.at[idx[k - 1], "events"]
                assert prot.mask.at[i, "events"] or prev_hidden, (grp.loc[i].to_dict())
                assert prot.mask.at[i, "events"] or k > 0
    for c in ("cif", "lower", "upper"):
        assert (prot.mask[c] | ~prot.mask["events"]).all()


@pytest.fixture(scope="module")
def medium():
    return simulate_cohort(n=3000, seed=5)


def test_treatment_effect_counts_link_to_the_uptake_and_cif_cells(medium, params):
    small = medium
    eff, models = pv.treatment_effects(small, params, outcomes=("second_hip_fracture",))
    m = results.Meta(eff)
    assert set(m.stats) == {"hr", "lower", "upper", "p"}
    assert results.Meta(models).counts == {}
    nat = pv.medication_uptake(small, indicators=["before"])
    assert eff["n_patients"].iloc[0] == int(nat["n"].iloc[0] - nat["events"].iloc[0])
    c_eff = results.row_cells(m)[(0, "n_patients")]
    assert dict(c_eff.conds)["#treated_before"] == "untreated"
    # the events over the whole follow-up are every fracture atom of the CIF's status variable
    cif = pv.new_fracture_cif(small, "second_hip_fracture", params.prevention.cif_years,
                              cuts=pv.outcome_cuts(params))
    st = competing.OUTCOME_STATUS["second_hip_fracture"]
    last = results.row_cells(results.Meta(cif))[(len(cif) - 1, "events")]
    ev_all = dict(results.row_cells(m)[(0, "n_events")].conds)[st]
    assert ev_all == sdc.interval_atom("fx", -np.inf, np.inf)
    kind, a, b = sdc.parse_interval(dict(last.conds)[st])
    horizon = params.prevention.cif_years[-1] * pv.DAYS_PER_YEAR
    whole = pv._whole_days(small, ["second_hip_fracture"])
    assert kind == "fx" and a == -np.inf and b == (np.floor(horizon) if whole else horizon)
    protection.protect(eff, MIN, strict=True, name="effects")


def test_scenarios_and_budget_roles(small, params):
    scen = pv.scenarios_for_cohort(small, params)
    m = results.Meta(scen)
    assert set(m.counts) >= {"n", "events"} and m.derived["n_per_year"] == ["n"]
    protection.protect(scen, MIN, strict=True, name="scenarios")
    dk = pv.budget_impact(params.prevention.budget)
    assert results.Meta(dk.savings).counts == {} and "savings" in results.Meta(dk.savings).stats
    no = pv.budget_for_cohort(small, params)
    for f in (no.savings, no.costs, no.participation, pv.budget_table4_wide(no)):
        prot = protection.protect(f, MIN, strict=True, name="budget")
        assert "_n_pop" not in prot.frame.columns
    # a tiny cohort withholds the cohort-derived budget (it follows from the number of patients)
    tiny = results.with_population(small.iloc[:3].copy())
    wide = pv.budget_table4_wide(pv.budget_for_cohort(tiny, params))
    prot = protection.protect(wide, MIN, strict=True, name="tiny")
    assert prot.mask[[c for c in prot.frame.columns if c != "item"]].all().all()


def test_figures_mark_withheld_values_in_the_legend():
    from hipfrac.figures import prevention as pfig

    frame = pd.DataFrame({"unit": ["a", "b"], "prop": [0.2, np.nan], "lower": [0.1, np.nan], "upper": [0.3, np.nan]})
    fig = pfig.uptake_by_unit(frame, "unit")
    assert pfig.WITHHELD in fig.axes[0].get_legend_handles_labels()[1]
    per = pd.DataFrame({"years": [1.0, 3.0], "prop": [0.5, np.nan], "lower": [0.4, np.nan], "upper": [0.6, np.nan]})
    fig = pfig.persistence_bars(per)
    assert pfig.WITHHELD in fig.axes[0].get_legend_handles_labels()[1]
    fig = pfig.persistence_bars(per.iloc[:1])
    assert pfig.WITHHELD not in fig.axes[0].get_legend_handles_labels()[1]
