"""Disclosure control: primary, complementary and derived suppression
person-level refusal
strict mode."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import disclosure
from hipfrac.disclosure import DisclosureError, suppress


def _withheld(res, col):
    return res.frame[col].isna().to_numpy()


def test_primary_suppression_threshold_and_zero_kept():
    df = pd.DataFrame({"g": list("abcdefg"), "n": [0, 1, 4, 5, 6, 100, 200]})
    res = suppress(df, 5, counts=["n"], complementary=False)
    assert list(_withheld(res, "n")) == [False, True, True, False, False, False, False]
    assert res.frame["n"].dtype == "Int64"  # counts stay integers (no "12.0" in CSVs)
    assert res.summary() == {"primary": 2, "secondary": 0, "derived": 0}
    res10 = suppress(df, 10, counts=["n"], complementary=False)
    assert list(_withheld(res10, "n")) == [False, True, True, True, True, False, False]


def test_single_suppressed_cell_gets_a_complement_in_its_column():
    # Total published (or derivable): hiding only C's 3 would let 3 = total - others. The next
    # smallest positive cell (E, 30) must go too, never a zero (D) or the total row.
    df = pd.DataFrame({"hospital": ["A", "B", "C", "D", "E", "Total"], "n": [100, 50, 3, 0, 30, 183]})
    res = suppress(df, 5, counts=["n"])
    assert list(_withheld(res, "n")) == [False, False, True, False, True, False]
    assert res.primary == [(2, "n")] and res.secondary == [(4, "n")]
    # what is left cannot pin down C: C + E = 33 with two unknowns
    shown = res.frame["n"].iloc[:5].fillna(0).sum()
    assert df["n"].iloc[5] - shown == 33


def test_two_primary_cells_need_no_complement():
    df = pd.DataFrame({"g": list("abcd"), "n": [2, 3, 50, 60]})
    res = suppress(df, 5, counts=["n"])
    assert res.secondary == []


def test_total_row_is_complement_when_nothing_else_is_left():
    df = pd.DataFrame({"g": ["a", "b", "all"], "n": [3, 0, 3]})
    res = suppress(df, 5, counts=["n"])
    # a (3) primary; the total (3) is small too -> both primary, nothing recoverable
    assert list(_withheld(res, "n")) == [True, False, True]
    df = pd.DataFrame({"g": ["a", "b", "Total"], "n": [3, 7, 10]})
    res = suppress(df, 5, counts=["n"])
    # a total row is a margin other outputs publish too: the part b goes, not the total
    assert list(_withheld(res, "n")) == [True, True, False]


def test_row_totals_complement_within_a_row():
    # wide table: parts add up to the total in each row (auto-detected); a one-row table has no
    # column margins, so only the row rule acts: V's next smallest part (n_nursing 15) goes too
    df = pd.DataFrame({"region": ["V"], "n_home": [3], "n_care": [25], "n_nursing": [15], "n_total": [43]})
    res = suppress(df, 5, counts=["n_home", "n_care", "n_nursing", "n_total"])
    v = res.frame.iloc[0]
    assert pd.isna(v["n_home"]) and pd.isna(v["n_nursing"]) and v["n_care"] == 25 and v["n_total"] == 43
    assert res.secondary == [(0, "n_nursing")]
    # declared explicitly, the same
    res = suppress(df, 5, counts=["n_home", "n_care", "n_nursing", "n_total"],
                   row_totals={"n_total": ["n_home", "n_care", "n_nursing"]})
    assert res.secondary == [(0, "n_nursing")]


def test_complements_iterate_across_rows_and_columns():
    # a 3x3 cross table with totals both ways: after the row complement, the column of that
    # complement holds a single withheld cell and needs its own complement, and so on
    df = pd.DataFrame({"sex": ["female", "male", "total"],
                       "n_a": [3, 40, 43], "n_b": [50, 60, 110], "n_c": [70, 20, 90], "n_all": [123, 120, 243]})
    res = suppress(df, 5, counts=["n_a", "n_b", "n_c", "n_all"])
    m = res.frame[["n_a", "n_b", "n_c", "n_all"]].isna().to_numpy()
    body = m[:2, :3]
    # every row and column of the body holding a withheld cell holds at least two
    for line in [*body, *body.T]:
        assert line.sum() != 1
    assert m[0, 0]


def test_derived_columns_follow_their_count():
    df = pd.DataFrame({"h": list("abc"), "n": [50, 40, 60], "events": [3, 20, 30]})
    df["prop"] = df.events / df.n
    df["lower"], df["upper"] = df.prop - 0.1, df.prop + 0.1
    df["volume"] = [200.0, 150.0, 300.0]
    res = suppress(df, 5, counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    a = res.frame.iloc[0]
    assert pd.isna(a["events"]) and pd.isna(a["prop"]) and pd.isna(a["lower"]) and pd.isna(a["upper"])
    assert a["n"] == 50 and a["volume"] == 200.0  # not derived from events: kept
    # derived=None: conservative, every non-count numeric column of the row goes
    res2 = suppress(df, 5, counts=["n", "events"])
    assert pd.isna(res2.frame.iloc[0]["volume"])
    assert res2.derived >= 4


def test_counts_found_by_name_and_bad_names_rejected():
    df = pd.DataFrame({"x": ["a", "b", "c"], "n_deaths": [1, 50, 60], "deaths_30d": [2, 30, 40], "age": [3.0, 80, 81]})
    assert disclosure.detect_counts(df) == ["n_deaths", "deaths_30d"]
    res = suppress(df, 5)
    assert pd.isna(res.frame.iloc[0]["n_deaths"]) and res.frame.iloc[0]["x"] == "a"
    with pytest.raises(KeyError, match="nope"):
        suppress(df, 5, counts=["nope"])
    with pytest.raises(KeyError, match="derived"):
        suppress(df, 5, counts=["n_deaths"], derived={"n_deaths": ["missing_col"]})


def test_person_level_frames_are_refused_with_reason():
    ids = pd.DataFrame({"person_id": ["P0000001", "P0000002"], "age": [80.1, 90.2]})
    with pytest.raises(DisclosureError, match="person_id"):
        disclosure.check_person_level(ids, "table 'x'")
    deaths = pd.DataFrame({"death_date": pd.to_datetime(["2015-01-02", "2016-03-04"]), "x": [1, 2]})
    with pytest.raises(DisclosureError, match="death_date"):
        disclosure.check_person_level(deaths, "t")
    rng = np.random.default_rng(1)
    records = pd.DataFrame({"age": rng.uniform(60, 95, 50), "sex": rng.choice(["female", "male"], 50),
                            "followup_days": rng.uniform(0, 3000, 50), "dead": rng.integers(0, 2, 50)})
    reasons = disclosure.person_level_reasons(records)
    assert reasons and "one row per person" in reasons[0]
    # aggregates are fine: grouped counts, model summaries, death counts by year
    agg = pd.DataFrame({"age_band": ["50-59", "60-69"] * 10, "year": range(2005, 2025), "n": range(20, 40)})
    assert disclosure.person_level_reasons(agg) == []
    coefs = pd.DataFrame({"term": ["male", "age"], "hr": [1.6, 1.05], "lower": [1.4, 1.04], "upper": [1.8, 1.06]})
    assert disclosure.person_level_reasons(coefs) == []
    years = pd.DataFrame({"death_year": [2015, 2016], "deaths": [100, 120]})
    assert disclosure.person_level_reasons(years) == []


def test_strict_check_names_table_column_and_row():
    df = pd.DataFrame({"hospital": ["Ahus", "Bodø"], "n": [120, 3]})
    with pytest.raises(DisclosureError) as err:
        disclosure.check_no_small_cells(df, "figure 'funnel'", 5)
    msg = str(err.value)
    assert "figure 'funnel'" in msg and "column 'n'" in msg and "hospital=Bodø" in msg and ": 3" in msg
    disclosure.check_no_small_cells(suppress(df, 5).frame, "ok", 5)  # suppressed: passes


def test_stacked_table_gets_a_complement_within_each_indicator():
    # two indicators stacked; one small cell in each would be protected by the whole-table rule
    # alone (two withheld cells in the table) but each indicator's national total is published:
    # each indicator needs its own complement
    df = pd.DataFrame({"indicator": ["a"] * 4 + ["b"] * 4, "hospital": list("WXYZ") * 2,
                       "n": [100, 80, 60, 90, 100, 80, 60, 90],
                       "events": [3, 70, 50, 80, 90, 60, 2, 85]})
    res = suppress(df, 5, counts=["n", "events"], derived={"events": []})
    gone = res.frame["events"].isna().to_numpy()
    assert gone[:4].sum() >= 2 and gone[4:].sum() >= 2
    # lines along indicator (one hospital, both indicators) are margins too: W's 3 takes W's 90 in
    # indicator b, Y's 2 takes Y's 50 in indicator a - which also covers both indicator totals
    assert sorted(res.secondary) == [(2, "events"), (4, "events")]


def test_attributes_of_a_dimension_are_not_dimensions():
    df = pd.DataFrame({"hospital": list("ABCD"), "hospital_name": ["Ahus", "Bodø", "Car", "Dal"],
                       "region": ["S", "S", "N", "N"], "year": [2020] * 4, "n": [3, 50, 40, 60]})
    assert disclosure.dimension_columns(df, ["n"]) == ["hospital"]
    res = suppress(df, 5, counts=["n"])
    assert list(res.frame["n"].isna()) == [True, False, True, False]  # national total: next smallest
    # when regional subtotals are published too, say so: the complement stays in the region
    res = suppress(df, 5, counts=["n"], by=["region"])
    assert list(res.frame["n"].isna()) == [True, True, False, False]
    # a finer column met later replaces a coarser one
    df2 = df[["region", "hospital", "n"]]
    assert disclosure.dimension_columns(df2, ["n"]) == ["hospital"]


def test_on_the_tiny_cohort(tiny_cohort, tiny_params, tmp_path):
    """The real cohort is refused (with and without its id columns)
    an indicator table by hospital
    from it is exported with its small cells withheld and nothing small left in any count column."""
    from hipfrac.export import Exporter

    with pytest.raises(DisclosureError, match="person_id"):
        disclosure.check_person_level(tiny_cohort, "cohort")
    anonymous = tiny_cohort.drop(columns=["person_id", "op_id"])
    reasons = disclosure.person_level_reasons(anonymous)
    assert any("death_date" in r for r in reasons) and any("one row per person" in r for r in reasons)
    sample = tiny_cohort[["age", "sex", "followup_days", "dead"]].head(40)
    assert disclosure.person_level_reasons(sample)

    d = tiny_cohort[tiny_cohort["surgery_48h"].notna()]
    g = (d.groupby("hospital").agg(n=("surgery_48h", "size"), events=("surgery_48h", "sum"))
         .reset_index().sort_values("hospital", ignore_index=True))
    g["prop"] = g.events / g.n
    assert disclosure.small_cells(g, 5), "the tiny cohort should have hospitals with small counts"
    out = Exporter(tiny_params, "99_tiny", output_dir=tmp_path)
    path = out.table(g, "surgery_48h_by_hospital", counts=["n", "events"], derived={"events": ["prop"], "n": ["prop"]})
    written = pd.read_csv(path)
    assert disclosure.small_cells(written, 5) == []
    assert written["events"].isna().sum() != 1 and written["n"].isna().sum() != 1
    assert written.loc[written["events"].isna(), "prop"].isna().all()


def test_boolean_flags_are_not_counts():
    df = pd.DataFrame({"unit": list("abc"), "n": [40, 50, 60], "low_n": [True, False, False],
                       "low_coverage": pd.array([True, None, False], dtype="boolean")})
    assert disclosure.detect_counts(df) == ["n"]
    assert disclosure.small_cells(df, 5) == []


def _cross(values):
    rows = [(f"r{i}", f"c{j}", v) for i, line in enumerate(values) for j, v in enumerate(line)]
    return pd.DataFrame(rows, columns=["row", "col", "n"])


def _attack_cross(vals, withheld, min_cell=5):
    """An attacker of a cross table who knows every row total, column total and the grand total and the
    published cells (independent of the engine: numpy rank tests and scipy LP bounds). Returns the
    withheld cells that are determined exactly, and the small withheld cells bounded to an interval
    narrower than min_cell."""
    from scipy.optimize import linprog

    vals = np.asarray(vals, float)
    r, c = vals.shape
    rows = []
    for i in range(r):
        m = np.zeros((r, c))
        m[i, :] = 1
        rows.append(m.ravel())
    for j in range(c):
        m = np.zeros((r, c))
        m[:, j] = 1
        rows.append(m.ravel())
    rows.append(np.ones(r * c))
    for k in np.flatnonzero(~withheld.ravel()):
        e = np.zeros(r * c)
        e[k] = 1
        rows.append(e)
    A = np.vstack(rows)
    b = A @ vals.ravel()
    rank = np.linalg.matrix_rank(A)
    exact, narrow = [], []
    for k in np.flatnonzero(withheld.ravel()):
        e = np.zeros(r * c)
        e[k] = 1
        if np.linalg.matrix_rank(np.vstack([A, e])) == rank:
            exact.append(divmod(k, c))
        elif 1 <= vals.ravel()[k] < min_cell:
            lo = linprog(e, A_eq=A, b_eq=b, bounds=(0, None)).fun
            hi = -linprog(-e, A_eq=A, b_eq=b, bounds=(0, None)).fun
            if np.floor(hi + 1e-6) - np.ceil(lo - 1e-6) < min_cell:
                narrow.append(divmod(k, c))
    return exact, narrow


def test_a_bridge_between_blocks_is_closed():
    # Every row and column holding a withheld cell holds two or more, yet r1/c1 (value 1) would link two
    # separate blocks of withheld cells (a bridge): row r1's total minus its block gives it exactly. The
    # attacker finds it in that pattern, and nothing in what suppress() publishes.
    vals = [[6, 10, 20, 20, 40, 40], [40, 1, 8, 8, 1, 1], [20, 40, 20, 6, 20, 6], [20, 6, 20, 40, 40, 40]]
    mask = np.zeros((4, 6), bool)
    for i, j in [(0, 0), (0, 1), (1, 1), (1, 4), (1, 5), (2, 4), (2, 5), (3, 0), (3, 1)]:
        mask[i, j] = True
    exact, _ = _attack_cross(vals, mask)
    assert (1, 1) in exact
    res = suppress(_cross(vals), 5, counts=["n"])
    assert _attack_cross(vals, res.frame["n"].isna().to_numpy().reshape(4, 6)) == ([], [])


def test_no_withheld_cell_recoverable_in_random_cross_tables():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        r, c = rng.integers(3, 7), rng.integers(3, 7)
        vals = rng.choice([0, 1, 2, 3, 6, 8, 10, 20, 40], size=(r, c),
                          p=[.04, .08, .08, .08, .14, .14, .14, .15, .15])
        res = suppress(_cross(vals.tolist()), 5, counts=["n"])
        withheld = res.frame["n"].isna().to_numpy().reshape(r, c)
        assert withheld[(vals >= 1) & (vals < 5)].all(), seed
        exact, narrow = _attack_cross(vals, withheld)
        # a cell can only stay determined when nothing was left to withhold (reported as exposed)
        assert (exact, narrow) == ([], []) or res.exposed, seed
        assert not exact and not narrow, (seed, exact, narrow, res.exposed)


def test_zero_is_kept_when_the_total_is_small_too():
    # [3, 0]: the total is 3, a small count itself: whatever publishes it withholds it, so the zero
    # reveals nothing and stays
    res = suppress(pd.DataFrame({"g": ["a", "b"], "n": [3, 0]}), 5, counts=["n"])
    assert list(res.frame["n"].isna()) == [True, False] and res.exposed == []
    # [3, 0, 8]: the total 11 may be published elsewhere; 11 - 8 - 0 = 3: the 8 goes (never a zero when
    # a positive cell is left), leaving 3 + 8 = 11 unresolved
    res = suppress(pd.DataFrame({"g": ["a", "b", "c"], "n": [3, 0, 8]}), 5, counts=["n"])
    assert list(res.frame["n"].isna()) == [True, False, True]
    # a one-row table: its only cell is withheld, nothing else to protect
    res = suppress(pd.DataFrame({"g": ["a"], "n": [3]}), 5, counts=["n"])
    assert res.frame["n"].isna().all() and res.exposed == []


def test_exporter_refuses_an_exposed_cell_in_a_real_data_run(monkeypatch, tmp_path):
    from hipfrac import protection, results
    from hipfrac.export import Exporter
    from hipfrac.params import load

    real = protection.protect

    def leaky(*a, **k):
        res = real(*a, **k)
        res.exposed = ["patients[g=a]: determined by cells that cannot be withheld here"]
        return res

    monkeypatch.setattr(protection, "protect", leaky)
    df = results.annotate(pd.DataFrame({"g": ["a", "b"], "n": [30, 40]}), counts=["n"], dims=["g"])
    out = Exporter(load("params/smoke.yaml", real_data=True), "99_x", output_dir=tmp_path)
    with pytest.raises(DisclosureError, match=r"table 't'.*could not be protected.*g=a"):
        out.table(df, "t")
    out = Exporter(load("params/smoke.yaml"), "99_x", output_dir=tmp_path / "b")
    out.table(df, "t")
    assert any("could not be protected" in w for w in out.warnings)


def test_expected_numbers_are_not_small_counts():
    df = pd.DataFrame({"g": ["a", "b", "c"], "deaths_expected": [1.3, 2.0, 40.2], "n": [50, 60, 70]})
    assert disclosure.small_cells(df, 5) == [(1, "deaths_expected", 2.0)]


def test_columns_after_a_complete_key_are_attributes():
    # indicator x unit identify the rows; the target level that follows is an attribute of a row
    df = pd.DataFrame({"indicator": ["a", "a", "b", "b"], "unit": ["X", "Y", "X", "Y"],
                       "n": [40, 50, 60, 70], "level": ["green", "red", "red", "green"]})
    assert disclosure.dimension_columns(df, ["n"]) == ["indicator", "unit"]
    df3 = pd.DataFrame({"sex": ["f", "f", "m", "m"] * 2, "age_band": ["60-69", "70-79"] * 4,
                        "region": ["N"] * 4 + ["S"] * 4, "n": range(10, 18)})
    assert disclosure.dimension_columns(df3, ["n"]) == ["sex", "age_band", "region"]
