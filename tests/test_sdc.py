"""The suppression engine (hipfrac.sdc) and the protection of results (hipfrac.protection): hierarchies,
implied counts (non-events), intervals, linked outputs. Every protected pattern is checked by an attacker
written independently of the engine (numpy rank tests, scipy LP bounds over the same structure)."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from hipfrac import protection, results, sdc
from hipfrac.sdc import ASSUMED, CANDIDATE, IMPLIED, Cell, Problem


def _hosp(h):
    return sdc.dim_level("hospital", h)


def test_levels_follow_the_shipped_hierarchies():
    var, path = _hosp("KIRKENES")
    assert var == "hosp" and path == "Helse Nord > Finnmarkssykehuset > KIRKENES"
    assert sdc.dim_level("hosp_region", "Helse Nord") == ("hosp", "Helse Nord")
    assert sdc.within(path, "Helse Nord") and not sdc.within("Helse Nord", path)
    assert sdc.dim_level("referral_area", "Finnmark")[1] == "Helse Nord > Finnmarkssykehuset > Finnmark"
    assert sdc.dim_level("age_band5", "80-84") == ("age", "80-89 > 80-84")
    assert sdc.dim_level("fracture_type", "troch_a1") == ("fracture", "trochanteric > troch_a1")
    assert sdc.dim_level("fracture_group", None) == ("fracture", "missing")
    assert sdc.dim_level("sex", "male") == ("sex", "male")


def test_complement_stays_within_the_smallest_published_margin():
    # Kirkenes (3) shares its trust with Hammerfest only: the trust total would give it away, so the
    # complement is Hammerfest (not the smaller Tromsø of another trust)
    p = Problem(5)
    vals = {"HAMMERFEST": 90, "KIRKENES": 3, "TROMSO": 50, "HARSTAD": 60}
    for h, v in vals.items():
        p.add(Cell.make("u", [_hosp(h)]), v, CANDIDATE)
    p.add(Cell.make("u", [("hosp", "Helse Nord > Finnmarkssykehuset")]), 93, ASSUMED)
    p.add(Cell.make("u", [("hosp", "Helse Nord")]), 203, ASSUMED)
    sol = p.solve()
    assert {c.get("hosp").split(" > ")[-1] for c in sol.withheld} == {"KIRKENES", "HAMMERFEST"}
    assert not sol.exposed


def test_two_small_cells_in_a_group_get_a_third_for_the_interval():
    # 1 + 2 = 3 with the total known: each lies in [0, 3], narrower than 5 -> a third cell goes
    p = Problem(5)
    for g, v in {"a": 1, "b": 2, "c": 50, "d": 70}.items():
        p.add(Cell.make("u", [("g", g)]), v, CANDIDATE)
    p.add(Cell.make("u", []), 123, ASSUMED)
    sol = p.solve()
    assert {c.get("g") for c in sol.withheld} == {"a", "b", "c"}


def test_small_non_events_are_protected():
    # A: n = 10, events = 8 -> 2 non-events ("all but 2"): n or events must go, with a complement
    p = Problem(5)
    rows = {"A": (10, 8), "B": (50, 20), "C": (60, 30)}
    for g, (n, e) in rows.items():
        p.add(Cell.make("u", [("g", g), ("#x", "event|nonevent")]), n, CANDIDATE)
        p.add(Cell.make("u", [("g", g), ("#x", "event")]), e, CANDIDATE)
        p.add(Cell.make("u", [("g", g), ("#x", "nonevent")]), n - e, IMPLIED)
    p.add(Cell.make("u", [("#x", "event|nonevent")]), 120, ASSUMED)
    p.add(Cell.make("u", [("#x", "event")]), 58, ASSUMED)
    sol = p.solve()
    hidden = {(c.get("g"), c.get("#x")) for c in sol.withheld}
    assert ("A", "event") in hidden or ("A", "event|nonevent") in hidden
    assert len(hidden) >= 2 and not sol.exposed


def _indicator(rows):
    """A small indicator result by hospital: rows (hospital, n, events, n_missing, population)."""
    df = pd.DataFrame(rows, columns=["unit", "n", "events", "n_missing", "_n_pop"])
    df.insert(0, "indicator", "x")
    df.insert(1, "unit_level", "hospital")
    df["prop"] = df["events"] / df["n"]
    st = "#{indicator}"
    return results.annotate(df, counts={"n": {st: "event|nonevent"}, "events": {st: "event"},
                                        "n_missing": {st: "missing"}, "_n_pop": {}},
                            dims={"unit": "{unit_level}"}, derived={"prop": ["n", "events"]},
                            labels=["indicator", "unit_level"], private=["_n_pop"])


def test_result_metadata_protects_events_non_events_and_the_not_eligible():
    df = _indicator([("HAMMERFEST", 40, 38, 0, 40),   # 2 non-events
                     ("KIRKENES", 30, 10, 0, 33),     # 3 not eligible
                     ("TROMSO", 90, 50, 0, 90), ("HARSTAD", 80, 40, 0, 80), ("NARVIK", 70, 30, 0, 70),
                     ("BODO", 60, 30, 0, 60)])
    prot = protection.protect(df, 5)
    f, m = prot.frame, prot.mask
    assert "_n_pop" not in f.columns and prot.roles["_n_pop"] == "private"
    ham = m.iloc[0]
    assert ham["n"] or ham["events"]          # the 2 non-events cannot be read off
    assert m.iloc[1]["n"] or m.iloc[1]["n_missing"]  # nor Kirkenes' 3 not eligible (population 33)
    assert (m["prop"] >= (m["n"] | m["events"])).all()  # proportions go with their counts
    assert not prot.exposed


def test_a_later_output_never_reveals_what_an_earlier_one_withheld():
    reg = protection.Registry()
    first = _indicator([("HAMMERFEST", 40, 3, 0, 40), ("TROMSO", 90, 50, 0, 90), ("HARSTAD", 80, 40, 0, 80),
                        ("NARVIK", 70, 60, 0, 70)])
    p1 = protection.protect(first, 5, registry=reg)
    reg.record(p1)
    hidden = {p1.frame.loc[i, "unit"] for i in p1.mask.index[p1.mask["events"]]}
    assert "HAMMERFEST" in hidden and len(hidden) == 2
    (other,) = hidden - {"HAMMERFEST"}
    # a later table showing some of the same hospitals (e.g. those outside a funnel's limits) must keep
    # the complement hidden: its visible events would give Hammerfest's 3 from the region's total
    rows = [r for r in [("TROMSO", 90, 50, 0, 90), ("HARSTAD", 80, 40, 0, 80), ("NARVIK", 70, 60, 0, 70)]
            if r[0] in (other, "TROMSO")]
    later = _indicator(rows)
    later.attrs["hipfrac"]["complete"] = False
    p2 = protection.protect(later, 5, registry=reg)
    shown = dict(zip(p2.frame["unit"], p2.frame["events"]))
    assert pd.isna(shown[other]) and not pd.isna(shown.get("TROMSO", 0))
    assert not p2.exposed


def test_cells_that_collide_in_the_metadata_are_an_error():
    df = results.annotate(pd.DataFrame({"unit": ["a", "a"], "h": [30, 90], "deaths": [3, 9]}),
                          counts=["deaths"], dims=["unit"], labels=["h"])
    with pytest.raises(ValueError, match="same cell"):
        protection.protect(df, 5)


def test_plain_frames_get_a_dimension_for_every_row():
    # horizons stored as floats: without them the four rows of an area would be one cell
    df = pd.DataFrame({"area": ["a"] * 2 + ["b"] * 2 + ["c"] * 2, "horizon": [30.0, 365.0] * 3,
                       "deaths": [0, 3, 8, 20, 10, 30]})
    sup = protection.protect(protection.infer(df, ["deaths"]), 5)
    assert sup.mask.loc[1, "deaths"]


def _attack(cells, values, withheld, published_known, min_cell=5):
    """Independent attacker over explicit 0/1 vectors: exact recoveries and narrow small intervals."""
    A = np.vstack([cells[k] for k in published_known])
    b = np.array([values[k] for k in published_known], float)
    rank = np.linalg.matrix_rank(A)
    exact, narrow = [], []
    for k in withheld:
        if np.linalg.matrix_rank(np.vstack([A, cells[k]])) == rank:
            exact.append(k)
        elif 1 <= values[k] < min_cell:
            top = linprog(-cells[k], A_eq=A, b_eq=b, bounds=(0, None))
            if top.status == 3:  # unbounded above
                continue
            lo = linprog(cells[k], A_eq=A, b_eq=b, bounds=(0, None)).fun
            if np.floor(-top.fun + 1e-6) - np.ceil(lo - 1e-6) < min_cell:
                narrow.append(k)
    return exact, narrow


@pytest.mark.parametrize("seed", range(12))
def test_random_hospital_year_tables_with_their_margins_leak_nothing(seed):
    """hospital x year counts of 6 hospitals in 2 regions, published with every margin (hospital totals,
    region x year, region, year, the country) as rows of the same table: the attacker knows everything
    published
    nothing withheld can be recovered, no small count bounded narrowly."""
    rng = np.random.default_rng(seed)
    hosp = ["HAMMERFEST", "KIRKENES", "TROMSO", "AHUS", "DRAMMEN", "ELVERUM"]
    years = [2019, 2020, 2021]
    vals = rng.choice([0, 1, 2, 3, 4, 6, 9, 15, 30], size=(len(hosp), len(years)))
    region = {h: sdc.dim_level("hospital", h)[1].split(" > ")[0] for h in hosp}
    idx = {(h, y): i * len(years) + j for i, h in enumerate(hosp) for j, y in enumerate(years)}
    x = np.array([vals[i, j] for i in range(len(hosp)) for j in range(len(years))], float)
    rows, vecs = [], []
    for h in hosp:
        for y in years + ["all"]:
            v = np.array([1.0 if hh == h and (y == "all" or yy == y) else 0.0 for (hh, yy) in idx])
            rows.append(("hospital", h, y))
            vecs.append(v)
    for r in sorted(set(region.values())):
        for y in years + ["all"]:
            v = np.array([1.0 if region[hh] == r and (y == "all" or yy == y) else 0.0 for (hh, yy) in idx])
            rows.append(("hosp_region", r, y))
            vecs.append(v)
    for y in years + ["all"]:
        v = np.array([1.0 if (y == "all" or yy == y) else 0.0 for (hh, yy) in idx])
        rows.append(("national", "Norway", y))
        vecs.append(v)
    df = pd.DataFrame(rows, columns=["unit_level", "unit", "year"]).assign(n=[int(v @ x) for v in vecs])
    res = results.annotate(df, counts=["n"], dims={"unit": "{unit_level}", "year": "year"}, labels=["unit_level"])
    prot = protection.protect(res, 5)
    hidden = prot.frame["n"].isna().to_numpy()
    assert hidden[((df["n"] >= 1) & (df["n"] < 5)).to_numpy()].all()
    cells = dict(enumerate(vecs))
    values = dict(enumerate(df["n"].astype(float)))
    exact, narrow = _attack(cells, values, [k for k in cells if hidden[k]], [k for k in cells if not hidden[k]])
    assert not exact and not narrow, (seed, exact, narrow, prot.exposed)
    assert not prot.exposed


def test_commons_equal_the_direct_intersections():
    """_commons (subsets of v x bitmasks of maximal sets) gives exactly the distinct v & m, v not within m,
    in the order of the first maximal set m giving each, as the direct loop over every maximal set."""
    import random

    from hipfrac.sdc import _commons

    rng = random.Random(1)
    names = [f"v{i}" for i in range(9)] + ["#fu30", "#fu365"]
    for _ in range(300):
        vs = sorted({frozenset(rng.sample(names, rng.randint(0, 4))) for _ in range(rng.randint(1, 30))},
                    key=lambda s: (-len(s), sorted(s)))
        maximal = []
        for s in vs:
            if not any(s <= m for m in maximal):
                maximal.append(s)
        got = _commons(vs, maximal)
        for v in vs:
            assert got[v] == list(dict.fromkeys(v & m for m in maximal if not v <= m)), v


def test_maximal_sets_and_membership_equal_the_direct_loops():
    import random

    from hipfrac.sdc import _maximal_sets

    rng = random.Random(2)
    names = [f"v{i}" for i in range(8)] + ["#fu30"]
    for _ in range(300):
        vs = sorted({frozenset(rng.sample(names, rng.randint(0, 4))) for _ in range(rng.randint(1, 30))},
                    key=lambda s: (-len(s), sorted(s)))
        ref: list[frozenset] = []
        for s in vs:
            if not any(s <= m for m in ref):
                ref.append(s)
        maximal, member = _maximal_sets(vs)
        assert maximal == ref
        for v in vs:
            assert member[v] == [i for i, m in enumerate(ref) if v <= m]


def test_bit_indices_equal_the_bit_positions():
    import random

    from hipfrac.sdc import _bit_indices

    rng = random.Random(3)
    for _ in range(500):
        bits = rng.getrandbits(rng.randint(0, 5000)) if rng.random() < 0.5 else \
            sum(1 << rng.randrange(8000) for _ in range(rng.randint(0, 5)))
        assert _bit_indices(bits) == [i for i in range(bits.bit_length()) if bits >> i & 1]


def test_maximal_sets_with_thousands_of_maximal_sets():
    """As in a national run: one status variable per at-risk time, each crossed with a few dimensions."""
    import random

    from hipfrac.sdc import _maximal_sets

    rng = random.Random(4)
    names = [f"#atrisk{i}" for i in range(1500)] + ["res", "sex", "#rows", "hosp"]
    vs = sorted({frozenset(rng.sample(names[:1500], 1) + rng.sample(names[1500:], rng.randint(0, 2)))
                 for _ in range(4000)} | {frozenset(rng.sample(names[1500:], rng.randint(0, 2))) for _ in range(20)},
                key=lambda s: (-len(s), sorted(s)))
    ref: list[frozenset] = []
    for s in vs:
        if not any(s <= m for m in ref):
            ref.append(s)
    maximal, member = _maximal_sets(vs)
    assert maximal == ref and len(ref) > 1000
    for v in vs:
        assert member[v] == [i for i, m in enumerate(ref) if v <= m]


def test_cell_hash_is_the_hash_of_its_compared_fields_and_survives_pickling():
    """Cell caches the hash the dataclass computed on every call (same value: sets of cells iterate in
    the same order); a pickled cell is rebuilt with this process's hash."""
    import copy
    import pickle

    for conds in ({}, {"res": "a > b"}, {"#fu": "dead|cens", "sex": "female", "age": "80-89"}):
        c = Cell.make("patients", conds)
        assert hash(c) == hash((c.universe, c.conds))
        for d in (pickle.loads(pickle.dumps(c)), copy.deepcopy(c), Cell(c.universe, c.conds)):
            assert d == c and hash(d) == hash(c) and d.vars == c.vars
        assert {c: 1}[Cell.from_json(c.to_json())] == 1
