"""The generator's true model: every parameter the synthetic registry is drawn from (units in names).

Changing a value here changes the code fingerprint, so cached extracts are regenerated.
"""

from __future__ import annotations

import numpy as np

# --- volume --------------------------------------------------------------------------------------
FIRST_FRACTURES_PER_YEAR = 8_100   # index (first) hip fractures a year at scale 1; with second fractures
VOLUME_TREND_PER_YEAR = -0.003     # relative change per calendar year around 2016 (~9,000 in all)
CROSS_AREA_FLOW = 0.04             # share treated at another hospital of the same region
# Age-sex-standardised incidence differs between referral areas by a random effect (log scale, SD):
# the health atlases see a max/min ratio (EQ) of about 1.3 across the 19 areas for hip fractures.
AREA_INCIDENCE_SD = 0.07

# --- patients ------------------------------------------------------------------------------------
P_FEMALE = 0.695
AGE_MEAN = {"female": 83.8, "male": 80.2}   # truncated normal on [50, 104], years
AGE_SD = {"female": 8.8, "male": 10.2}
FRACTURE_TYPE_P = {"fn_undisplaced": 0.19, "fn_displaced": 0.355, "basocervical": 0.03, "troch_a1": 0.14,
                   "troch_a2": 0.165, "troch_a3": 0.07, "subtroch": 0.05}
EDUCATION_P = {"low": 0.46, "medium": 0.38, "high": 0.16}
BIRTH_COUNTRY_P = {"norway": 0.93, "nordic_europe": 0.045, "other": 0.025}

# Charlson components (Quan 2011 weights) with prevalence in hip fracture patients and the ICD-10 codes
# (no dot) the generator writes to NPR for them (all inside Quan's 2005 enhanced ICD-10 coding).
QUAN_WEIGHTS = {"mi": 0, "chf": 2, "pvd": 0, "cevd": 0, "dementia": 2, "cpd": 1, "rheumd": 1, "pud": 0,
                "mld": 2, "diab": 0, "diabwc": 1, "hp": 2, "rend": 1, "canc": 2, "msld": 4, "metacanc": 6,
                "aids": 4}
COMORB_PREV = {"mi": 0.08, "chf": 0.12, "pvd": 0.05, "cevd": 0.14, "dementia": 0.16, "cpd": 0.12,
               "rheumd": 0.04, "pud": 0.03, "mld": 0.012, "diab": 0.11, "diabwc": 0.04, "hp": 0.02,
               "rend": 0.07, "canc": 0.10, "msld": 0.005, "metacanc": 0.02, "aids": 0.0005}
COMORB_CODES = {"mi": ["I219", "I252", "I220"], "chf": ["I509", "I500", "I110"], "pvd": ["I702", "I739"],
                "cevd": ["I639", "I64", "G459", "I693"], "dementia": ["F039", "G309", "F019"],
                "cpd": ["J449", "J459", "J439"], "rheumd": ["M069", "M059", "M353"], "pud": ["K259", "K269"],
                "mld": ["K703", "K746", "B182"], "diab": ["E119", "E109"], "diabwc": ["E112", "E113", "E105"],
                "hp": ["G819", "G822"], "rend": ["N184", "N185", "N189"], "canc": ["C509", "C61", "C189", "C349"],
                "msld": ["I850", "K766"], "metacanc": ["C787", "C795", "C80"], "aids": ["B20", "B24"]}
HIERARCHY = {"mld": "msld", "diab": "diabwc", "canc": "metacanc"}
BACKGROUND_CODES = ["I10", "M179", "H251", "E785", "R55", "Z000", "M819", "N390", "K590", "L899"]

# --- mortality: h(t|x) = h_pop(age+t, sex, year+t) * F(x) * m(t) ------------------------------------
# F(x) = FRAILTY_MEAN * exp(beta'x - centre), centre = log of the cohort mean of exp(beta'x): the patient's
#   mortality relative to the general population of the same sex, age and calendar year had the fracture
#   not happened (frailty; its cohort mean FRAILTY_MEAN is above 1). Hip fracture patients are frailer than
#   their peers: the SMR of the survivors stays about 2 in years 1-5 and 1.5-1.7 up to 12 years (HR against
#   matched controls 1.8-2.2 after year one, Katsoulis et al. 2017; excess for twelve years, Omsland et al.
#   2014), falling only because the frailest die first.
# m(t) = 1 + M_A1 exp(-t/M_TAU1_DAYS): the fracture's own (acute) excess on top, highest in the first days
#   (the fall, surgery, complications), gone after a few weeks; m(t) > 1 at every t, no hard end.
# FRAILTY_MEAN is the smallest level at which the marginal net excess hazard of the cohort stays positive
# over the whole follow-up (the least frail, exp(beta'x - centre) about 0.3, still die faster than their
# peers once the acute excess has passed): net survival never rises. Calibrated with a deterministic harness
# on the national cohort (30-day / 1-year / 5-year mortality 7.5 / 25.2 / 59 %, 1-year SMR 3.9: men 5.4,
# women 3.4; SMR 2.2 at 1-5 years, 1.7 at 5-10, 1.5 at 10-12).
FRAILTY_MEAN = 3.3
M_A1, M_TAU1_DAYS = 10.5, 5.0
LOG_HR = {
    "male": np.log(1.75),
    "asa_group[3]": np.log(1.6),
    "asa_group[4-5]": np.log(2.6),
    "cognitive[yes]": np.log(1.8),
    "cognitive[uncertain]": np.log(1.35),
    "charlson": np.log(1.10),
    "residence[home_care]": np.log(1.25),
    "residence[nursing_home]": np.log(1.6),
    "income_quintile": np.log(0.95),
    "education[low]": np.log(1.10),
    "education[high]": np.log(0.90),
    "delay_band[>48h]": np.log(1.20),
    "res_region[Helse Nord]": np.log(1.12),
    "res_region[Helse Midt-Norge]": np.log(0.95),
    "res_region[Helse Vest]": np.log(0.97),
}
MORTALITY_REFERENCE = {"sex": "female", "asa_group": "1-2", "cognitive": "no", "residence": "home",
                       "education": "medium", "delay_band": "<48h (<24h and 24-48h)",
                       "res_region": "Helse Sør-Øst", "income_quintile": "per quintile (1-5), linear",
                       "charlson": "per point (Quan 2011 weights, 5-year look-back, index stay excluded)"}
FOLLOWUP_HORIZON_YEARS = 17.0


def relative_mortality(days: np.ndarray) -> np.ndarray:
    """m(t), the fracture's own multiplier of the patient's hazard without the fracture (t in days)."""
    t = np.asarray(days, float)
    return 1.0 + M_A1 * np.exp(-t / M_TAU1_DAYS)


def time_grid_days(horizon_years: float = FOLLOWUP_HORIZON_YEARS) -> np.ndarray:
    """Edges (days) of the piecewise-constant hazard: daily to 60 d, weekly to 1 y, monthly (30.4375 d)
    to 5 y, two-monthly after."""
    h = horizon_years * 365.25
    edges = np.concatenate([np.arange(0, 60, 1.0), np.arange(60, 365, 7.0),
                            np.arange(365, 1826.25, 30.4375), np.arange(1826.25, h, 60.875), [h]])
    return np.unique(edges)


# --- treatment (logit scale) -----------------------------------------------------------------------
# target: national mean probability by calendar year (the intercept of each year is solved so that the
# mean model probability over that year's eligible fractures equals it); sigma: SD of hospital effects.
TREATMENT = {
    "surgery_48h": {"target": ([2008, 2024], [0.80, 0.865]), "sigma": 0.38,
                    "eligible": "every primary operation for a hip fracture"},
    "arthroplasty_displaced": {"target": ([2008, 2013, 2024], [0.80, 0.93, 0.96]), "sigma": 0.6,
                               "eligible": "displaced femoral neck fractures, age 60+"},
    "cemented": {"target": ([2008, 2024], [0.82, 0.91]), "sigma": 1.1,
                 "eligible": "hemi- or total arthroplasty for a hip fracture"},
    "nail": {"target": ([2008, 2013.5, 2024], [0.50, 0.61, 0.75]), "sigma": 0.8,
             "eligible": "trochanteric A3 and subtrochanteric fractures"},
    "shs_a1": {"target": ([2008, 2013.5, 2024], [0.80, 0.74, 0.62]), "sigma": 0.8,
               "eligible": "trochanteric A1 fractures (hospital effect = minus the nail effect)"},
    "nerve_block": {"target": ([2008, 2024], [0.15, 0.85]), "sigma": 1.0,
                    "eligible": "every primary operation"},
    "osteo_med_12m": {"target": ([2008, 2024], [0.10, 0.20]), "sigma": 0.3,
                      "eligible": "every index fracture (probability of a dispensing within 365 days, if alive)"},
}
NAIL_A2 = ([2008, 2013.5, 2024], [0.25, 0.33, 0.45])
DEVIANT_PER_INDICATOR = 3
DEVIANT_SD = 2.5          # deviant hospitals have |u| = 2.5 sigma
PATIENT_LOG_OR = {
    "surgery_48h": {"asa_group[4-5]": -0.4, "cognitive[yes]": -0.15},
    "arthroplasty_displaced": {"age_per_10y": 0.3},
    "cemented": {},
    "nail": {},
    "nerve_block": {},
    "osteo_med_12m": {"female": 0.6, "age_90plus": -0.5, "residence[nursing_home]": -0.4,
                      "osteo_med_before": 1.5},
}
MED_REGION_LOG_OR = {"Helse Nord": 0.30, "Helse Midt-Norge": -0.25, "Helse Vest": 0.05, "Helse Sør-Øst": -0.1}
P_TOTAL_ARTHRO = {"young_fit": 0.5, "mid_fit": 0.2, "other": 0.03}

# --- later fractures (rates per person-year; death competes) --------------------------------------
SECOND_HIP_RATE = {("female", "0-2y"): 0.046, ("female", "2y+"): 0.035,
                   ("male", "0-2y"): 0.039, ("male", "2y+"): 0.029}
OTHER_FRACTURE_RATE = {"female": 0.05, "male": 0.03}
HR_MEDICATION = 0.55       # from the first dispensing on (intention-to-treat style), both outcomes
OTHER_FRACTURE_CODES = ["S422", "S525", "S526", "S324", "S223", "S820"]

# --- register coverage (NHFR vs NPR) ------------------------------------------------------------------
COVERAGE_TYPICAL = (0.94, 0.025)   # mean, SD (clipped to [0.8, 0.995])
COVERAGE_LOW_HOSPITALS = 4
COVERAGE_LOW_RANGE = (0.45, 0.75)

# --- imperfections (shares) -------------------------------------------------------------------------
P_MISSING_ASA = 0.04
P_MISSING_COGNITIVE = 0.035
P_INVALID_ICD10 = 0.002        # of background NPR contacts
P_INVALID_FRACTURE_TYPE = 0.002  # of NHFR primaries
P_IMPOSSIBLE_NHFR_DATE = 0.002   # surgery before fracture (year typed one too low)
P_IMPOSSIBLE_NPR_DATE = 0.001    # discharge before admission
P_DUPLICATE_NHFR = 0.003         # the same form registered twice (new op_id)
P_DUPLICATE_NPR = 0.001          # exact duplicate NPR rows


def mor(sigma2: float) -> float:
    """Median odds ratio (Larsen & Merlo 2005) of a random-intercept variance."""
    from scipy.stats import norm

    return float(np.exp(np.sqrt(2 * sigma2) * norm.ppf(0.75)))
