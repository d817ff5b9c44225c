"""Params for secondary prevention after hip fracture (`hipfrac.prevention`, notebook 04).

Defaults of the budget model are the inputs of the Danish expert recommendations' appendix
("Besparelser ved effektiv osteoporosebehandling", seed 001, tables 2-4), in Danish kroner (DKK).
"""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hipfrac.terms import TermError, check_identifiers, parse

from .base import Section


class FractureCost(Section):
    """One fracture type of the budget model (seed 001, table 2).

    count: fractures per year attributed to osteoporosis (the population offered the programme).
    surgery_cost: cost of one operation (DRG tariff), in `BudgetParams.currency`.
    share_operated: share of these fractures treated surgically (0-1).
    other_cost: further cost per fracture counted in full (for hip fractures: municipal and regional
      care beyond surgery), in `BudgetParams.currency`.
    Cost per fracture = surgery_cost * share_operated + other_cost, rounded to a whole currency unit.
    """

    count: float = Field(ge=0)
    surgery_cost: float = Field(ge=0)
    share_operated: float = Field(1.0, ge=0, le=1)
    other_cost: float = Field(0.0, ge=0)


def _seed001_fractures() -> dict[str, FractureCost]:
    # Seed 001, table 2: fractures/year, surgery cost (DRG 2018) x share operated (+ other costs).
    return {
        "hip": FractureCost(count=9690, surgery_cost=66038, share_operated=1.0, other_cost=124116),
        "spine": FractureCost(count=2020, surgery_cost=68950, share_operated=0.05),
        "shoulder": FractureCost(count=2900, surgery_cost=42283, share_operated=0.51),
        "forearm": FractureCost(count=21500, surgery_cost=34365, share_operated=0.28),
    }


class BudgetParams(Section):
    """Budget impact of a fracture liaison service (FLS), shaped like seed 001's table 4.

    currency: currency of the unit costs below (seed 001: DKK).
    nok_per_unit: NOK per one unit of `currency`; every money result is multiplied by it and reported
      in NOK. Default 1.32 = approximate 2019 average NOK per DKK (price year of seed 001's costs;
      no inflation adjustment). Set 1.0 with currency NOK for Norwegian unit costs.
    participation: shares of eligible patients taking part (table 4 columns).
    fractures: fracture types with counts and costs (table 2); the Norwegian application replaces the
      counts by the cohort's annual number of hip fracture patients.
    staff_cost_per_unit: staff cost of one FLS per year. Default 1,059,683.29 = table 3's staff line
      (22,253,349) / 21 hospitals; the text rounds it to "about 1.1 mio. kr per FLS".
    n_units: number of hospitals running an FLS (seed 001: 21 hospitals with an emergency department).
    patients_per_unit: enrolled patients one FLS unit serves (seed 001: 36,110 fractures / 21 units =
      1,719.52). The Norwegian application scales staff by it (units = annual patients / this); set it to
      0 to count one unit per hospital treating hip fractures instead.
    dxa_cost: cost of one outpatient visit with DXA scan (DRG 30PR07, 2018: 1,785).
    dxa_share_usual / dxa_share_fls: share scanned without / with FLS (23.5 % / 48 %).
    treated_share_usual / treated_share_fls: share given osteoporosis drugs without / with FLS
      (17.2 % / 48 %).
    drug_cost_per_treated: annual drug cost per additionally treated patient. Seed 001 prices a drug mix
      (91.1 % alendronate, 7.3 % denosumab, 1.6 % teriparatide) without printing the prices; the default
      1,875.750952 is table 3's drug line (20,861,877) / (36,110 x (48 % - 17.2 %)).
    """

    currency: str = "DKK"
    nok_per_unit: float = Field(1.32, gt=0)
    participation: tuple[float, ...] = (0.25, 0.50, 0.70, 1.00)
    fractures: dict[str, FractureCost] = Field(default_factory=_seed001_fractures)
    staff_cost_per_unit: float = Field(1_059_683.29, ge=0)
    n_units: int = Field(21, ge=0)
    patients_per_unit: float = Field(1719.52, ge=0)
    dxa_cost: float = Field(1785, ge=0)
    dxa_share_usual: float = Field(0.235, ge=0, le=1)
    dxa_share_fls: float = Field(0.48, ge=0, le=1)
    treated_share_usual: float = Field(0.172, ge=0, le=1)
    treated_share_fls: float = Field(0.48, ge=0, le=1)
    drug_cost_per_treated: float = Field(1875.750952, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if not self.participation or any(not 0 < p <= 1 for p in self.participation):
            raise ValueError(f"participation shares must lie in (0, 1], got {self.participation}")
        if not self.fractures:
            raise ValueError("fractures: at least one fracture type is needed")
        return self


class PreventionParams(Section):
    """Analysis settings of notebook 04 (secondary prevention).

    target_share: treatment share every region reaches in scenario (b) (seed 001: 48 % with an FLS).
    nnt_fracture / nnt_death: number needed to treat (enrol) to avoid one new fracture / one death
      (seed 001's 2018 meta-analysis: 20 and 33).
    scenario_horizon_years: horizon of the sensitivity scenario that replaces 1 / nnt_fracture by the
      estimated absolute risk reduction CIF(horizon) x (1 - HR) (cohort's own second hip fracture
      cumulative incidence and the time-varying Cox HR).
    scenario_indicator: medication indicator of the scenarios and the budget model: started within 3, 6
      or 12 months (cohort columns osteo_med_3m/6m/12m).
    cif_years: horizons (years) of the cumulative incidence of new fractures.
    persistence_years: horizons (years after the first dispensing) of the persistence shares.
    persistence_grace_days: a starter counts as still treated at t if a dispensing falls on or after
      t - grace (days after the first dispensing); 180 days covers a 3-month pack plus a gap and a
      6-monthly denosumab injection.
    landmark_days: landmark of the landmark analysis (days after the fracture; default 182 = 6 months).
    exposure: time-dependent exposure definition: "started" = exposed from the first dispensing on;
      "on_treatment" = exposed from the first to the last dispensing + persistence_grace_days.
    casemix: cohort columns of the case-mix adjustment (logistic model for expected counts).
    model_terms: terms of the "who is treated" logistic model: column names, C(x) (categorical), log(x),
      spline(x, df) and interactions a:b (hipfrac.terms: parsed and checked, never evaluated as code).
    units: unit levels of the uptake comparisons (cohort columns); the first is used for the scenarios.
    re_unit: unit of the random-intercept model (median odds ratio).
    """

    target_share: float = Field(0.48, gt=0, le=1)
    nnt_fracture: float = Field(20, gt=1)
    nnt_death: float = Field(33, gt=1)
    scenario_horizon_years: float = Field(5, gt=0)
    scenario_indicator: Literal["3m", "6m", "12m"] = "12m"
    cif_years: tuple[float, ...] = (1, 2, 5, 10)
    persistence_years: tuple[float, ...] = (1, 3)
    persistence_grace_days: float = Field(180, ge=0)
    landmark_days: float = Field(182, gt=0)
    exposure: Literal["started", "on_treatment"] = "started"
    casemix: tuple[str, ...] = ("age_band", "sex", "asa_group", "cognitive", "residence", "charlson_group")
    model_terms: tuple[str, ...] = (
        "C(age_band)", "C(sex)", "C(cognitive)", "C(residence)", "C(charlson_group)", "osteo_med_before",
    )
    units: tuple[str, ...] = ("res_region", "res_trust", "referral_area", "hospital")
    re_unit: str = "hospital"
    budget: BudgetParams = BudgetParams()

    @field_validator("model_terms")
    @classmethod
    def _terms(cls, v):
        try:
            parse(v, "terms")
        except TermError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("casemix", "units")
    @classmethod
    def _columns(cls, v):
        return check_identifiers(v, "column names")

    @field_validator("re_unit")
    @classmethod
    def _column(cls, v):
        return check_identifiers([v], "column name")[0]
