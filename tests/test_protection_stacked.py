"""A result stacking several unit types (hospitals and referral areas of the same patients) partitions
each margin once per type: the national total must be their common sum, not the sum of both."""

import pandas as pd

from hipfrac import protection, results


def test_stacked_unit_types_do_not_double_the_national_margin():
    # Helse Nord: hospitals and referral areas of the same 120 patients, one small cell in each
    hosp = pd.DataFrame({"unit_type": "hospital", "unit": ["BODO", "HARSTAD", "KIRKENES", "MORANA"],
                         "n": [50, 30, 3, 37]})
    area = pd.DataFrame({"unit_type": "referral_area", "unit": ["Bodø", "Harstad", "Finnmark", "Mo i Rana"],
                         "n": [48, 33, 2, 37]})
    d = pd.concat([hosp, area], ignore_index=True)
    d = results.annotate(d, counts=["n"], dims={"unit": "{unit_type}"}, labels=["unit_type"], complete=True)
    prot = protection.protect(d, 5)
    assert prot.exposed == []
    shown = prot.frame
    assert shown.loc[shown.unit.isin(["KIRKENES", "Finnmark"]), "n"].isna().all()
    # each type alone: the withheld cells are not the difference of a total and the visible ones
    for t in ("hospital", "referral_area"):
        assert shown.loc[shown.unit_type == t, "n"].isna().sum() >= 2


def test_a_level_called_norway_or_total_is_a_total_only_for_units():
    d = pd.DataFrame({"birth_country": ["Norway", "Sweden", "other"], "n": [300, 3, 20]})
    d = results.annotate(d, counts=["n"], dims=["birth_country"])
    cells = results.row_cells(results.Meta(d))
    assert all(c.get("birth_country") is not None for c in cells.values()), "Norway is a country here"
    u = results.annotate(pd.DataFrame({"hospital": ["Norway", "AHUS"], "n": [323, 40]}), counts=["n"],
                         dims=["hospital"])
    ucells = results.row_cells(results.Meta(u))
    assert ucells[(0, "n")].conds == () and ucells[(1, "n")].get("hosp") is not None


def test_two_columns_naming_one_cell_count_it_once_in_the_margins():
    """A complete table whose n and n_analysed are the same cell (nobody excluded): the region's margin
    is the sum of the hospitals once, not once per column (twice would make the system infeasible)."""
    d = pd.DataFrame({"hospital": ["AHUS", "BAERUM", "DRAMMEN", "KONGSBERG"], "n": [120, 3, 80, 60],
                      "n_analysed": [120, 3, 80, 60], "events": [40, 1, 30, 20]})
    d = results.annotate(d, counts={"n": {}, "n_analysed": {}, "events": {"#surgery_48h": "event"}},
                         dims=["hospital"], complete=True)
    prot = protection.protect(d, 5)
    assert prot.exposed == []
    shown = prot.frame
    assert shown.loc[1, ["n", "n_analysed", "events"]].isna().all()
    # the withheld hospital is not the national total minus the others
    assert shown["n"].isna().sum() >= 2 and shown["n_analysed"].isna().sum() >= 2
