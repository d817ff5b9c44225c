"""Indicator results carry their disclosure metadata: the same cells wherever notebook 01 counts them."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import indicators, protection, results

MIN = 5


@pytest.fixture(scope="module")
def setup(tiny_cohort):
    rows, dropped = indicators.restrict(tiny_cohort, None, 65, None)
    ind = indicators.load_catalogue()["surgery_48h"]
    return rows, dropped, ind


def _small(v):
    v = pd.to_numeric(v, errors="coerce")
    return v.notna() & (v >= 1) & (v < MIN)


def _check_published(frame, n="n", events="events"):
    """No small count, no small non-event count, no derived value of a withheld count."""
    assert not _small(frame[events]).any()
    assert not _small(frame[n]).any()
    both = frame[n].notna() & frame[events].notna()
    assert not _small((frame[n] - frame[events])[both]).any(), "n - events of 1-4 readable"


def test_restriction_is_a_population_with_its_dropped_counts(setup, tiny_cohort):
    rows, dropped, _ = setup
    universe, conds = results.population(rows, strict=True)
    assert universe == "patients" and any(v.startswith("#scope(") and lvl == "in" for v, lvl in conds)
    assert int(dropped["n"].sum()) == len(tiny_cohort) - len(rows)
    assert results.Meta(dropped).published_counts == ["n"]


def test_every_per_unit_frame_of_an_indicator_protects_events_and_non_events(setup):
    rows, _, ind = setup
    per_unit = indicators.evaluate(rows, ind, "hospital")
    crude, _ = indicators.funnel(rows, ind, "hospital")
    oe, coefs = indicators.case_mix(rows, ind, "hospital", ("age", "male"))
    adj = indicators.adjusted_funnel(oe, float(crude["events"].sum() / crude["n"].sum()))
    area, _ = indicators.area_variation(rows, ind, "referral_area")
    assert _small(per_unit["events"]).any() or _small(per_unit["n"] - per_unit["events"]).any(), \
        "the tiny cohort must hold small cells for this test to mean anything"
    for frame, ev in ((per_unit, "events"), (crude, "events"), (oe, "observed"), (adj, "observed"),
                      (area, "events")):
        prot = protection.protect(frame, MIN)
        _check_published(prot.frame, events=ev)
        for c in ("prop", "lower", "upper", "std_prop", "oe", "z"):
            if c in prot.frame.columns:
                assert prot.frame.loc[prot.frame[ev].isna(), c].isna().all(), f"{c} of a withheld count shown"
    assert results.Meta(coefs).published_counts == []


def test_funnel_cells_are_the_cells_of_evaluate(setup):
    """Withheld in the indicator table = withheld in the funnel table: they count the same patients."""
    rows, _, ind = setup
    reg = protection.Registry()
    p1 = protection.protect(indicators.evaluate(rows, ind, "hospital"), MIN, registry=reg)
    reg.record(p1)
    crude, _ = indicators.funnel(rows, ind, "hospital")
    p2 = protection.protect(crude, MIN, registry=reg)
    hidden1 = set(p1.frame.loc[p1.frame["events"].isna(), "unit"])
    shown2 = set(p2.frame.loc[p2.frame["events"].notna(), "unit"])
    assert hidden1 and not hidden1 & shown2
    shared = {cell for cell in p1.positions.values()} & {cell for cell in p2.positions.values()}
    assert len(shared) >= len(crude), "funnel and indicator rows are the same cells of the audit"


def test_overview_counts_units_by_their_published_level_only(setup):
    rows, _, ind = setup
    national = indicators.evaluate(rows, ind, None)
    per_unit = indicators.evaluate(rows, ind, "hospital")
    shown = protection.protect(per_unit, MIN).frame
    ov = indicators.overview(national, shown, [ind])
    r = ov.iloc[0]
    assert r.units_green + r.units_yellow + r.units_red + r.units_below_min + r.units_withheld == r.units
    assert r.units_withheld == int(shown["level"].isna().sum()) > 0
    meta = results.Meta(ov)
    assert "units_green" in meta.stats and meta.published_counts == ["n", "events"]


def test_outside_summary_never_counts_a_withheld_flag_as_outside():
    flags = pd.DataFrame({"indicator": ["x"] * 4, "unit": list("ABCD"),
                          "outside_99.8": ["high", np.nan, "", np.nan],
                          "outside_add_99.8": ["high", np.nan, "", np.nan],
                          "adj_outside_99.8": ["high", np.nan, "", np.nan]})
    text = indicators.outside_summary(flags, {"x": "X"}, "99.8")
    assert "1 of 4 units outside the exact limits (2 withheld)" in text
    assert "A (above)" in text and "B" not in text.split("limits:")[-1]


def test_a_table_without_the_missing_column_keeps_the_variable_s_atoms(setup):
    """The by-year table drops n_missing; its 'not analysed' (patients minus n) is missing + not eligible,
    as in the pooled table, not a new remainder: nothing is withheld for it (it was: every national and
    regional year of the surgery indicators, 440 cells at national scale)."""
    rows, _, ind = setup
    reg = protection.Registry()
    pooled = protection.protect(indicators.evaluate(rows, ind, "hosp_region"), MIN, registry=reg,
                                protect_missing=False)
    reg.record(pooled)
    by_year = indicators.evaluate(rows, ind, "hosp_region", by_year=True).drop(columns="n_missing")
    alone = protection.protect(by_year, MIN, protect_missing=False)
    linked = protection.protect(by_year, MIN, registry=reg, protect_missing=False)
    assert linked.frame["n"].isna().sum() == alone.frame["n"].isna().sum()
    assert linked.frame["events"].isna().sum() == alone.frame["events"].isna().sum()
    assert results.Meta(by_year).atoms == {"#{indicator}": ["event", "nonevent", "missing"]}
