"""Params for the analysis cohort (`hipfrac.cohort`)."""

import datetime as dt
import re
from importlib import resources

import yaml
from pydantic import Field, field_validator

from .base import Section

# an ICD-10 code or prefix without the dot (letter, digit, then up to five letters/digits): M844, C79, M907
ICD10_PREFIX = re.compile(r"[A-Z][0-9][0-9A-Z]{0,5}\Z")
MEMORY = re.compile(r"[0-9]+(\.[0-9]+)? ?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\Z", re.IGNORECASE)


class CohortParams(Section):
    """Study period, inclusion rules, linkage windows and follow-up.

    period_start, period_end: first and last fracture date included (inclusive).
    min_age: minimum age in years at the fracture.
    washout_years: no hip fracture (NPR stay with main diagnosis S72.0-S72.2, or NHFR primary operation)
      in this many years before the index fracture.
    include_npr_only: keep operated fractures found only in NPR (no NHFR form) in the cohort. Coverage is
      computed from NPR-only fractures whatever this says.
    end_of_followup: administrative censoring date.
    charlson_lookback_years: NPR diagnoses in this many years before the fracture count for the Charlson
      index (the index stay excluded).
    charlson_weights: component -> weight overriding the Quan 2011 weights (e.g. {mi: 1}).
    match_window_days: an NHFR primary operation and an NPR hip fracture stay of the same person are the
      same fracture when the NPR stay starts at most this many days before or after the NHFR admission.
    new_fracture_gap_days: an NPR hip fracture stay starting at least this many days after the previous
      one is a new fracture (shorter gaps: transfers and readmissions of the same fracture).
    npr_require_surgery: an NPR-only fracture counts only when a stay holds hip fracture surgery (NCSP
      NFB*/NFJ*), the scope of the register (non-operated fractures are never registered in NHFR).
    pathological_codes: ICD-10 prefixes (no dot) in the index stay's diagnoses marking a pathological
      fracture (excluded): M84.4 pathological fracture, M90.7 fracture of bone in neoplastic disease,
      C79.5 secondary malignant neoplasm of bone. Each must be an ICD-10 code or prefix (letter, digit,
      letters/digits; checked on load; the cohort build passes them to DuckDB as a bound parameter).
    fatal_type_fraction: a column where more than this share of the non-missing values fail to parse as
      its contract type has the wrong type (fatal); fewer bad values are warnings (set to missing).
    fatal_code_fraction: a column where more than this share of the values are outside its code list or
      pattern follows another coding than the contract (fatal: recode or map it); fewer are warnings.
    duckdb_memory_limit: DuckDB memory limit (spills to disk beyond it), e.g. "3GB".
    out_dir: where cohort.parquet and its companions are written (relative to the project root);
      empty means data/cohort/<run>. Inside the project unless `allow_outside_project: true`; an
      existing directory is replaced only when hipfrac made it (hipfrac.safepaths).
    """

    period_start: dt.date = dt.date(2013, 1, 1)
    period_end: dt.date = dt.date(2023, 12, 31)
    min_age: float = Field(50, ge=0, le=110)
    washout_years: int = Field(5, ge=0, le=20)
    include_npr_only: bool = False
    end_of_followup: dt.date = dt.date(2024, 12, 31)
    charlson_lookback_years: int = Field(5, ge=1, le=20)
    charlson_weights: dict[str, int] = Field(default_factory=dict)
    match_window_days: int = Field(7, ge=0, le=60)
    new_fracture_gap_days: int = Field(90, ge=1, le=365)
    npr_require_surgery: bool = True
    pathological_codes: tuple[str, ...] = ("M844", "M907", "C795")
    fatal_type_fraction: float = Field(0.10, gt=0, le=1)
    fatal_code_fraction: float = Field(0.5, gt=0, le=1)
    duckdb_memory_limit: str = "3GB"
    out_dir: str = ""

    @field_validator("pathological_codes")
    @classmethod
    def _icd10(cls, v):
        bad = [c for c in v if not ICD10_PREFIX.match(c)]
        if bad:
            raise ValueError(f"not ICD-10 codes or prefixes without a dot (e.g. M844, C795): {bad}")
        return v

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory(cls, v):
        if not MEMORY.match(v.strip()):
            raise ValueError(f"a memory size such as 3GB or 512MiB, got {v!r}")
        return v.strip()

    @field_validator("charlson_weights")
    @classmethod
    def _components(cls, v):
        text = resources.files("hipfrac").joinpath("data/charlson_icd10.yaml").read_text(encoding="utf-8")
        known = list(yaml.safe_load(text)["components"])
        bad = [k for k in v if k not in known]
        if bad:
            raise ValueError(f"unknown Charlson component(s) {bad}; components: {', '.join(known)}")
        return v
