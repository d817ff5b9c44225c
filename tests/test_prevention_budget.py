"""The FLS budget model reproduces seed 001's appendix (tables 2-4) when given its inputs in DKK."""

import pytest

from hipfrac.params.prevention import BudgetParams, PreventionParams
from hipfrac.prevention import budget_impact, budget_table4_wide, participation_table, round_half_up

# Seed 001 ("Besparelser ved effektiv osteoporosebehandling"), printed figures in DKK.
TABLE2_ROWS = {  # type: (fractures, avoided, cost per fracture, savings)
    "hip": (9690, 485, 190154, 92224690),
    "spine": (2020, 101, 3448, 348248),
    "shoulder": (2900, 145, 21564, 3126780),
    "forearm": (21500, 1075, 9622, 10343650),
}
TABLE2_PRINTED_TOTAL = 106036071   # printed "I alt"; NOT the sum of the printed rows (see below)
TABLE3 = {"staff": 22253349, "dxa": 15791806, "drugs": 20861877, "total": 58907032}
TABLE4 = {  # participation: (savings, costs)
    0.25: (26509018, 14726758), 0.50: (53018036, 29453516),
    0.70: (74225250, 41234922), 1.00: (106036071, 58907032),
}


@pytest.fixture(scope="module")
def dkk():
    return budget_impact(BudgetParams(nok_per_unit=1.0), nnt_fracture=20)


def test_round_half_up_matches_the_seed():
    assert round_half_up(484.5) == 485 and round_half_up(68950 * 0.05) == 3448
    assert round_half_up(1805.5) == 1806 and round_half_up(42283 * 0.51) == 21564


def test_table2_rows_reproduced_exactly(dkk):
    sav = dkk.savings.set_index("fracture_type")
    for ftype, (n, avoided, cost, savings) in TABLE2_ROWS.items():
        assert sav.loc[ftype, "fractures"] == n
        assert sav.loc[ftype, "avoided"] == avoided
        assert sav.loc[ftype, "cost_per_fracture"] == cost
        assert sav.loc[ftype, "savings"] == savings
    assert sav.loc["total", "fractures"] == 36110
    assert sav.loc["total", "avoided"] == 1806


def test_table2_printed_total_is_inconsistent_with_its_rows(dkk):
    """The seed's rows sum to 106,043,368 kr, 7,297 kr more than its printed total. The model sums its
    rows; table 4 in the seed is built from the printed total (next test)."""
    row_sum = sum(v[3] for v in TABLE2_ROWS.values())
    assert row_sum == 106043368
    assert dkk.savings.set_index("fracture_type").loc["total", "savings"] == row_sum
    assert row_sum - TABLE2_PRINTED_TOTAL == 7297


def test_table3_reproduced_exactly(dkk):
    costs = dict(zip(dkk.costs["item"], dkk.costs["annual_cost"]))
    assert costs == TABLE3
    # the DXA line follows from stated inputs alone: 36,110 x (48 % - 23.5 %) x 1,785 kr
    assert round_half_up(36110 * (0.48 - 0.235) * 1785) == TABLE3["dxa"]


def test_table4_reproduced_exactly_from_the_printed_totals():
    t4 = participation_table(TABLE2_PRINTED_TOTAL, TABLE3["total"], (0.25, 0.50, 0.70, 1.00))
    for _, row in t4.iterrows():
        assert (row["savings"], row["costs"]) == TABLE4[row["participation"]]
        assert row["net_saving"] == row["savings"] - row["costs"]


def test_model_table4_is_participation_times_model_totals(dkk):
    t4 = dkk.participation.set_index("participation")
    assert list(t4.index) == [0.25, 0.5, 0.7, 1.0]
    assert t4.loc[1.0, "savings"] == 106043368 and t4.loc[1.0, "costs"] == TABLE3["total"]
    assert t4.loc[0.7, "costs"] == TABLE4[0.70][1]
    wide = budget_table4_wide(dkk)
    assert list(wide.columns) == ["item", "25 %", "50 %", "70 %", "100 %"]


def test_currency_conversion_scales_money_only():
    nok = budget_impact(BudgetParams(nok_per_unit=1.5))
    assert list(nok.savings["avoided"]) == [485, 101, 145, 1075, 1806]
    assert nok.costs.set_index("item").loc["dxa", "annual_cost"] == round_half_up(15791805.75 * 1.5)
    assert nok.participation.set_index("participation").loc[1.0, "costs"] == round_half_up(58907032 * 1.5)


def test_overrides_and_errors():
    b = BudgetParams(nok_per_unit=1.0)
    r = budget_impact(b, counts={"hip": 9000}, n_units=40, treated_share_usual=0.15)
    costs = r.costs.set_index("item")["annual_cost"]
    assert r.savings.set_index("fracture_type").loc["hip", "avoided"] == 450
    assert costs["drugs"] == round_half_up(9000 * (0.48 - 0.15) * b.drug_cost_per_treated)
    assert costs["staff"] == round_half_up(40 * b.staff_cost_per_unit)
    with pytest.raises(KeyError, match="no costs for fracture type"):
        budget_impact(b, counts={"wrist": 10})
    with pytest.raises(ValueError):
        BudgetParams(participation=(0.0, 0.5))


def test_params_defaults_are_the_seed_values():
    p = PreventionParams()
    assert (p.nnt_fracture, p.nnt_death, p.target_share) == (20, 33, 0.48)
    assert p.budget.participation == (0.25, 0.50, 0.70, 1.00)
    assert p.budget.fractures["hip"].surgery_cost + p.budget.fractures["hip"].other_cost == 190154
