"""The attack battery of issue 13 (tests/disclosure_attacks.py).

(a) Each attack class on small constructed runs: it must find the planted recovery, and nothing on a
properly protected version of the same files.  (b) The published smoke run of the project: no attack may
recover anything (scored with the answer key in ``HIPFRAC_ANSWER_KEY`` when given).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disclosure_attacks import (
    CLASSES,
    Run,
    attack_curves,
    attack_differencing,
    attack_hierarchy,
    attack_joint,
    attack_levels,
    attack_non_events,
    attack_run,
    attack_table1,
    attack_text,
    attack_within_row,
)

ROOT = Path(__file__).resolve().parents[1]
NORD = ["HAMMERFEST", "KIRKENES", "TROMSO", "HARSTAD", "NARVIK", "BODO", "VESTERALEN", "LOFOTEN", "MORANA"]
MIN_CELL = 5


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _write(base: Path, files: dict) -> Path:
    """Write ``{"nb/tables/name.csv": frame or text}`` under ``base`` (empty cells for missing values)."""
    for rel, obj in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pd.DataFrame):
            obj.to_csv(p, index=False, na_rep="")
        else:
            p.write_text(obj, encoding="utf-8")
    return base


def _int(df: pd.DataFrame, cols) -> pd.DataFrame:
    df = df.copy()
    for c in cols:
        df[c] = df[c].astype("Int64")
    return df


def _small(cls) -> list:
    """Recoveries that are a leak without any key: exact values of 1..4, or intervals of < 5 values."""
    return [r for r in cls.recoveries if (r.exact and 1 <= r.lo <= MIN_CELL - 1) or (not r.exact and r.hi - r.lo + 1 < MIN_CELL)]


def _hospitals(events: dict, n: dict) -> pd.DataFrame:
    return _int(pd.DataFrame({"indicator": "surgery_24h", "unit_level": "hospital", "unit": NORD,
                              "n": [n[h] for h in NORD], "events": [events[h] for h in NORD]}), ["n", "events"])


def _regions(total_n: int, total_e: int) -> pd.DataFrame:
    # the region total split over two years (the pooled hospital table is by no year)
    rows = [("surgery_24h", "hosp_region", "Helse Nord", 2020, total_n // 2, total_e // 2),
            ("surgery_24h", "hosp_region", "Helse Nord", 2021, total_n - total_n // 2, total_e - total_e // 2)]
    return _int(pd.DataFrame(rows, columns=["indicator", "unit_level", "unit", "year", "n", "events"]),
                ["n", "events"])


N_H = {h: 40 + 7 * i for i, h in enumerate(NORD)}
E_H = {h: 20 + 3 * i for i, h in enumerate(NORD)}
E_H["NARVIK"] = 2


# ------------------------------------------------------------------------------------------------
# (a) each class on constructed runs
# ------------------------------------------------------------------------------------------------
def test_differencing_hospital_vs_region_years(tmp_path):
    hosp = _hospitals(E_H, N_H)
    hosp.loc[hosp.unit == "NARVIK", "events"] = pd.NA
    files = {"nb/tables/by_hospital.csv": hosp,
             "nb/tables/by_region_year.csv": _regions(sum(N_H.values()), sum(E_H.values()))}
    run = Run(_write(tmp_path / "leaky", files))
    res = attack_differencing(run, MIN_CELL)
    hit = [r for r in res.recoveries if r.file == "nb/tables/by_hospital.csv" and r.column == "events"]
    assert [(r.row, r.lo, r.hi) for r in hit] == [(NORD.index("NARVIK"), 2.0, 2.0)]
    # protected: a complementary cell (large, with large non-events) withheld too
    hosp.loc[hosp.unit == "BODO", "events"] = pd.NA
    run = Run(_write(tmp_path / "safe", {**files, "nb/tables/by_hospital.csv": hosp}))
    assert _small(attack_differencing(run, MIN_CELL)) == []


def test_differencing_same_cell_in_two_files(tmp_path):
    a = _hospitals(E_H, N_H)
    b = a.copy()
    a.loc[a.unit == "NARVIK", "events"] = pd.NA
    run = Run(_write(tmp_path / "leaky", {"nb/tables/a.csv": a, "nb/figures/a_fig.data.csv": b}))
    res = attack_differencing(run, MIN_CELL)
    assert any(r.exact and r.lo == 2 and "published in" in r.how for r in res.recoveries)
    b.loc[b.unit == "NARVIK", "events"] = pd.NA
    run = Run(_write(tmp_path / "safe", {"nb/tables/a.csv": a, "nb/figures/a_fig.data.csv": b}))
    assert _small(attack_differencing(run, MIN_CELL)) == []


def test_differencing_answer_key_scores(tmp_path):
    hosp = _hospitals(E_H, N_H)
    key = hosp.copy()
    hosp.loc[hosp.unit == "NARVIK", "events"] = pd.NA
    run_dir = _write(tmp_path / "run", {"nb/tables/by_hospital.csv": hosp,
                                        "nb/tables/by_region_year.csv": _regions(sum(N_H.values()),
                                                                                 sum(E_H.values()))})
    key_dir = _write(tmp_path / "key", {"nb/tables/by_hospital.csv": key})
    rep = attack_run(run_dir, key_dir, classes=("differencing",), joint=False)
    assert len(rep.successes("differencing")) == 1
    assert rep.summary().set_index("class").loc["differencing", "correct_small"] == 1


def _prop_rows(withheld_prop: bool) -> pd.DataFrame:
    n = [40, 55, 61, 70, 33]
    e = [20, 2, 30, 35, 17]
    df = pd.DataFrame({"unit": ["TROMSO", "BODO", "HARSTAD", "NARVIK", "MORANA"], "n": n, "events": e,
                       "prop": [x / y for x, y in zip(e, n)]})
    df = _int(df, ["n", "events"])
    df.loc[1, "events"] = pd.NA
    if withheld_prop:
        df.loc[1, "prop"] = np.nan
    return df


def test_within_row_prop_times_n(tmp_path):
    run = Run(_write(tmp_path / "leaky", {"nb/tables/t.csv": _prop_rows(False)}))
    res = attack_within_row(run, MIN_CELL)
    assert [(r.row, r.column, r.lo, r.hi) for r in res.recoveries] == [(1, "events", 2.0, 2.0)]
    run = Run(_write(tmp_path / "safe", {"nb/tables/t.csv": _prop_rows(True)}))
    assert _small(attack_within_row(run, MIN_CELL)) == []


def test_within_row_sum_identity(tmp_path):
    df = _int(pd.DataFrame({"hospital": NORD[:5], "n_both": [30, 40, 50, 60, 70], "n_nhfr_only": [0, 1, 2, 0, 3],
                            "n_npr_only": [5, 6, 2, 8, 9]}), ["n_both", "n_nhfr_only", "n_npr_only"])
    df["n_total"] = (df.n_both + df.n_nhfr_only + df.n_npr_only).astype("Int64")
    df.loc[2, "n_npr_only"] = pd.NA
    run = Run(_write(tmp_path / "leaky", {"nb/tables/coverage.csv": df}))
    res = attack_within_row(run, MIN_CELL)
    assert [(r.row, r.column, r.lo) for r in res.recoveries] == [(2, "n_npr_only", 2.0)]
    df.loc[2, "n_both"] = pd.NA  # complementary cell in the row
    run = Run(_write(tmp_path / "safe", {"nb/tables/coverage.csv": df}))
    assert _small(attack_within_row(run, MIN_CELL)) == []


def test_hierarchy_stacked_total(tmp_path):
    df = _int(pd.DataFrame({"group_type": ["all", "sex", "sex", "age_band", "age_band"],
                            "group": ["all", "female", "male", "<80", "80+"],
                            "n": [103, 100, 3, 50, 53]}), ["n"])
    df.loc[2, "n"] = pd.NA
    run = Run(_write(tmp_path / "leaky", {"nb/tables/stacked.csv": df}))
    res = attack_hierarchy(run, MIN_CELL)
    assert [(r.row, r.lo) for r in res.recoveries] == [(2, 3.0)]
    df.loc[1, "n"] = pd.NA
    run = Run(_write(tmp_path / "safe", {"nb/tables/stacked.csv": df}))
    assert _small(attack_hierarchy(run, MIN_CELL)) == []


def _km(deaths_per_step: list[int], censored_per_step: list[int], n0: int = 200) -> pd.DataFrame:
    rows, r, s = [], n0, 1.0
    rows.append(("A", 0, r, s))
    for k, (d, c) in enumerate(zip(deaths_per_step, censored_per_step), start=1):
        s *= 1 - d / r  # one event time per step, censoring after it
        r -= d + c
        rows.append(("A", 7 * k, r, s))
    return pd.DataFrame(rows, columns=["res_region", "time", "n_risk", "surv"])


def test_curves_km_steps(tmp_path):
    leaky = _km([2, 6, 3, 7, 5], [0, 0, 0, 0, 0])
    run = Run(_write(tmp_path / "leaky", {"nb/figures/km.data.csv": leaky}))
    res = attack_curves(run, MIN_CELL)
    small = sorted(r.lo for r in _small(res))
    assert small == [2.0, 3.0]
    # protected: every published step holds >= min_cell deaths
    safe = _km([8, 6, 9, 7, 5], [1, 0, 2, 0, 1])
    run = Run(_write(tmp_path / "safe", {"nb/figures/km.data.csv": safe}))
    assert _small(attack_curves(run, MIN_CELL)) == []


def test_curves_cumulative_increments(tmp_path):
    df = _int(pd.DataFrame({"sex": "female", "time": [0, 30, 60, 90, 120], "n_risk": [100, 90, 80, 70, 60],
                            "events": [0, 5, 10, 12, 20]}), ["n_risk", "events"])
    df["cif"] = df.events / 100
    run = Run(_write(tmp_path / "leaky", {"nb/figures/cif.data.csv": df}))
    assert [r.lo for r in _small(attack_curves(run, MIN_CELL))] == [2.0]
    df = df.drop(index=3).reset_index(drop=True)  # merged step (10 -> 20)
    run = Run(_write(tmp_path / "safe", {"nb/figures/cif.data.csv": df}))
    assert _small(attack_curves(run, MIN_CELL)) == []


def _table1(masks: dict) -> pd.DataFrame:
    counts = {"x": (3, 20), "y": (10, 30), "z": (50, 60)}
    nA, nB = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    rows = [("n", "", str(nA + nB), str(nA), str(nB))]
    for lev, (a, b) in counts.items():
        cells = []
        for grp, v, n in (("Overall", a + b, nA + nB), ("A", a, nA), ("B", b, nB)):
            cells.append("<5" if (lev, grp) in masks else f"{v} ({100 * v / n:.1f})")
        rows.append(("grp, n (%)", lev, *cells))
    return pd.DataFrame(rows, columns=["variable", "level", "Overall", "A", "B"])


def test_table1_margins(tmp_path):
    leaky = _table1({("x", "A"), ("y", "A")})  # complementary within A, but B and Overall visible
    run = Run(_write(tmp_path / "leaky", {"nb/tables/table1_by_group.csv": leaky}))
    res = attack_table1(run, MIN_CELL)
    got = {(r.row, r.column): r.lo for r in res.recoveries}
    assert got[(1, "A")] == 3.0
    assert any("false" in r.how for r in res.recoveries)  # the "<5" of y in A hides 10
    safe = _table1({("x", "A"), ("y", "A"), ("x", "B"), ("y", "B"), ("x", "Overall"), ("y", "Overall")})
    run = Run(_write(tmp_path / "safe", {"nb/tables/table1_by_group.csv": safe}))
    assert _small(attack_table1(run, MIN_CELL)) == []


def test_table1_long_layout(tmp_path):
    df = pd.DataFrame({"variable": ["n", "sex", "sex", "n", "sex", "sex"], "level": ["", "f", "m", "", "f", "m"],
                       "group": ["A", "A", "A", "B", "B", "B"], "n": [50, 47, np.nan, 60, 30, 30],
                       "pct": [np.nan, 94.0, 6.0, np.nan, 50.0, 50.0]})
    run = Run(_write(tmp_path / "leaky", {"nb/tables/table1_long.csv": df}))
    assert [r.lo for r in attack_table1(run, MIN_CELL).recoveries] == [3.0]
    df.loc[[1, 2], ["n", "pct"]] = np.nan
    df.loc[0, "n"] = np.nan
    run = Run(_write(tmp_path / "safe", {"nb/tables/table1_long.csv": df}))
    assert _small(attack_table1(run, MIN_CELL)) == []


def _levels(level_visible: bool) -> pd.DataFrame:
    df = pd.DataFrame({"indicator": "surgery_24h", "unit_level": "hospital", "unit": NORD[:4],
                       "n": [40, 4, 50, 60], "events": [30, np.nan, 20, 50],
                       "level": ["yellow", "green" if level_visible else "", "red", "green"]})
    return _int(df, ["n", "events"])


def test_levels_target_of_withheld_row(tmp_path):
    run = Run(_write(tmp_path / "leaky", {"nb/tables/ind.csv": _levels(True)}))
    res = attack_levels(run, MIN_CELL)
    assert [(r.row, r.lo, r.hi) for r in res.recoveries] == [(1, 4.0, 4.0)]
    run = Run(_write(tmp_path / "safe", {"nb/tables/ind.csv": _levels(False)}))
    assert _small(attack_levels(run, MIN_CELL)) == []


def test_non_events_visible(tmp_path):
    df = _int(pd.DataFrame({"unit": NORD[:3], "n": [20, 30, 40], "events": [18, 10, 20]}), ["n", "events"])
    run = Run(_write(tmp_path / "leaky", {"nb/tables/t.csv": df}))
    res = attack_non_events(run, MIN_CELL)
    assert [(r.row, r.column, r.lo) for r in res.recoveries] == [(0, "n-events", 2.0)]
    df.loc[0, "events"] = 12
    run = Run(_write(tmp_path / "safe", {"nb/tables/t.csv": df}))
    assert attack_non_events(run, MIN_CELL).recoveries == []


def test_text_prose_and_rendering(tmp_path):
    df = _int(pd.DataFrame({"unit": NORD[:3], "n": [20, 30, 40], "events": [12, None, 20]}), ["n", "events"])
    md = "| Unit | N | Events |\n| --- | ---: | ---: |\n| HAMMERFEST | 20 | 12 |\n| KIRKENES | 30 | 3 |\n" \
         "| TROMSO | 40 | 20 |\n"
    nb = {"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["Only 2 patients died in KIRKENES\n"]}]}]}
    files = {"nb/tables/t.csv": df, "nb/tables/t.md": md, "nb/summary.md": "In 3 patients the date was missing.\n",
             "nb/nb.ipynb": json.dumps(nb)}
    run = Run(_write(tmp_path / "leaky", files))
    res = attack_text(run, MIN_CELL)
    assert {(r.file, r.lo) for r in res.recoveries} == {("nb/tables/t.csv", 3.0), ("nb/summary.md", 3.0),
                                                         ("nb/nb.ipynb", 2.0)}
    nb["cells"][0]["outputs"][0]["text"] = ["Few patients died in KIRKENES\n"]
    files = {"nb/tables/t.csv": df, "nb/tables/t.md": md.replace("| 3 |", "| s |"),
             "nb/summary.md": "In a few patients the date was missing.\n", "nb/nb.ipynb": json.dumps(nb)}
    run = Run(_write(tmp_path / "safe", files))
    assert attack_text(run, MIN_CELL).recoveries == []


def test_joint_combines_row_identity_and_differencing(tmp_path):
    ev, n = dict(E_H), dict(N_H)
    ev["BODO"], n["BODO"] = 25, 50
    hosp = _hospitals(ev, n)
    hosp["prop"] = hosp.events / hosp.n
    hosp.loc[hosp.unit == "NARVIK", ["events", "prop"]] = [pd.NA, np.nan]
    hosp.loc[hosp.unit == "BODO", "events"] = pd.NA  # complementary, but its proportion is shown
    files = {"nb/tables/by_hospital.csv": hosp,
             "nb/tables/by_region_year.csv": _regions(sum(n.values()), sum(ev.values()))}
    run = Run(_write(tmp_path / "run", files))
    assert _small(attack_differencing(run, MIN_CELL)) == []
    assert _small(attack_within_row(run, MIN_CELL)) == []  # BODO = 25 is not small
    joint = attack_joint(run, MIN_CELL)
    narvik = NORD.index("NARVIK")
    assert any(r.row == narvik and r.column == "events" and r.exact and r.lo == 2 for r in joint.recoveries)


def test_attack_run_reports_every_class(tmp_path):
    run_dir = _write(tmp_path / "run", {"nb/tables/t.csv": _prop_rows(False)})
    rep = attack_run(run_dir)
    assert set(rep.summary()["class"]) == set(CLASSES) | {"joint"}
    assert rep.leaks()


# ------------------------------------------------------------------------------------------------
# (b) the published smoke run of the project
# ------------------------------------------------------------------------------------------------
def test_published_smoke_run_is_not_recoverable():
    run_dir = ROOT / "outputs" / "smoke"
    if not run_dir.is_dir() or not any(run_dir.glob("*/tables/*.csv")):
        pytest.skip("no published smoke run (make smoke)")
    key = os.environ.get("HIPFRAC_ANSWER_KEY")
    key = key if key and Path(key).is_dir() else None
    rep = attack_run(run_dir, key, min_cell=MIN_CELL)
    leaks = rep.leaks()
    msg = rep.summary().to_string() + "\n" + "\n".join(
        f"{r.cls}: {r.file} row {r.row} {r.column} = [{r.lo:g}, {r.hi:g}] ({r.how})" for r in leaks[:40])
    if leaks:
        pytest.fail(f"{len(leaks)} recoverable small counts:\n{msg}", pytrace=False)
    if key and rep.successes():
        pytest.fail(f"{len(rep.successes())} correct-and-small recoveries:\n{msg}", pytrace=False)


def test_a_header_only_table_is_attacked_without_error(tmp_path):
    """An empty published table (e.g. no hospital outside the limits) is a valid output."""
    empty = pd.DataFrame({"unit": pd.Series([], dtype=object), "n": pd.Series([], dtype=object),
                          "events": pd.Series([], dtype=object)})
    run_dir = _write(tmp_path / "run", {"nb/tables/empty.csv": empty, "nb/tables/t.csv": _prop_rows(False)})
    rep = attack_run(run_dir)
    assert set(rep.summary()["class"]) == set(CLASSES) | {"joint"}


def test_published_smoke_run_left_nothing_the_audit_could_not_protect():
    """The run-level audit of the smoke run ends with no exposed cell (a small count still determined, or
    an interval it could not compute: an inconsistent system, e.g. one set of patients under two names)."""
    import json

    p = ROOT / "outputs" / "smoke" / "audit.json"
    if not p.exists():
        pytest.skip("no published smoke run (make smoke)")
    a = json.loads(p.read_text(encoding="utf-8"))
    assert a["exposed"] == 0 and a["pending"] == 0, a
