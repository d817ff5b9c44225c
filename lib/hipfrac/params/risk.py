"""Params for risk factors of death after hip fracture and their relative importance
(`hipfrac.risk`, `hipfrac.competing`; notebook 03)."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section

# The factors hipfrac.risk knows (hipfrac.risk.FACTORS; kept here to validate without importing it).
KNOWN_FACTORS = ("age", "male", "asa_group", "cognitive", "charlson", "fracture_type", "residence",
                 "living_alone", "education", "income_quintile", "delay_band", "operation_type",
                 "nonguideline_implant", "hospital_volume", "res_region")
# Covariates of the second-hip-fracture models (cohort columns; text columns become indicators).
KNOWN_COMPETING = ("age10", "male", "charlson", "residence", "res_region", "cognitive", "asa_group",
                   "osteo_med_before", "income_quintile", "education", "living_alone")


def _check(names, known, what):
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown {what} {bad}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} listed twice: {sorted({n for n in names if list(names).count(n) > 1})}")
    return names


class RiskParams(Section):
    """Cox models for death, relative importance, missing data and competing risks.

    patient_factors / contextual_factors: model factors (names in hipfrac.risk.FACTORS); the main
      models use both lists.
    horizons_days: follow-up horizons of the short-term models (days); the whole follow-up is always
      modelled too.
    hospital: "cluster" = cluster-robust standard errors by treating hospital; "strata" = hospital as
      strata (separate baseline hazards; then no adjusted curves or attributable fractions).
    age_knots: knots of the restricted cubic spline of age (3, 4 or 5; at Harrell's quantiles).
    m_imputations: number of multiply imputed data sets (chained equations); 0 = complete cases only.
    mice_iterations: chained-equation cycles per imputed data set.
    seed: random seed of the imputations and the attributable-fraction simulation.
    piecewise_cuts_days: episode splits for time-specific hazard ratios (days since the fracture).
    ph_transform: time scale of the scaled-Schoenfeld PH test (km as survival::cox.zph, identity, rank, log).
    schoenfeld_bins: groups of consecutive deaths in the Schoenfeld plots.
    paf_day: day at which attributable fractions of death are computed (g-computation).
    paf_draws: coefficient draws for the attributable-fraction intervals.
    cindex_drop: compute the drop in C-index per factor (refits the model once per factor).
    competing_covariates: covariates of the cause-specific Cox and Fine-Gray models of a second hip
      fracture ("age10" = age per 10 years).
    cif_days: days at which the cumulative incidence of a second hip fracture is tabulated.
    """

    patient_factors: list[str] = Field(default_factory=lambda: [
        "age", "male", "asa_group", "cognitive", "charlson", "fracture_type", "residence", "living_alone",
        "education", "income_quintile"])
    contextual_factors: list[str] = Field(default_factory=lambda: [
        "delay_band", "operation_type", "nonguideline_implant", "hospital_volume", "res_region"])
    horizons_days: list[int] = Field(default_factory=lambda: [30, 365])
    hospital: Literal["cluster", "strata"] = "cluster"
    age_knots: int = Field(4, ge=3, le=5)
    m_imputations: int = Field(10, ge=0, le=100)
    mice_iterations: int = Field(5, ge=1, le=50)
    seed: int = Field(2026, ge=0)
    piecewise_cuts_days: list[int] = Field(default_factory=lambda: [30, 365])
    ph_transform: Literal["km", "identity", "rank", "log"] = "km"
    schoenfeld_bins: int = Field(10, ge=3, le=50)
    paf_day: int = Field(365, ge=1)
    paf_draws: int = Field(200, ge=10, le=10000)
    cindex_drop: bool = True
    competing_covariates: list[str] = Field(default_factory=lambda: [
        "age10", "male", "charlson", "residence", "cognitive", "res_region"])
    cif_days: list[int] = Field(default_factory=lambda: [365, 730, 1826, 3652])

    @field_validator("patient_factors", "contextual_factors")
    @classmethod
    def _factors(cls, v):
        return _check(v, KNOWN_FACTORS, "risk factor(s)")

    @field_validator("competing_covariates")
    @classmethod
    def _competing(cls, v):
        if not v:
            raise ValueError("at least one covariate is needed")
        return _check(v, KNOWN_COMPETING, "competing-risk covariate(s)")

    @field_validator("horizons_days", "piecewise_cuts_days", "cif_days")
    @classmethod
    def _days(cls, v):
        if any(d <= 0 for d in v) or sorted(set(v)) != list(v):
            raise ValueError(f"days must be positive and strictly increasing, got {v}")
        return v

    @model_validator(mode="after")
    def _disjoint(self):
        both = set(self.patient_factors) & set(self.contextual_factors)
        if both:
            raise ValueError(f"factor(s) {sorted(both)} are in both patient_factors and contextual_factors")
        if "m_imputations" in self.model_fields_set and self.m_imputations == 1:
            raise ValueError("m_imputations must be 0 (complete cases only) or at least 2")
        return self

    @property
    def factors(self) -> list[str]:
        return [*self.patient_factors, *self.contextual_factors]
