"""Params for the analysis cohort (`hipfrac.cohort`)."""

import datetime as dt

from pydantic import Field

from .base import Section


class CohortParams(Section):
    """Study period, inclusion rules and follow-up.

    period: first and last fracture date included (inclusive).
    min_age: minimum age in years at the fracture.
    washout_years: no hip fracture in NPR in this many years before the index fracture.
    include_npr_only: keep fractures found only in NPR (no NHFR form), for coverage analyses.
    end_of_followup: administrative censoring date.
    out_dir: where cohort.parquet and its companions are written (relative to the project root);
      empty means data/cohort/<run>.
    """

    period_start: dt.date = dt.date(2013, 1, 1)
    period_end: dt.date = dt.date(2023, 12, 31)
    min_age: float = Field(50, ge=0, le=110)
    washout_years: int = Field(5, ge=0, le=20)
    include_npr_only: bool = False
    end_of_followup: dt.date = dt.date(2024, 12, 31)
    charlson_lookback_years: int = Field(5, ge=1, le=20)
    charlson_weights: dict[str, int] = Field(default_factory=dict)
    out_dir: str = ""
