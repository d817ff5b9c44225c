"""The data contract (hipfrac.schema): well-formed specs, a working checker, an up-to-date docs page."""

import pandas as pd
import pytest

from hipfrac import schema
from hipfrac.params import SOURCE_NAMES


def test_every_source_has_a_spec_with_a_valid_key():
    assert set(schema.TABLES) == set(SOURCE_NAMES)
    for name, spec in schema.TABLES.items():
        assert spec.key, name
        for k in spec.key:
            assert spec.column(k).required, f"{name}: key column {k} must be required"
        for c in spec.columns:
            assert c.dtype in schema.DTYPES
            assert c.description


def test_hospital_codes_come_from_geography():
    from hipfrac import geography

    codes = schema.TABLES["nhfr_operations"].column("hospital").codes
    assert set(codes) == set(geography.hospitals()["hospital"])


def _good_death():
    return pd.DataFrame({"person_id": ["P0000001", "P0000002"], "death_date": ["2015-01-02", "2016-03-04"],
                         "underlying_cause": ["I219", ""]})


def test_check_accepts_a_conforming_frame():
    assert schema.check(_good_death(), "death_registry") == []


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.assign(death_date=["2015-13-02", "2016-03-04"]), "death_date: 1 invalid"),
    (lambda d: d.assign(underlying_cause=["I21.9", ""]), "underlying_cause: 1 invalid"),
    (lambda d: d.assign(person_id=["P0000001", "P0000001"]), "duplicate keys"),
    (lambda d: d.assign(person_id=["P0000001", None]), "missing values in a required column"),
    (lambda d: d.drop(columns="death_date"), "missing columns ['death_date']"),
    (lambda d: d.assign(extra=1), "unexpected columns ['extra']"),
])
def test_check_names_each_problem(mutate, expect):
    problems = schema.check(mutate(_good_death()), "death_registry")
    assert any(expect in p for p in problems), problems


def test_check_codes_and_ranges():
    df = pd.DataFrame({"year": [2010, 2010], "sex": ["female", "x"], "age": [50, 106],
                       "mortality_rate": [0.01, -1], "qx": [0.01, 0.5]})
    problems = " | ".join(schema.check(df, "ssb_lifetables"))
    assert "sex: 1 invalid" in problems and "age: 1 invalid" in problems
    assert "mortality_rate: 1 invalid" in problems


def test_docs_page_is_up_to_date():
    path = schema.docs_path()
    assert path.exists(), "run: python -c 'from hipfrac import schema; schema.write_docs()'"
    assert path.read_text(encoding="utf-8") == schema.markdown(), \
        "docs/data_contract.md is stale: regenerate with schema.write_docs()"
    for name in schema.TABLES:
        assert f"## {name}" in schema.markdown()
