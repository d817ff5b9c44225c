"""Params for notebook 02 (survival and relative survival: `hipfrac.survival`, `hipfrac.relsurv`)."""

from pydantic import Field, field_validator

from hipfrac.terms import check_identifiers

from .base import Section


class SurvivalParams(Section):
    """Analysis settings of notebook 02 (all times in days since the fracture).

    horizons_days: mortality horizons reported per unit (30 d, 90 d, 1 y, 5 y).
    at_risk_years: years since fracture at which numbers at risk are shown under Kaplan-Meier curves.
    km_step_days: grid step of the plotted Kaplan-Meier curves (aggregate, not exact event days).
    casemix: cohort columns of the case-mix model (risk-adjusted mortality, Cox, standardised curves);
      categorical missing values are their own level.
    unit_min_n: units (hospitals, areas) with fewer patients are pooled out of unit-level tables/figures.
    standardised_times_days: times of the standardised (g-computation) survival by region.
    n_boot_standardised: bootstrap replicates for the standardised survival CIs (0 = none).
    net_survival_times_days: times at which net survival is tabulated.
    excess_breaks_days: interval edges of time since fracture for the net excess hazard and the duration
      of excess mortality.
    excess_model_breaks_days: follow-up bands of the excess hazard (Poisson) regression.
    n_boot_duration: bootstrap replicates for the duration of excess mortality.
    seed: random seed of every bootstrap in the notebook.
    risk_adjusted_horizons_days: horizons of the risk-adjusted (O/E) mortality by hospital and referral
      area (each 30, 90 or 365: a 0/1 outcome column of the cohort).
    reference_region: reference level of region of residence in the Cox and excess hazard models.
    reference_age_band: reference age band of the excess hazard models.
    relative_groups: cohort columns by which life years lost, crude probabilities and the flexible
      model's predictions are reported (besides the whole cohort).
    life_years_tau_days: horizons of the restricted mean life years lost (relsurv.life_years_lost).
    crude_times_days: times of the crude probabilities of death (relsurv.crude_probability).
    flexible_df: degrees of freedom of the baseline spline of the flexible parametric relative survival
      model (relsurv.FlexibleExcessHazardFitter).
    flexible_covariates: cohort columns of the flexible model (numeric columns centred; categorical as
      indicators against the most frequent level).
    flexible_tvc: time-varying effects of the flexible model: {covariate column or indicator: spline df}.
    flexible_groups: cohort columns by which the flexible model's predictions and durations are reported.
    cure_threshold: conditional one-year net survival from which on excess mortality counts as over
      (size-based duration, Dal Maso et al. 2014 use 0.95).
    excess_threshold_per_year: excess hazard (per person-year) below which excess mortality counts as over
      (the second size-based duration).
    """

    horizons_days: tuple[int, ...] = (30, 90, 365, 1826)
    at_risk_years: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    km_step_days: float = Field(7.0, gt=0, le=91)
    casemix: tuple[str, ...] = ("age", "male", "asa_group", "charlson", "cognitive", "residence",
                                "fracture_group")
    unit_min_n: int = Field(30, ge=1)
    standardised_times_days: tuple[int, ...] = (30, 365, 1826)
    n_boot_standardised: int = Field(30, ge=0, le=2000)
    net_survival_times_days: tuple[int, ...] = (30, 90, 365, 730, 1096, 1826, 3652)
    # yearly after the first year: on a finer grid (tried: quarter years) the significance-based duration
    # becomes a multiple-testing statistic (one chance interval with its lower limit above 0 late in
    # follow-up moves it to the end; smoke: 4.2 years with a bootstrap CI of 6.2-11.3); the continuous-time
    # durations are the size-based ones of the flexible model (relsurv.flexible_excess_by_groups)
    excess_breaks_days: tuple[float, ...] = (0, 30, 90, 182.6, 365.241, 730.482, 1095.723, 1460.964, 1826.205,
                                             2191.446, 2556.687, 2921.928, 3287.169, 3652.41, 4017.651,
                                             4382.892)
    excess_model_breaks_days: tuple[float, ...] = (0, 30, 90, 365.241, 730.482, 1826.205, 4382.892)
    n_boot_duration: int = Field(50, ge=0, le=5000)
    seed: int = 20260602
    risk_adjusted_horizons_days: tuple[int, ...] = (30, 365)
    reference_region: str = "Helse Sør-Øst"
    reference_age_band: str = "80-89"
    relative_groups: tuple[str, ...] = ("sex", "age_band")
    life_years_tau_days: tuple[float, ...] = (365.241, 1826.205, 3652.41)
    crude_times_days: tuple[float, ...] = (30, 90, 365.241, 1826.205, 3652.41)
    flexible_df: int = Field(8, ge=1, le=12)
    flexible_covariates: tuple[str, ...] = ("age", "sex")
    flexible_tvc: dict[str, int] = {"age": 3}
    flexible_groups: tuple[str, ...] = ("sex", "age_band", "res_region")
    cure_threshold: float = Field(0.95, gt=0.5, lt=1.0)
    excess_threshold_per_year: float = Field(0.05, gt=0, lt=1.0)

    @field_validator("risk_adjusted_horizons_days")
    @classmethod
    def _horizons(cls, v):
        bad = [h for h in v if h not in (30, 90, 365)]
        if bad or not v:
            raise ValueError(f"risk-adjusted horizons must be among 30, 90, 365 days (the cohort's 0/1 outcomes "
                             f"dead_30d, dead_90d, dead_1y); got {list(v)}")
        return v

    @field_validator("casemix")
    @classmethod
    def _names(cls, v):
        return check_identifiers(v, "case-mix columns")

    @field_validator("relative_groups", "flexible_covariates", "flexible_groups")
    @classmethod
    def _columns(cls, v):
        return check_identifiers(v, "cohort columns")

    @field_validator("flexible_tvc")
    @classmethod
    def _tvc(cls, v):
        for name, df in v.items():
            if not isinstance(df, int) or not 1 <= df <= 6:
                raise ValueError(f"flexible_tvc: the spline df of {name!r} must be an integer 1-6, got {df!r}")
        # indicator names such as "sex[male]" are checked against the model's columns when it is fitted
        check_identifiers([n.split("[", 1)[0] for n in v], "time-varying covariates")
        return v
