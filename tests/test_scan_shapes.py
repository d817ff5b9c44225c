"""The output scanner finds leaks by shape, not only by name (issue 13).

Every planted leak is written into a small run directory the way a notebook would leave it (CSV with its
sidecar, Markdown, XLSX, an executed .ipynb with outputs of each mime type) and must be found, with file,
column and row named; its clean counterpart, in the same test, must not be. The prose rule and the
figure inspector are tested on both sides too.
"""

import base64
import hashlib
import json
import uuid

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from openpyxl import Workbook  # noqa: E402

from hipfrac import geography, scan  # noqa: E402
from hipfrac.figures.inspect import individual_marks  # noqa: E402

HOSPITALS = list(geography.hospitals()["hospital"])


# --- helpers ----------------------------------------------------------------------------------------
def _run(tmp_path, **manifest):
    """An empty run directory with a manifest (min_cell 5) and one notebook folder."""
    run = tmp_path / "run"
    for sub in ("tables", "figures"):
        (run / "01_demo" / sub).mkdir(parents=True, exist_ok=True)
    man = {"run": "test", "params": {"export": {"min_cell": 5}}, **manifest}
    (run / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    return run


def _table(run, name, df, count_columns=(), roles=None, folder="tables"):
    """A table as the Exporter writes it: <name>.csv and its sidecar <name>.meta.json."""
    d = run / "01_demo" / folder
    df.to_csv(d / f"{name}.csv", index=False)
    meta = {"table": name, "columns": [str(c) for c in df.columns], "count_columns": list(count_columns)}
    if roles is not None:
        meta["roles"] = roles
    (d / f"{name}.meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return d / f"{name}.csv"


def _found(run, kind=None):
    fs = scan.scan_run(run)
    return [f for f in fs if kind is None or f.kind == kind]


def _people(n, seed=1, dates=True):
    """Person rows as a notebook would leak them, with Norwegian column names."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"alder": (rng.random(n) * 45 + 55).round(1), "kjønn": rng.choice(["K", "M"], n),
                       "sykehus": rng.choice(HOSPITALS, n), "liggetid": rng.integers(1, 30, n)})
    if dates:
        df["dødsdato"] = (pd.Timestamp("2014-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D")
                          ).strftime("%Y-%m-%d")
    return df


def _aggregate(seed=2):
    """A large, clean aggregate: hospital x year x age band, counts of at least 5."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([HOSPITALS, range(2013, 2024), ["50-69", "70-79", "80+"]],
                                     names=["sykehus", "år", "aldersgruppe"])
    df = idx.to_frame(index=False)
    df["antall"] = rng.integers(5, 200, len(df))
    df["andel"] = rng.random(len(df)).round(3)
    return df


def _curve(seed=3):
    """A large, clean Kaplan-Meier curve per region: weekly grid, numbers at risk >= 5."""
    rows = []
    for region in geography.REGIONS:
        n, s = 900, 1.0
        for week in range(400):
            n = max(5, n - int(np.random.default_rng(seed + week).integers(0, 3)))
            s *= 0.999
            rows.append((region, 7 * week, n, round(s, 6), round(s - 0.01, 6), round(min(1, s + 0.01), 6)))
    return pd.DataFrame(rows, columns=["region", "time", "n_risk", "surv", "lower", "upper"])


# --- person-level shape ---------------------------------------------------------------------------------
def test_person_rows_with_renamed_columns_are_found_aggregates_and_curves_are_not(tmp_path):
    run = _run(tmp_path)
    _table(run, "overview", _aggregate())
    _table(run, "km", _curve(), folder="figures")
    assert _found(run) == []
    _table(run, "extract", _people(1200, dates=False))
    # sorted by age, with a row number: the age is monotone along the row number, still not a curve
    _table(run, "sorted", _people(1500, dates=False).sort_values("alder").reset_index(drop=True).reset_index())
    found = _found(run, "person-level table")
    assert [f.path for f in found] == ["01_demo/tables/extract.csv", "01_demo/tables/sorted.csv"], [
        str(f) for f in _found(run)]
    assert "1200 rows" in found[0].detail and "one row per person" in found[0].detail
    assert "'alder'" in found[0].detail  # the column that tells the rows apart is named


def test_person_rows_with_plain_dates_of_death(tmp_path):
    run = _run(tmp_path)
    _table(run, "extract", _people(1200).drop(columns="dødsdato"))
    _table(run, "extract", _people(60))  # 60 rows: too few for the shape rule, the dates give it away
    found = _found(run)
    assert {f.kind for f in found} == {"person-level table"}
    assert any(f.column == "dødsdato" for f in found), [str(f) for f in found]


def test_columns_of_exact_dates_whatever_their_name(tmp_path):
    run = _run(tmp_path)
    rng = np.random.default_rng(4)
    weekly = pd.DataFrame({"uke": pd.date_range("2015-01-05", periods=60, freq="7D").strftime("%Y-%m-%d"),
                           "antall": rng.integers(20, 90, 60)})
    monthly = pd.DataFrame({"måned": pd.date_range("2015-01-01", periods=60, freq="MS").strftime("%Y-%m-%d"),
                            "antall": rng.integers(20, 90, 60)})
    _table(run, "weekly", weekly)
    _table(run, "monthly", monthly)
    assert _found(run) == []  # a regular grid of dates is a time series, first-of-month dates are periods
    days = pd.Timestamp("2015-01-01") + pd.to_timedelta(np.sort(rng.choice(2000, 40, replace=False)), unit="D")
    _table(run, "events", pd.DataFrame({"sykehus": rng.choice(HOSPITALS, 40), "dato": days.strftime("%Y-%m-%d")}))
    found = _found(run, "exact dates")
    assert len(found) == 1 and found[0].column == "dato" and found[0].row == 1
    assert days[0].strftime("%Y-%m-%d") not in str(found[0])  # value withheld: only a masked example
    assert "***" in found[0].value


def test_person_rows_as_a_share_of_the_cohort(tmp_path):
    """300 person rows are not large in absolute terms, but they are 75 % of a 400-person run."""
    run = _run(tmp_path)
    _table(run, "extract", _people(300, dates=False))
    assert _found(run, "person-level table") == []  # no cohort_rows in the manifest: absolute thresholds
    run = _run(tmp_path / "b", cohort_rows=400)
    _table(run, "extract", _people(300, dates=False))
    _table(run, "overview", _aggregate())  # 1452 rows, more than the run's persons, but a dense key
    found = _found(run, "person-level table")
    assert [f.path for f in found] == ["01_demo/tables/extract.csv"], [str(f) for f in found]
    assert "400 persons" in found[0].detail


def _ids(kind, n):
    if kind == "sha256 hex":
        return [hashlib.sha256(f"P{i:07d}".encode()).hexdigest() for i in range(n)]
    if kind == "sha256 base64":
        return [base64.b64encode(hashlib.sha256(f"P{i:07d}".encode()).digest()).decode() for i in range(n)]
    if kind == "uuid":
        return [str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC834 % 2**128)) for i in range(n)]
    return [f"PAS{104729 * (i + 3) % 900000 + 100000}" for i in range(n)]  # letter+digit code


@pytest.mark.parametrize("kind", ["sha256 hex", "sha256 base64", "uuid", "letter+digit code"])
def test_hashed_id_person_table(tmp_path, kind):
    run = _run(tmp_path)
    rng = np.random.default_rng(5)
    clean = pd.DataFrame({"sykehus": HOSPITALS, "kommune": [f"{i:04d}" for i in range(301, 301 + len(HOSPITALS))],
                          "antall": rng.integers(30, 300, len(HOSPITALS))})
    _table(run, "by_hospital", clean)  # unit codes and municipality numbers are not ids
    _table(run, "inputs", pd.DataFrame({"file": [f"data/raw/nhfr_{y}.csv" for y in range(2013, 2024)],
                                        "sha256": _ids("sha256 hex", 11)}))  # digests of input files
    _table(run, "codes", pd.DataFrame({"icd10": [f"S72{i:02d}" for i in range(20)], "label": list("abcdefghijklmnopqrst")}))
    assert _found(run) == []
    ids = _ids(kind, 40)
    _table(run, "hashed", pd.DataFrame({"nøkkel": ids, "alder": rng.integers(60, 100, 40),
                                        "kjønn": rng.choice(["K", "M"], 40)}))
    found = _found(run, "id-like column")
    assert len(found) == 1 and found[0].column == "nøkkel" and found[0].path == "01_demo/tables/hashed.csv"
    assert ids[0] not in str(found[0]) and ids[0][:8] not in str(found[0])


# --- small counts whatever the name -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["antall", "pasienter", "døde", "dødsfall", "operasjoner", "value", "x"])
def test_small_counts_under_names_the_rules_did_not_know(tmp_path, name):
    run = _run(tmp_path)
    df = pd.DataFrame({"sykehus": ["AHUS", "BODO", "KIRKENES", "MOSS"], name: [120, 45, 13, 60]})
    _table(run, "by_hospital", df)  # the Exporter found no count column by name: count_columns []
    assert _found(run) == []
    df.loc[2, name] = 3
    _table(run, "by_hospital", df)
    found = _found(run)
    assert len(found) == 1, [str(f) for f in found]
    f = found[0]
    assert (f.kind, f.path, f.where, f.column, f.row, f.value) == (
        "small count", "01_demo/tables/by_hospital.csv", "table", name, 3, "3")
    assert "KIRKENES" in f.detail


def test_integer_columns_that_are_not_counts(tmp_path):
    """Years, codes, flags, keys, statistics, durations: whole numbers, not counts of persons."""
    run = _run(tmp_path)
    rng = np.random.default_rng(6)
    steps = pd.DataFrame({"step": range(1, 12), "label": [f"exclusion {i}" for i in range(1, 12)],
                          "antall": rng.integers(900, 1000, 11)})
    cif = pd.DataFrame({"region": np.repeat(geography.REGIONS, 6), "cause": np.tile([1, 2], 12),
                        "years": np.tile([1, 1, 5, 5, 10, 10], 4), "cif": rng.random(24).round(3)})
    stats = pd.DataFrame({"factor": ["age", "sex", "asa", "charlson"], "chi2": [40.1, 3.2, 22.9, 15.0],
                          "df": [3, 1, 2, 4], "p": [0.001, 0.07, 0.001, 0.004], "horizon_days": [30, 30, 365, 365],
                          "kommune": ["0301", "1103", "4601", "5001"], "low_volume": [0, 1, 0, 1], "år": [2013, 2014, 2015, 2016]})
    _table(run, "flowchart", steps)
    _table(run, "cif", cif)
    _table(run, "importance", stats)
    assert _found(run) == [], [str(f) for f in _found(run)]
    stats["x"] = [40, 2, 33, 17]
    _table(run, "importance", stats)
    found = _found(run)
    assert [(f.column, f.row, f.value) for f in found] == [("x", 2, "2")], [str(f) for f in found]


def test_sidecar_roles_old_and_new_format(tmp_path):
    run = _run(tmp_path)
    df = pd.DataFrame({"indicator": ["a", "b", "c"], "x": [40, 2, 33]})
    _table(run, "t", df, roles={"indicator": "dimension", "x": "statistic"})
    (run / "01_demo" / "tables" / "t.md").write_text("| indicator | x |\n|---|---:|\n| a | 40 |\n| b | 2 |\n| c | 33 |\n")
    assert _found(run) == []  # a statistic, in the CSV and in its Markdown copy
    for roles, counts in [({"x": "count"}, []), ({"x": "derived"}, []), (None, []), ({"x": "statistic"}, ["x"])]:
        _table(run, "t", df, count_columns=counts, roles=roles)
        found = _found(run, "small count")
        assert {(f.path, f.column, f.row) for f in found} == {
            ("01_demo/tables/t.csv", "x", 2), ("01_demo/tables/t.md", "x", 2)}, (roles, counts)


def test_sidecar_roles_match_labelled_headers(tmp_path):
    """The Markdown, LaTeX and XLSX copies carry labels as headers ("Events" for events)."""
    run = _run(tmp_path)
    df = pd.DataFrame({"hospital": ["AHUS", "BODO"], "events": [40, 8], "score": [2, 3]})
    _table(run, "t", df, count_columns=["events"], roles={"hospital": "dimension", "events": "count",
                                                          "score": "label"})
    md = "| Hospital | Events | score |\n|---|---:|---:|\n| AHUS | 40 | 2 |\n| BODO | 8 | 3 |\n"
    (run / "01_demo" / "tables" / "t.md").write_text(md)
    assert _found(run) == []
    (run / "01_demo" / "tables" / "t.md").write_text(md.replace("| 8 |", "| 3 |"))
    found = _found(run)
    assert [(f.path, f.column, f.row) for f in found] == [("01_demo/tables/t.md", "Events", 2)]


def test_figure_data_sidecar(tmp_path):
    run = _run(tmp_path)
    df = pd.DataFrame({"unit": ["AHUS", "BODO", "MOSS"], "y": [40, 2, 33]})
    _table(run, "funnel.data", df, roles={"unit": "dimension", "y": "label"}, folder="figures")
    assert _found(run) == []
    (run / "01_demo" / "figures" / "funnel.data.meta.json").unlink()  # no sidecar: the shape decides
    found = _found(run)
    assert [(f.path, f.column, f.row) for f in found] == [("01_demo/figures/funnel.data.csv", "y", 2)]


def test_crosstab_with_years_or_units_as_columns(tmp_path):
    run = _run(tmp_path)
    rng = np.random.default_rng(7)
    by_year = pd.DataFrame(rng.integers(5, 90, (6, 11)), columns=[str(y) for y in range(2013, 2024)])
    by_year.insert(0, "sykehus", HOSPITALS[:6])
    by_year.iloc[2, 4] = 0  # zero is not a small count
    by_unit = pd.DataFrame(rng.integers(5, 90, (11, 4)), columns=["Ahus", "Bodø sykehus", "Kirkenes", "Helse Nord"])
    by_unit.insert(0, "periode", [f"P{i}" for i in range(11)])
    shares = pd.DataFrame(rng.random((6, 11)).round(2), columns=by_year.columns[1:])  # proportions: no counts
    shares.insert(0, "sykehus", HOSPITALS[:6])
    _table(run, "by_year", by_year)
    _table(run, "by_unit", by_unit)
    _table(run, "shares", shares)
    assert _found(run) == [], [str(f) for f in _found(run)]
    by_year.iloc[2, 3] = 2
    by_unit.iloc[5, 3] = 4
    _table(run, "by_year", by_year)
    _table(run, "by_unit", by_unit)
    found = {(f.path.split("/")[-1], f.column, f.row, f.value) for f in _found(run)}
    assert found == {("by_year.csv", "2015", 3, "2"), ("by_unit.csv", "Kirkenes", 6, "4")}, found
    assert any(HOSPITALS[2] in f.detail for f in _found(run))


def test_n_percent_cells(tmp_path):
    """Table 1 style "n (%)" cells are counts whatever the column; mean (SD) rows are not."""
    run = _run(tmp_path)
    t1 = pd.DataFrame({"variable": ["n", "age, mean (SD)", "charlson, median", "sex, n (%)", "sex, n (%)"],
                       "level": ["", "", "", "female", "male"],
                       "Gruppe A": ["120", "3 (0.5)", "2", "80 (66.7)", "40 (33.3)"],
                       "Gruppe B": ["64", "4 (0.6)", "1", "<5", "60 (93.8)"]})
    _table(run, "table1", t1)
    assert _found(run) == [], [str(f) for f in _found(run)]
    t1.loc[3, "Gruppe B"] = "3 (4.7)"
    _table(run, "table1", t1)
    found = _found(run)
    assert [(f.column, f.row, f.value) for f in found] == [("Gruppe B", 4, "3 (4.7)")], [str(f) for f in found]


def test_latex_table(tmp_path):
    run = _run(tmp_path)
    tex = ("\\begin{table}\\caption{Deaths by hospital}\\begin{tabular}{lr}\\toprule\nSykehus & Antall \\\\\n"
           "\\midrule\nAHUS & 120 \\\\\nKIRKENES & 13 \\\\\n\\bottomrule\\end{tabular}\\end{table}\n")
    (run / "01_demo" / "tables" / "t.tex").write_text(tex)
    assert _found(run) == []
    (run / "01_demo" / "tables" / "t.tex").write_text(tex.replace("& 13", "& 3"))
    found = _found(run)
    assert [(f.where, f.column, f.row) for f in found] == [("latex table 0", "Antall", 2)]


# --- prose ----------------------------------------------------------------------------------------------
LEAKY_PROSE = [
    "3 patients at Kirkenes died.", "tre pasienter døde ved Kirkenes", "Two women died after surgery.",
    "Deaths: 2", "n = 3", "(N=4)", "4 operated within 24 hours", "2 of the patients were readmitted",
    "to av pasientene døde", "only one patient died", "Kun én pasient ble operert", "en pasient døde",
    '{"deaths": 3}', "1 death at Lofoten", "2 hip fractures in Vardø", "Antall døde: 2", "3 dødsfall", "fire kvinner",
]
CLEAN_PROSE = [
    "95 % CI", "Table 3 shows deaths by region", "figure 2: patients by age", "Fig. 3 patients", "1 year survival",
    "3 months after the fracture", "4 categories of patients", "p = 0.03", "version 2 of the patient registry",
    "k = 3", "fewer than 5 patients", "fewer than 3 patients", "cells of 1–4 patients are withheld", "1 to 4 patients",
    "1 in 4 patients", "one fracture per patient", "ASA 3 patients", "Model 2 patients", "letters were sent to patients",
    "en pasient kan ha flere brudd", "one patient may have several fractures", "1 204 patients", "5 patients",
    "2.3 deaths per 100 person-years", "3 deaths per 1000", "(n = 1,615)", "n = 44 hospitals", "30-day deaths",
    "0 of 44 units outside the exact limits; 2 after case-mix adjustment", "Deaths: 1-year mortality",
    "1. Patients and methods", "up to 4 patients per unit", "at least one fracture", "three hospitals",
]


@pytest.mark.parametrize("text", LEAKY_PROSE)
def test_small_count_in_prose_is_found(text):
    found = scan.scan_prose(f"Results.\n{text}\n", "x.md", "text", 5)
    assert len(found) == 1 and found[0].kind == "small count in text" and found[0].row == "line 2"
    assert 1 <= int(found[0].value) <= 4


@pytest.mark.parametrize("text", CLEAN_PROSE)
def test_numbers_in_prose_that_are_not_small_counts(text):
    assert scan.scan_prose(text, "x.md", "text", 5) == []


def test_min_cell_of_prose():
    assert scan.scan_prose("7 patients died", "x.md", "text", 5) == []
    assert scan.scan_prose("7 patients died", "x.md", "text", 10)[0].value == "7"


def test_out_text_markdown_file(tmp_path):
    run = _run(tmp_path)
    md = run / "01_demo" / "summary.md"
    md.write_text("# Summary\n\n" + "\n".join(f"- {t}" for t in CLEAN_PROSE) + "\n\n| Sykehus | N |\n|---|---:|\n"
                  "| Ahus | 120 |\n")
    assert _found(run) == []
    md.write_text(md.read_text() + "\nAt Kirkenes, 3 patients died within 30 days.\n")
    found = _found(run)
    assert [(f.path, f.kind, f.value) for f in found] == [("01_demo/summary.md", "small count in text", "3")]
    assert found[0].row == f"line {len(md.read_text().splitlines())}"


# --- notebook outputs -------------------------------------------------------------------------------------
def _crosstab(small):
    ct = pd.DataFrame([[40, 51, 38], [22, 19, small], [60, 65, 70]], index=pd.Index(["AHUS", "KIRKENES", "MOSS"],
                      name="sykehus"), columns=pd.Index([2014, 2015, 2016], name="år"))
    return ct


def _outputs(kind, leak):
    """One output of the given kind, leaky or clean."""
    out = nbformat.v4.new_output
    small = 3 if leak else 30
    if kind == "plain_person_rows":
        people = _people(20, dates=False)
        if not leak:  # the same columns, aggregated
            people = people.groupby(["kjønn"]).agg(antall=("alder", "size"), alder=("alder", "mean")).round(1)
            people["antall"] += 100
        text = people.to_string() + ("\n\n[80000 rows x 4 columns]" if leak else "")
        return out("execute_result", data={"text/plain": text}, execution_count=1)
    if kind == "plain_crosstab":
        return out("execute_result", data={"text/plain": repr(_crosstab(small))}, execution_count=1)
    if kind == "plain_value_counts":
        s = pd.Series(["AHUS"] * 40 + ["KIRKENES"] * small + ["MOSS"] * 25, name="sykehus").value_counts()
        return out("execute_result", data={"text/plain": repr(s)}, execution_count=1)
    if kind == "html_table":
        html = pd.DataFrame({"sykehus": ["AHUS", "KIRKENES"], "value": [120, small]}).to_html()
        return out("display_data", data={"text/html": html, "text/plain": "<DataFrame>"})
    if kind == "stream_print_frame":
        df = pd.DataFrame({"sykehus": ["AHUS", "Helse Nord", "KIRKENES"], "antall": [120, 45, small]})
        return out("stream", name="stdout", text=df.to_string() + "\n")
    if kind == "stream_prose":
        return out("stream", name="stdout", text=f"Vardø: {'to' if leak else 'tjue'} pasienter døde innen 30 dager\n")
    if kind == "markdown":
        return out("display_data", data={"text/markdown": f"**Deaths: {small}** at Kirkenes", "text/plain": "<Markdown>"})
    raise ValueError(kind)


@pytest.mark.parametrize("kind, finding, column, row", [
    ("plain_person_rows", "person-level table", None, None),
    ("plain_crosstab", "small count", "2016", 2),
    ("plain_value_counts", "small count", "count", 3),
    ("html_table", "small count", "value", 2),
    ("stream_print_frame", "small count", "antall", 3),
    ("stream_prose", "small count in text", None, "line 1"),
    ("markdown", "small count in text", None, "line 1"),
])
def test_notebook_outputs(tmp_path, kind, finding, column, row):
    run = _run(tmp_path)
    path = run / "01_demo" / "01_demo.ipynb"
    for leak in (False, True):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("display(result)")
        cell.outputs = [_outputs(kind, leak)]
        nb.cells = [nbformat.v4.new_markdown_cell("# Demo\nDeaths are counted from the Cause of Death Registry."), cell]
        nbformat.write(nb, path)
        found = _found(run)
        if not leak:
            assert found == [], [str(f) for f in found]
    assert finding in {f.kind for f in found}, [str(f) for f in found]
    f = next(f for f in found if f.kind == finding)
    assert f.path == "01_demo/01_demo.ipynb" and f.where.startswith("cell 1 output 0")
    assert (f.column, f.row) == (column, row), str(f)


def test_markdown_cell_of_a_notebook(tmp_path):
    run = _run(tmp_path)
    path = run / "01_demo" / "01_demo.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Two regions had fewer than 5 patients; see Table 3.")]
    nbformat.write(nb, path)
    assert _found(run) == []
    nb.cells.append(nbformat.v4.new_markdown_cell("Two women died at Kirkenes."))
    nbformat.write(nb, path)
    assert [(f.where, f.value) for f in _found(run)] == [("cell 1 markdown", "2")]


# --- XLSX ---------------------------------------------------------------------------------------------------
def test_xlsx_sheets(tmp_path):
    run = _run(tmp_path)
    path = run / "01_demo" / "01_demo.xlsx"

    def write(small, dates):
        wb = Workbook()
        ws = wb.active
        ws.title = "by_year"
        ws.append(["Registrations by hospital and year"])
        ws.append(["sykehus", "2014", "2015"])
        for h, a, b in [("AHUS", 40, 51), ("KIRKENES", 22, small), ("MOSS", 60, 65)]:
            ws.append([h, a, b])
        ws2 = wb.create_sheet("extract")
        ws2.append(["sykehus", "dato"])
        for i in range(30):
            day = pd.Timestamp("2016-01-03") + pd.Timedelta(days=int(37 * i + i * i % 11)) if dates else None
            ws2.append([HOSPITALS[i], day.to_pydatetime() if dates else f"period {i}"])
        wb.save(path)

    write(30, dates=False)
    assert _found(run) == []
    write(2, dates=True)
    found = {(f.where, f.kind, f.column, f.row) for f in _found(run)}
    assert found == {("sheet by_year", "small count", "2015", 2), ("sheet extract", "exact dates", "dato", 1)}, found


# --- findings ---------------------------------------------------------------------------------------------
def test_findings_never_print_ids_or_dates(tmp_path):
    run = _run(tmp_path)
    (run / "01_demo" / "note.md").write_text("Patient P0012345 died on 2016-04-12; fnr 01019912345.\n")
    found = _found(run)
    assert {f.kind for f in found} >= {"pseudonymous id (person id)", "exact date of birth or death",
                                       "pseudonymous id (national identity number)"}
    text = "\n".join(map(str, found))
    for secret in ("P0012345", "2016-04-12", "01019912345", "04-12"):
        assert secret not in text, text
    assert "P00***" in text


def test_scan_of_a_national_size_run_has_no_false_findings(tmp_path):
    """600 files and some 30,000 table rows of aggregates: nothing found (its time is measured by
    `make bench`, stage scan, not here)."""
    run = _run(tmp_path)
    big = pd.concat([_aggregate(seed).assign(indikator=f"ind{seed}") for seed in range(20)],
                    ignore_index=True)  # 29,040 rows: 20 indicators x 44 hospitals x 11 years x 3 age bands
    _table(run, "big", big)
    for i in range(600):
        (run / "01_demo" / "tables" / f"note_{i}.md").write_text(f"| Sykehus | N |\n|---|---:|\n| Ahus | {100 + i} |\n")
    assert _found(run) == []


# --- figures that draw individuals -------------------------------------------------------------------------
def test_scatter_of_patients_is_flagged():
    rng = np.random.default_rng(8)
    fig, ax = plt.subplots()
    ax.scatter(rng.random(2000), rng.random(2000), s=2)
    ax.set_title("Waiting time by age")
    found = individual_marks(fig)
    plt.close(fig)
    assert len(found) == 1 and "Waiting time by age" in found[0] and "scatter" in found[0] and "2000" in found[0]


def test_funnel_plot_of_hospitals_is_not_flagged():
    rng = np.random.default_rng(9)
    n = rng.integers(20, 600, 44)
    p = rng.binomial(n, 0.7) / n
    fig, ax = plt.subplots()
    ax.scatter(n, p, s=12)
    grid = np.linspace(20, 600, 300)
    for z in (1.96, 3.09):  # control limits: lines without markers, 300 points each
        ax.plot(grid, 0.7 + z * np.sqrt(0.21 / grid), color="grey")
        ax.plot(grid, 0.7 - z * np.sqrt(0.21 / grid), color="grey")
    ax.axhline(0.7)
    assert individual_marks(fig) == [] and individual_marks(fig, n_rows=44) == []
    plt.close(fig)


def test_step_curve_without_markers_and_binned_plots_are_not_flagged():
    rng = np.random.default_rng(10)
    t = np.sort(rng.exponential(300, 2000))
    fig, (a, b, c) = plt.subplots(1, 3)
    a.step(t, np.linspace(1, 0.2, 2000), where="post")
    a.fill_between(t, np.linspace(0.95, 0.15, 2000), np.linspace(1, 0.25, 2000), step="post", alpha=0.3)
    b.hexbin(rng.random(2000), rng.random(2000), gridsize=10)
    c.hist2d(rng.random(2000), rng.random(2000), bins=10)
    c.bar(range(10), range(10))
    assert individual_marks(fig) == []
    a.plot(t[::10], np.linspace(1, 0.2, 200), "+")  # 200 censoring ticks: at the limit, not over it
    assert individual_marks(fig) == []
    a.plot(t, np.linspace(1, 0.2, 2000), "|")  # a tick per patient
    assert len(individual_marks(fig)) == 1
    plt.close(fig)


def test_marks_per_row_of_the_data_and_split_scatters():
    rng = np.random.default_rng(11)
    fig, ax = plt.subplots()
    ax.plot(rng.random(150), rng.random(150), "o")  # 150 dots: fine for a 60-row frame, not for a 12-row one
    assert individual_marks(fig) == [] and individual_marks(fig, n_rows=60) == []
    assert len(individual_marks(fig, n_rows=12)) == 1
    plt.close(fig)
    fig, ax = plt.subplots()
    for _ in HOSPITALS[:10]:  # one small scatter per hospital, 1,000 patients in all
        ax.scatter(rng.random(100), rng.random(100))
    found = individual_marks(fig)
    assert len(found) == 1 and "1000 points in 10 marker artists" in found[0]
    plt.close(fig)
