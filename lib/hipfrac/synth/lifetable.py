"""Synthetic Norwegian life table and population (SSB-like), also the generator's population mortality.

Mortality rate (per person-year) at exact age x, sex s, calendar year y (Gompertz-Makeham with an infant
and a young-adult term):

    mu(x, s, y) = A_s + infant(x) + accident_s(x) + B_{s,y} * exp(c_s * x)

c_s and B_{s,2015} are solved so that life expectancy at birth and at age 70 in 2015 match SSB
(men 80.3 / 14.9, women 84.0 / 17.3); B_{s,y} for other years is solved so that e0 follows SSB's figures
(2007: men 78.2, women 82.7; 2016: 80.6 / 84.2; 2018: 81.0 / 84.5; 2022: 80.9 / 84.4; linear in between,
held flat after 2022 and extrapolated with the 2007-2016 slope before 2007).

The table holds single years of age 0..105 (105 = 105+); the rate of age a is mu(a + 0.5). The generator
uses exactly this table (piecewise constant in age and calendar year) as h_pop.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

AGES = np.arange(106)
MAKEHAM = {"male": 2.0e-4, "female": 1.5e-4}
E0_POINTS = {  # SSB life expectancy at birth
    "male": {2007: 78.2, 2016: 80.6, 2018: 81.0, 2022: 80.9},
    "female": {2007: 82.7, 2016: 84.2, 2018: 84.5, 2022: 84.4},
}
E70_2015 = {"male": 14.9, "female": 17.3}


def e0_target(sex: str, year: int) -> float:
    pts = E0_POINTS[sex]
    xs, ys = np.array(sorted(pts)), np.array([pts[k] for k in sorted(pts)])
    if year < xs[0]:
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        return float(ys[0] + slope * (year - xs[0]))
    return float(np.interp(year, xs, ys))


def _rates(sex: str, B: float, c: float) -> np.ndarray:
    x = AGES + 0.5
    infant = np.where(AGES == 0, 2.2e-3, 0.0) + 1.5e-4 * np.exp(-x)
    accident = (4.0e-4 if sex == "male" else 1.5e-4) * np.exp(-((x - 22) / 8.0) ** 2)
    return MAKEHAM[sex] + infant + accident + B * np.exp(c * x)


def life_expectancy(rates: np.ndarray, from_age: int = 0) -> float:
    """Remaining life expectancy (years) at `from_age` for piecewise-constant yearly rates (last age open)."""
    r = np.asarray(rates, float)[from_age:]
    cum = np.concatenate([[0.0], np.cumsum(r[:-1])])
    surv = np.exp(-cum)
    within = np.where(r[:-1] > 0, (1 - np.exp(-r[:-1])) / r[:-1], 1.0)
    return float(np.sum(surv[:-1] * within) + surv[-1] / r[-1])


def _B_for(sex: str, c: float, target: float) -> float:
    """Gompertz level B giving life expectancy at birth `target` for slope c (bisection on log B)."""
    from .core import bisect

    return float(np.exp(bisect(lambda lb: target - life_expectancy(_rates(sex, np.exp(lb), c)),
                               np.log(1e-8), np.log(1e-2), tol=1e-10)))


@cache
def _calibrate_2015(sex: str) -> tuple[float, float]:
    """(B, c) matching SSB's e0 and e70 in 2015 (nested bisection: B for e0 given c, then c for e70)."""
    from .core import bisect

    target0, target70 = e0_target(sex, 2015), E70_2015[sex]

    def e70_gap(c):
        return target70 - life_expectancy(_rates(sex, _B_for(sex, c, target0), c), 70)

    c = bisect(e70_gap, 0.07, 0.16, tol=1e-10)
    return _B_for(sex, c, target0), c


def life_table(years: tuple[int, int]) -> pd.DataFrame:
    """year, sex, age (0..105), mortality_rate (per person-year), qx; sorted by year, sex, age."""
    return _life_table(tuple(int(y) for y in years)).copy()


@cache
def _life_table(years: tuple[int, int]) -> pd.DataFrame:
    out = []
    for sex in ("female", "male"):
        _, c = _calibrate_2015(sex)
        for y in range(years[0], years[1] + 1):
            r = _rates(sex, _B_for(sex, c, e0_target(sex, y)), c)
            out.append(pd.DataFrame({"year": y, "sex": sex, "age": AGES, "mortality_rate": r,
                                     "qx": 1 - np.exp(-r)}))
    df = pd.concat(out, ignore_index=True)
    return df.sort_values(["year", "sex", "age"], kind="stable").reset_index(drop=True)


def rate_array(lt: pd.DataFrame, years: tuple[int, int]) -> np.ndarray:
    """Rates as an array [sex (0 female, 1 male), year - years[0], age] for vectorised lookup."""
    n_y = years[1] - years[0] + 1
    arr = np.empty((2, n_y, len(AGES)))
    for si, sex in enumerate(("female", "male")):
        sub = lt[lt["sex"] == sex]
        arr[si] = sub["mortality_rate"].to_numpy().reshape(n_y, len(AGES))
    return arr


# --- population ---------------------------------------------------------------------------------
# Approximate 2020 age structure of Norway by 5-year band (share of total) and share female per band.
_BAND_SHARE = np.array([5.5, 6.1, 6.2, 6.0, 6.4, 6.9, 6.9, 6.6, 6.7, 7.0, 7.0, 6.5, 5.8, 5.4, 5.0, 3.4, 2.2,
                        1.3, 0.6, 0.2])
_FEMALE_SHARE = np.array([0.487] * 13 + [0.5, 0.51, 0.53, 0.57, 0.62, 0.68, 0.76])
NORWAY_2020 = 5_367_580


def population(munis: pd.DataFrame, years: tuple[int, int], scale: float) -> pd.DataFrame:
    """SSB-like population on 1 January: year, municipality, sex, age_band, age_from, population.

    Municipality weights are the shipped populations rescaled to Norway's 2020 total times `scale`;
    the total grows 0.8 % a year and bands 70+ a further 2 % a year (ageing), relative to 2020.
    """
    w = munis["population"].to_numpy(float)
    w = w / w.sum() * NORWAY_2020 * scale
    share = _BAND_SHARE / _BAND_SHARE.sum()
    bands = [f"{a}-{a + 4}" for a in range(0, 95, 5)] + ["95+"]
    age_from = np.arange(0, 100, 5)
    rows = []
    for y in range(years[0], years[1] + 1):
        growth = 1.008 ** (y - 2020) * np.where(age_from >= 70, 1.02 ** (y - 2020), 1.0)
        band = share * growth
        for s, fs in (("female", _FEMALE_SHARE), ("male", 1 - _FEMALE_SHARE)):
            cells = np.rint(w[:, None] * (band * fs)[None, :]).astype(np.int64)
            rows.append(pd.DataFrame({
                "year": y,
                "municipality": np.repeat(munis["municipality"].to_numpy(), len(bands)),
                "sex": s,
                "age_band": np.tile(bands, len(w)),
                "age_from": np.tile(age_from, len(w)),
                "population": cells.ravel(),
            }))
    df = pd.concat(rows, ignore_index=True)
    return df.sort_values(["year", "municipality", "sex", "age_from"], kind="stable").reset_index(drop=True)
