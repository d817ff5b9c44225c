"""Params for notebook 01 (`hipfrac.indicators`, `hipfrac.variation`): treatment variation."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hipfrac.terms import check_identifiers

from .base import Section

UNIT_LEVELS = ("hospital", "hosp_trust", "hosp_region", "referral_area")


class VariationParams(Section):
    """Analysis settings of the treatment-variation notebook (RQ1).

    period: first and last fracture year analysed (inclusive); empty = the whole cohort period.
    min_age, max_age: age limits in years at the fracture (inclusive; max_age empty = no upper limit).
    indicators: indicator ids from lib/hipfrac/data/indicators.yaml to analyse; empty = all.
    unit: unit of comparison for funnels, grids and random intercepts: hospital, hosp_trust,
      hosp_region or referral_area (of residence).
    adjustment: patient factors of the case-mix model (cohort columns); a factor constant among an
      indicator's eligible patients is left out for that indicator; missing categories are a level;
      `year` enters as categories (national time trends are not unit differences).
    min_n: minimum denominator shown without the "low n" flag; 0 = each indicator's own minimum.
    funnel_centre: centre line of funnel plots: "national" (pooled value) or "target" (green level).
    levels: funnel control-limit coverages (two-sided).
    low_coverage: unit register coverage below this is flagged "low coverage".
    random_effects: indicator ids for which the random-intercept logits (null and adjusted: MOR,
      share of variance explained, caterpillar) are fitted; empty = none. They are the slowest step.
    nagq: quadrature nodes of the random-intercept fit (1 = Laplace).
    re_method: adjusted random-intercept model: "offset" (two-stage: case-mix linear predictor as an
      offset; about 6x faster, MOR within 0.1 % of "joint" on the national synthetic cohort) or "joint"
      (all coefficients by maximum likelihood with sigma2).
    """

    period: tuple[int, int] | None = None
    min_age: float = Field(0, ge=0, le=120)
    max_age: float | None = Field(None, ge=0, le=130)
    indicators: tuple[str, ...] = ()
    unit: Literal["hospital", "hosp_trust", "hosp_region", "referral_area"] = "hospital"
    adjustment: tuple[str, ...] = ("age", "male", "asa_group", "cognitive", "fracture_type", "charlson",
                                   "residence", "year")
    min_n: int = Field(0, ge=0, le=1000)
    funnel_centre: Literal["national", "target"] = "national"
    levels: tuple[float, float] = (0.95, 0.998)
    low_coverage: float = Field(0.6, ge=0, le=1)
    random_effects: tuple[str, ...] = ("surgery_48h", "arthroplasty_displaced", "cemented", "nail", "shs_a1",
                                       "nerve_block", "osteo_med_12m")
    nagq: int = Field(1, ge=1, le=25)
    re_method: Literal["offset", "joint"] = "offset"

    @field_validator("adjustment", "indicators", "random_effects")
    @classmethod
    def _names(cls, v):
        return check_identifiers(v, "column or indicator names")

    @model_validator(mode="after")
    def _check(self):
        if self.period is not None and self.period[0] > self.period[1]:
            raise ValueError(f"period: first year {self.period[0]} after last year {self.period[1]}")
        if self.max_age is not None and self.max_age < self.min_age:
            raise ValueError("max_age below min_age")
        if not all(0 < lv < 1 for lv in self.levels) or self.levels[0] >= self.levels[1]:
            raise ValueError("levels: two increasing coverages in (0, 1), e.g. [0.95, 0.998]")
        return self
