"""Reading extracts: every supported format gives the same typed content; renames; clear errors."""

from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from hipfrac import ingest
from hipfrac.params.sources import SourceFile

FIXTURES = Path(__file__).resolve().parent / "reference" / "fixtures"
TYPES = {"person_id": "string", "asa": "int", "ddd": "float", "dispensing_date": "date",
         "surgery_datetime": "datetime", "municipality": "string"}


def format_table() -> pd.DataFrame:
    """The content of tests/reference/fixtures/cohort_formats.sas7bdat (written by cohort_formats.R)."""
    return pd.DataFrame({
        "person_id": ["P0000001", "P0000002", "P0000003"],
        "asa": [1, 3, None],
        "ddd": [1.5, 90.0, None],
        "dispensing_date": pd.to_datetime(["2015-06-10", "2016-02-29", None]),
        "surgery_datetime": pd.to_datetime(["2015-06-11 09:30", "2016-03-01 23:05", None]),
        "municipality": ["0301", "5401", "4601"],
    })


def expected() -> pd.DataFrame:
    df = format_table()
    df.insert(0, "_row", [1, 2, 3])
    return ingest.cast_frame(df, TYPES)


def _csv_text(df, decimal=".") -> pd.DataFrame:
    t = df.copy()
    t["asa"] = t["asa"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    t["ddd"] = t["ddd"].map(lambda v: "" if pd.isna(v) else f"{v:g}".replace(".", decimal))
    t["dispensing_date"] = t["dispensing_date"].dt.strftime("%Y-%m-%d")
    t["surgery_datetime"] = t["surgery_datetime"].dt.strftime("%Y-%m-%d %H:%M")
    return t


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    df = format_table()
    _csv_text(df).to_csv(d / "utf8.csv", sep=";", index=False)
    # Latin-1, comma delimiter, decimal comma, a Norwegian character in an extra column, upper-case names
    lat = _csv_text(df, decimal=",").assign(navn=["Tromsø", "Bærum", "Ås"])
    lat.columns = [c.upper() for c in lat.columns]
    lat.to_csv(d / "latin1.txt", sep="\t", index=False, encoding="latin-1")
    df.to_parquet(d / "x.parquet", index=False)
    pyreadstat.write_dta(df, str(d / "x.dta"))
    pyreadstat.write_sav(df, str(d / "x.sav"))
    # renamed delivery: other column names mapped by params
    _csv_text(df).rename(columns={"person_id": "lopenr", "ddd": "DDD_MENGDE"}).to_csv(d / "renamed.csv", sep=";",
                                                                                    index=False)
    return d


CASES = {
    "csv utf-8": ("utf8.csv", {}),
    "csv latin-1 tab decimal comma": ("latin1.txt", {"format": "csv", "delimiter": "\t", "encoding": "latin-1",
                                                     "decimal": ","}),
    "parquet": ("x.parquet", {}),
    "stata": ("x.dta", {}),
    "spss": ("x.sav", {}),
    "csv renamed": ("renamed.csv", {"rename": {"lopenr": "person_id", "ddd_mengde": "ddd"}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_format_reads_the_same_content(files, case):
    fname, opts = CASES[case]
    got = ingest.read_frame(SourceFile(path=str(files / fname), **opts), TYPES)
    pd.testing.assert_frame_equal(got[list(expected().columns)], expected(), check_dtype=True)


def test_sas_fixture_reads_the_same_content():
    got = ingest.read_frame(SourceFile(path=str(FIXTURES / "cohort_formats.sas7bdat")), TYPES)
    pd.testing.assert_frame_equal(got[list(expected().columns)], expected(), check_dtype=True)


def test_latin1_text_survives(files):
    sf = SourceFile(path=str(files / "latin1.txt"), format="csv", delimiter="\t", encoding="latin-1", decimal=",")
    got = ingest.read_frame(sf, TYPES)
    assert got["navn"].tolist() == ["Tromsø", "Bærum", "Ås"]


def test_date_format_option(tmp_path):
    (tmp_path / "d.csv").write_text("person_id;dispensing_date\nP0000001;10.06.2015\nP0000002;29.02.2016\n")
    got = ingest.read_frame(SourceFile(path=str(tmp_path / "d.csv"), date_format="%d.%m.%Y"),
                            {"person_id": "string", "dispensing_date": "date"})
    assert got["dispensing_date"].dt.strftime("%Y-%m-%d").tolist() == ["2015-06-10", "2016-02-29"]


def test_unparseable_values_become_missing_not_errors(tmp_path):
    (tmp_path / "b.csv").write_text("person_id;asa;ddd;dispensing_date\nP1;3.0;x;2015-02-30\nP2;2.5;1;2015-01-01\n")
    got = ingest.read_frame(SourceFile(path=str(tmp_path / "b.csv")),
                            {"person_id": "string", "asa": "int", "ddd": "float", "dispensing_date": "date"})
    assert got["asa"].tolist()[0] == 3 and pd.isna(got["asa"].iloc[1])     # 2.5 is not an integer
    assert pd.isna(got["ddd"].iloc[0]) and pd.isna(got["dispensing_date"].iloc[0])


def test_missing_file_and_unknown_suffix_are_clear(tmp_path):
    with pytest.raises(ingest.IngestError, match="file not found: .*nope.csv"):
        ingest.read_frame(SourceFile(path=str(tmp_path / "nope.csv")))
    (tmp_path / "x.xyz").write_text("a\n1\n")
    with pytest.raises(ingest.IngestError, match="cannot tell the format"):
        ingest.read_frame(SourceFile(path=str(tmp_path / "x.xyz")))


def test_rename_clash_is_an_error(tmp_path):
    (tmp_path / "c.csv").write_text("a;b\n1;2\n")
    with pytest.raises(ingest.IngestError, match="occur more than once: b"):
        ingest.read_frame(SourceFile(path=str(tmp_path / "c.csv"), rename={"a": "b"}))
