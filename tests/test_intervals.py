"""Counts at several horizons are one status variable with interval atoms: the deaths between two
published horizons (dead by 90 minus dead by 30) are a cell, protected when small, within a row, across
rows and across tables."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import protection, results, sdc

MIN = 5
FU = "#fu"
N = sdc.status_level(sdc.interval_atom("dead", 0, np.inf), sdc.interval_atom("cens", 0, np.inf))


def _dead_by(h):
    return sdc.interval_atom("dead", 0, h)


def _frame(rows, horizons):
    d = pd.DataFrame(rows, columns=["hospital", "n"] + [f"dead_{h}" for h in horizons])
    return results.annotate(d, counts={"n": {FU: N}, **{f"dead_{h}": {FU: _dead_by(h)} for h in horizons}},
                            dims=["hospital"])


def test_refine_cuts_every_interval_at_every_break():
    cells = [sdc.Cell.make("p", [(FU, _dead_by(90))]), sdc.Cell.make("p", [(FU, _dead_by(30))]),
             sdc.Cell.make("p", [(FU, N)])]
    m = sdc.refine_map(cells)
    assert sdc.atoms(m[cells[0]].get(FU)) == {"dead@0-30", "dead@30-90"}
    assert cells[1] not in m  # already on the grid
    assert sdc.atoms(m[cells[2]].get(FU)) == {"dead@0-30", "dead@30-90", "dead@90-inf", "cens@0-30",
                                               "cens@30-90", "cens@90-inf"}
    assert sdc.parse_interval("dead@0-30") == ("dead", 0.0, 30.0) and sdc.parse_interval("event") is None
    with pytest.raises(ValueError):
        sdc.interval_atom("dead", 30, 30)


def _between_recoverable(safe, h0, h1):
    """Rows where dead_h1 - dead_h0 is readable and small."""
    a, b = safe[f"dead_{h0}"], safe[f"dead_{h1}"]
    d = (b - a)[a.notna() & b.notna()]
    return list(d[(d >= 1) & (d < MIN)].index)


def test_deaths_between_two_horizons_of_a_row_are_protected():
    rows = [("AHUS", 300, 20, 22), ("BAERUM", 250, 15, 30), ("DRAMMEN", 200, 12, 25), ("KONGSBERG", 150, 9, 20)]
    prot = protection.protect(_frame(rows, (30, 90)), MIN)
    assert prot.exposed == []
    assert _between_recoverable(prot.frame, 30, 90) == [], "AHUS: 2 deaths between day 30 and 90 readable"
    # the region's deaths between the horizons (sum over hospitals) are not small: nothing else changes
    assert prot.frame["n"].notna().all()


def test_deaths_between_horizons_of_two_tables_are_protected():
    """Table A publishes deaths by 30 days, table B (later) deaths by 90 days of the same hospitals."""
    a = [("AHUS", 300, 20), ("BAERUM", 250, 15), ("DRAMMEN", 200, 12), ("KONGSBERG", 150, 9)]
    b = [("AHUS", 300, 22), ("BAERUM", 250, 30), ("DRAMMEN", 200, 25), ("KONGSBERG", 150, 20)]
    reg = protection.Registry()
    pa = protection.protect(_frame(a, (30,)), MIN, registry=reg)
    reg.record(pa)
    pb = protection.protect(_frame(b, (90,)), MIN, registry=reg)
    both = pa.frame.merge(pb.frame, on=["hospital", "n"], how="outer")
    assert _between_recoverable(both, 30, 90) == []
    assert pb.exposed == []


def test_without_interval_atoms_the_difference_leaks():
    """The same table with one variable per horizon (the old convention): nothing links the horizons."""
    rows = [("AHUS", 300, 20, 22), ("BAERUM", 250, 15, 30), ("DRAMMEN", 200, 12, 25), ("KONGSBERG", 150, 9, 20)]
    d = pd.DataFrame(rows, columns=["hospital", "n", "dead_30", "dead_90"])
    d = results.annotate(d, counts={"n": {}, "dead_30": {"#fu30": "dead"}, "dead_90": {"#fu90": "dead"}},
                         dims=["hospital"])
    safe = protection.protect(d, MIN).frame
    assert _between_recoverable(safe, 30, 90) == [0]


FUK = "#fu[dead,cens]"


def test_complete_kinds_link_the_row_total_to_its_follow_up_atoms():
    """n (the hospital's patients, no follow-up condition) = dead by 30 + censored by 30 + alive at 30:
    with a complete-kinds variable the survivors are a cell, and 'all but 3 died' is protected."""
    assert sdc.complete_kinds(FUK) == ("dead", "cens") and sdc.complete_kinds("#fu") is None
    dead30 = sdc.interval_atom("dead", -np.inf, 30)
    alive30 = sdc.status_level(sdc.interval_atom("dead", 30, np.inf), sdc.interval_atom("cens", 30, np.inf))
    d = pd.DataFrame({"hospital": ["AHUS", "BAERUM", "DRAMMEN", "KONGSBERG"], "n": [40, 60, 80, 100],
                      "dead_30": [37, 10, 12, 14], "cens_30": [0, 0, 0, 0], "alive_30": [3, 50, 68, 86]})
    d = results.annotate(d, counts={"n": {}, "dead_30": {FUK: dead30},
                                    "cens_30": {FUK: sdc.interval_atom("cens", -np.inf, 30)}},
                         dims=["hospital"], private=["cens_30"], known=["cens_30"], labels=[])
    d = d.drop(columns="alive_30")
    safe = protection.protect(d, MIN).frame
    shown = safe["n"].notna() & safe["dead_30"].notna()
    left = (safe["n"] - safe["dead_30"])[shown]
    assert not ((left >= 1) & (left < MIN)).any(), "AHUS: n - dead = 3 survivors readable"
    # the same cell named two ways is one cell: no remainder between n and its atoms
    n_full = sdc.Cell.make("patients", [("hosp", "x"), (FUK, sdc.status_level(*sdc.full_partition(FUK, [30])))])
    p = sdc.Problem(MIN)
    p.add(sdc.Cell.make("patients", [("hosp", "x")]), 40, sdc.VISIBLE)
    p.add(n_full, 40, sdc.VISIBLE)
    p.add(sdc.Cell.make("patients", [("hosp", "x"), (FUK, dead30)]), 37, sdc.VISIBLE)
    p.add(sdc.Cell.make("patients", [("hosp", "x"), (FUK, sdc.interval_atom("cens", -np.inf, 30))]), 0, sdc.VISIBLE)
    alive = sdc.Cell.make("patients", [("hosp", "x"), (FUK, alive30)])
    p.add(alive, 3, sdc.CANDIDATE)
    sol = p.solve()
    assert alive in sol.exposed, "the survivors follow from n and the deaths: the engine must see it"
    # n - dead (the survivors and the censored, 3 + 0) is the other small count the published cells fix
    assert len(sol.exposed) == 2


def test_missing_value_counts_are_sensitive_only_when_the_params_say_so():
    """A hospital's 2 patients with a missing surgery time follow from its published patients minus the
    analysed n: withheld (with n) under protect_missing, published otherwise; events stay protected."""
    st = "#surgery_24h"
    d = pd.DataFrame({"hospital": ["AHUS", "BAERUM", "DRAMMEN"], "n": [1788, 1432, 900],
                      "events": [1100, 3, 600], "n_missing": [2, 0, 7], "_n_pop": [1790, 1432, 907]})
    d = results.annotate(d, counts={"n": {st: "event|nonevent"}, "events": {st: "event"},
                                    "n_missing": {st: "missing"}, "_n_pop": {}},
                         dims=["hospital"], private=["_n_pop"])
    strict = protection.protect(d, MIN, protect_missing=True).frame
    assert pd.isna(strict.at[0, "n_missing"]) and pd.isna(strict.at[0, "n"])
    lenient = protection.protect(d, MIN, protect_missing=False).frame
    assert lenient.at[0, "n_missing"] == 2 and lenient.at[0, "n"] == 1788
    assert pd.isna(lenient.at[1, "events"]), "a small event count is protected either way"
    from hipfrac.params import load

    assert load("params/smoke.yaml").export.protect_missing is True  # conservative default


def test_deaths_between_two_rows_of_one_table_are_protected():
    """A curve-like table, one row per time (deaths by t), protected on its own with nothing published
    before it: the deaths between two rows' times are a cell (the cells of the result are already on the
    common grid, so the engine must still derive the cross-row differences)."""
    d = pd.DataFrame({"time": [30.0, 90.0, 365.0], "n_events": [20, 22, 40]})
    d["_dl"] = [sdc.interval_atom("dead", -np.inf, t) for t in d["time"]]
    d = results.annotate(d, counts={"n_events": {FUK: "{_dl}"}}, labels=["time", "_dl"])
    safe = protection.protect(d, MIN).frame
    ev = safe["n_events"]
    steps = ev.diff()[ev.notna() & ev.shift().notna()]
    assert not ((steps >= 1) & (steps < MIN)).any(), "2 deaths between day 30 and 90 readable"
    assert ev.notna().sum() >= 1


def test_every_kind_over_all_time_is_the_cell_without_the_condition():
    full = sdc.status_level(sdc.interval_atom("dead", -np.inf, 30), sdc.interval_atom("dead", 30, np.inf),
                            sdc.interval_atom("cens", -np.inf, np.inf))
    named = sdc.Cell.make("patients", [("hosp", "x"), (FUK, full)])
    bare = sdc.Cell.make("patients", [("hosp", "x")])
    m = sdc.refine_map([named, bare, sdc.Cell.make("patients", [("hosp", "x"), (FUK, _dead_by(30))])])
    assert m[named] == bare
    # one cell under two names: a withheld n is withheld under both (no remainder of 0 to difference)
    p = sdc.Problem(MIN)
    p.add(bare, 3, sdc.CANDIDATE)
    p.add(named, 3, sdc.CANDIDATE)
    sol = p.solve()
    assert {bare, named} <= sol.withheld and not sol.exposed
