"""The output scanner: silent on clean Exporter outputs, loud on every kind of planted leak."""

import re
import shutil
from argparse import Namespace

import matplotlib

matplotlib.use("Agg")
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from openpyxl import Workbook  # noqa: E402

from hipfrac import scan  # noqa: E402


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A run directory as the runner leaves it: Exporter outputs + an executed notebook with
    aggregate displays (an HTML table of counts, printed numbers, dates of the study period)."""
    from test_export import exported_copy

    run = tmp_path_factory.mktemp("run") / "smoke"
    nbdir = run / "99_demo"
    exported_copy(nbdir)
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("overview = out.suppress(counts)\noverview")
    html = pd.DataFrame({"hospital": ["Ahus", "Bodø"], "n": [120, 0], "prop": [0.8, None]}).to_html()
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="Study period 2013-01-01 to 2023-12-31; 5,432 patients\n"),
        nbformat.v4.new_output("execute_result", data={"text/html": html, "text/plain": "hospital n\nAhus 120"},
                               execution_count=1),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo\nDeaths are counted from the Cause of Death Registry."), code]
    nbformat.write(nb, nbdir / "99_demo.ipynb")
    return run


def _plant(clean_run, tmp_path):
    run = tmp_path / "smoke"
    shutil.copytree(clean_run, run)
    return run


def _kinds(findings):
    return {f.kind for f in findings}


def test_clean_run_has_no_findings(clean_run, capsys):
    assert scan.scan_run(clean_run) == []
    assert scan.cli(Namespace(path=str(clean_run), min_cell=None)) == 0
    assert "no person-level content" in capsys.readouterr().out


def test_id_patterns_agree_with_the_data_contract():
    from hipfrac import schema

    src = open(schema.__file__, encoding="utf-8").read()
    contract = set(re.findall(r'pattern=r"([A-Z]\\d\{\d+\})"', src)) | {schema.PERSON_ID}
    ours = set(scan.ID_PATTERNS.values())
    assert contract <= ours, f"id formats in hipfrac.schema not scanned for: {contract - ours}"


@pytest.mark.parametrize("leak, kind", [
    ("csv_person_id", "pseudonymous id (person id)"),
    ("csv_records", "person-level table"),
    ("csv_small", "small count"),
    ("md_death_date", "exact date of birth or death"),
    ("md_small", "small count"),
    ("xlsx_small", "small count"),
    ("xlsx_ids", "pseudonymous id (operation id)"),
    ("nb_head_html", "person-level table"),
    ("nb_plain_ids", "pseudonymous id (person id)"),
    ("nb_stream_dates", "record-like text"),
    ("nb_source_fnr", "pseudonymous id (national identity number)"),
    ("nb_html_small", "small count"),
    ("json_birth", "exact date of birth or death"),
    # by shape (issue 13): names the rules do not know, prose, printed crosstabs, hashed ids
    ("csv_norwegian_small", "small count"),
    ("md_prose_small", "small count in text"),
    ("nb_plain_crosstab", "small count"),
    ("csv_hashed_ids", "id-like column"),
])
def test_planted_leak_is_found(clean_run, tmp_path, leak, kind, capsys):
    run = _plant(clean_run, tmp_path)
    d = run / "99_demo"
    people = pd.DataFrame({"person_id": [f"P{i:07d}" for i in range(1, 13)],
                           "age": [80.5 + i for i in range(12)], "sex": ["female", "male"] * 6,
                           "fracture_date": pd.date_range("2015-01-03", periods=12, freq="17D").strftime("%Y-%m-%d"),
                           "followup_days": [float(30 * i) for i in range(12)]})
    if leak == "csv_person_id":
        pd.DataFrame({"hospital": ["Ahus"], "n": [50], "example": ["P0012345"]}).to_csv(d / "tables" / "x.csv", index=False)
    elif leak == "csv_records":
        people.drop(columns="person_id").to_csv(d / "tables" / "x.csv", index=False)
    elif leak == "csv_small":
        pd.DataFrame({"hospital": ["Ahus", "Lofoten"], "n_deaths": [50, 3]}).to_csv(d / "tables" / "x.csv", index=False)
    elif leak == "md_death_date":
        (d / "note.md").write_text("The oldest patient died on 2016-04-12 after 3 years.\n")
    elif leak == "md_small":
        (d / "note.md").write_text("| Sykehus | N | Hendelser |\n|---|---:|---:|\n| Ahus | 1\u00a0204 | 2 |\n")
    elif leak in ("xlsx_small", "xlsx_ids"):
        wb = Workbook()
        ws = wb.active
        ws.append(["Title"])
        ws.append(["hospital", "events"])
        ws.append(["Ahus", 4 if leak == "xlsx_small" else 40])
        ws.append(["O12345678" if leak == "xlsx_ids" else "Bodø", 30])
        wb.save(d / "extra.xlsx")
    elif leak.startswith("nb_"):
        path = d / "99_demo.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = nbformat.v4.new_code_cell("cohort.head(12)")
        if leak == "nb_head_html":
            html = people.drop(columns="person_id").to_html()
            cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": html}, execution_count=2)]
        elif leak == "nb_plain_ids":
            cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": people.head(3).to_string()},
                                                   execution_count=2)]
        elif leak == "nb_stream_dates":
            text = people.drop(columns="person_id").to_string()
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        elif leak == "nb_source_fnr":
            cell = nbformat.v4.new_code_cell("x = cohort.query('fnr == \"01019912345\"')")
        elif leak == "nb_plain_crosstab":
            ct = pd.DataFrame({2014: [40, 22], 2015: [51, 3]}, index=pd.Index(["Ahus", "Kirkenes"], name="sykehus"))
            cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": repr(ct)}, execution_count=2)]
        elif leak == "nb_html_small":
            html = pd.DataFrame({"hospital": ["A", "B"], "n": [200, 3]}).to_html()
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html})]
        nb.cells.append(cell)
        nbformat.write(nb, path)
    elif leak == "csv_norwegian_small":
        pd.DataFrame({"sykehus": ["Ahus", "Lofoten"], "antall": [50, 3]}).to_csv(d / "tables" / "x.csv", index=False)
    elif leak == "md_prose_small":
        (d / "note.md").write_text("At Kirkenes, 3 patients died within 30 days.\n")
    elif leak == "csv_hashed_ids":
        import hashlib

        ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(12)]
        people.assign(person_id=ids).rename(columns={"person_id": "key"}).to_csv(d / "tables" / "x.csv", index=False)
    elif leak == "json_birth":
        (d / "debug.json").write_text('{"oldest": {"birth_date": "1915-02-03"}}\n')
    findings = scan.scan_run(run)
    assert kind in _kinds(findings), [str(f) for f in findings]
    assert scan.cli(Namespace(path=str(run), min_cell=None)) == 1
    err = capsys.readouterr().err
    assert "finding" in err and kind in err


def test_min_cell_taken_from_the_run(clean_run, tmp_path):
    run = _plant(clean_run, tmp_path)
    pd.DataFrame({"hospital": ["Ahus", "Lofoten"], "n": [50, 7]}).to_csv(run / "99_demo" / "tables" / "x.csv", index=False)
    assert scan.scan_run(run, min_cell=5) == []
    assert _kinds(scan.scan_run(run, min_cell=10)) == {"small count"}
    assert scan.run_min_cell(run) == 5  # from the notebook's outputs.json


def test_missing_directory_is_an_error(tmp_path, capsys):
    assert scan.cli(Namespace(path=str(tmp_path / "nope"), min_cell=5)) == 2
    assert "no such output run directory" in capsys.readouterr().err


def test_time_series_of_counts_is_not_a_leak(clean_run, tmp_path):
    run = _plant(clean_run, tmp_path)
    months = pd.DataFrame({"month": pd.date_range("2013-01-01", periods=36, freq="MS").strftime("%Y-%m-%d"),
                           "n": range(100, 136)})
    months.to_csv(run / "99_demo" / "tables" / "monthly.csv", index=False)
    path = run / "99_demo" / "99_demo.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell("monthly")
    cell.outputs = [nbformat.v4.new_output("execute_result", execution_count=3,
                                           data={"text/plain": months.to_string(), "text/html": months.to_html()})]
    nb.cells.append(cell)
    nbformat.write(nb, path)
    assert scan.scan_run(run) == []


def test_decimals_and_expected_numbers_are_not_leaks(clean_run, tmp_path):
    run = _plant(clean_run, tmp_path)
    wb = Workbook()
    ws = wb.active
    ws.append(["term", "estimate", "deaths_avoided"])
    ws.append(["age", 0.14106896587123, 1.1])  # 11 digits after a decimal point; an expected number
    ws.append(["male", -0.06265725918, 25.0])
    wb.save(run / "99_demo" / "model.xlsx")
    assert scan.scan_run(run) == []
    (run / "99_demo" / "note.md").write_text("National identity number 01019912345.\n")
    assert _kinds(scan.scan_run(run)) == {"pseudonymous id (national identity number)"}
