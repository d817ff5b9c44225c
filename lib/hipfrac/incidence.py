"""Hip fracture incidence per 100,000 by area: crude and age- and sex-standardised, with atlas statistics.

Numerator: index hip fractures of the cohort (first hip fracture in the period with no hip fracture in the
washout years: incident fractures), by residence unit, year, sex and 5-year age band (50-54, ..., 95+).
Denominator: SSB population on 1 January of the same year (the `population` companion of the cohort),
so each single year contributes person-years ~ population. The period mean rate is the sum of fractures
over the single years divided by the sum of the yearly populations (per 100,000 person-years).

Direct standardisation (`hipfrac.variation.direct_standardise`) to a fixed standard population: the
national population aged 50+ by sex and age band in one year (default: the first year of the period).
Variation across areas (health atlases): EQ (max/min), EQ2 (2nd highest / 2nd lowest), CV (%) of the
standardised rates, and SCV (%) from observed and expected counts, expected from national stratum rates
(indirect standardisation) over the whole period.

Disclosure metadata (hipfrac.results): the rates are annotated results of universe ``incidence_fractures``
(index hip fractures counted for incidence, NPR-only ones included: not the cohort's patients); events is
the count (dimensions: the unit - referral area or region of residence, one hierarchy - and the year);
the person-years (``n``, Statistics Norway's public population) are a statistic; every rate, interval and
the observed and expected counts are derived from events. The atlas statistics are national summaries
(statistics).
"""

from __future__ import annotations

import pandas as pd

from hipfrac import results, variation

__all__ = ["PER", "area_variation", "incidence_data", "standard_population", "standardised_incidence"]

PER = 100_000
UNIVERSE = "incidence_fractures"
STRATA = ["sex", "age_band5"]


def incidence_data(cohort: pd.DataFrame, population: pd.DataFrame, unit: str = "referral_area",
                   years: tuple[int, int] | None = None) -> pd.DataFrame:
    """Fractures and population per unit x year x sex x age band (aggregates, no persons).

    cohort: the cohort's `incidence_events` companion (aggregated index fractures with NPR-only ones
        included: year, referral_area, region, sex, age_band5, events) - use this for incidence - or
        the analysis cohort itself (one row per index fracture: year, sex, age_band5, the unit column),
        which lacks fractures without an NHFR form unless built with include_npr_only.
    population: the `population` companion (year, referral_area, region, sex, age_band5, population).
    unit: "referral_area" or "region" (res_region in the cohort).
    Returns unit, year, sex, age_band5, events (fractures), population (persons on 1 January).
    Raises ValueError if a fracture falls in a stratum without population.
    """
    pop_unit = {"referral_area": "referral_area", "res_region": "region", "region": "region"}[unit]
    coh_unit = {"referral_area": "referral_area", "res_region": "res_region", "region": "res_region"}[unit]
    pop = population.rename(columns={pop_unit: "unit"})
    if years is not None:
        pop = pop[(pop["year"] >= years[0]) & (pop["year"] <= years[1])]
    pop = pop.groupby(["unit", "year", "sex", "age_band5"], sort=True)["population"].sum().reset_index()
    aggregated = "events" in cohort.columns
    if aggregated:
        coh_unit = pop_unit
    c = cohort.rename(columns={coh_unit: "unit"})
    if years is not None:
        c = c[(c["year"] >= years[0]) & (c["year"] <= years[1])]
    g = c.groupby(["unit", "year", "sex", "age_band5"], sort=True)
    ev = (g["events"].sum() if aggregated else g.size()).rename("events").reset_index()
    ev = ev.astype({"unit": "string", "sex": "string", "age_band5": "string"})
    pop = pop.astype({"unit": "string", "sex": "string", "age_band5": "string"})
    out = pop.merge(ev, on=["unit", "year", "sex", "age_band5"], how="outer")
    orphan = out["population"].isna() & (out["events"] > 0)
    if orphan.any():
        r = out[orphan].iloc[0]
        raise ValueError(f"{int(out.loc[orphan, 'events'].sum())} fractures without population, e.g. "
                         f"{r['unit']} {r['year']} {r['sex']} {r['age_band5']}")
    out["events"] = out["events"].fillna(0).astype("int64")
    out["population"] = out["population"].astype("int64")
    out = out.rename(columns={"unit": unit})
    return out.sort_values([unit, "year", "sex", "age_band5"]).reset_index(drop=True)


def standard_population(data: pd.DataFrame, year: int | None = None) -> pd.DataFrame:
    """The fixed standard population: the national population (all units) by sex and age band in `year`
    (default: the first year in `data`). Returns sex, age_band5, weight (persons)."""
    year = int(data["year"].min()) if year is None else int(year)
    d = data[data["year"] == year]
    if d.empty:
        raise ValueError(f"no population in year {year} for the standard population")
    return d.groupby(STRATA, sort=True)["population"].sum().rename("weight").reset_index()


def standardised_incidence(data: pd.DataFrame, unit: str = "referral_area", standard_year: int | None = None,
                           by_year: bool = False) -> pd.DataFrame:
    """Crude and directly age- and sex-standardised incidence per 100,000 person-years per unit.

    data: from `incidence_data`. by_year: one row per unit and single year instead of the period mean.
    Returns unit (and year), events, n (person-years), crude_rate, std_rate, se, lower, upper (95 % gamma
    interval, Fay & Feuer), all per 100,000, plus observed and expected counts (national stratum rates).
    """
    std = standard_population(data, standard_year)
    units = [unit, "year"] if by_year else [unit]
    d = variation.direct_standardise(data, units, STRATA, events="events", n="population", standard=std,
                                     per=PER)
    ref = data.groupby(STRATA)[["events", "population"]].sum()
    ref = (ref["events"] / ref["population"]).rename("rate").reset_index()
    ind = variation.indirect_standardise(data, units, STRATA, events="events", n="population", reference=ref)
    d = d.merge(ind[units + ["observed", "expected"]], on=units, how="left")
    d = d.sort_values(units).reset_index(drop=True)
    return results.annotate(d, counts={"events": {}}, dims={c: c for c in units}, stats=["n"],
                            derived={c: ["events"] for c in d.columns if c not in units + ["events", "n"]},
                            universe=UNIVERSE, population_conds=[])


def area_variation(rates: pd.DataFrame, annual: pd.DataFrame | None = None, unit: str = "referral_area"
                   ) -> pd.DataFrame:
    """Atlas variation statistics across units of the period standardised rates: k, min, max, EQ, EQ2,
    CV (%), SCV (%) on the period's observed and expected counts; with `annual` (by_year rates) also the
    mean over single years of the yearly SCV (scv_annual_mean)."""
    st = variation.atlas_statistics(rates["std_rate"].to_numpy(float), rates["observed"].to_numpy(float),
                                    rates["expected"].to_numpy(float))
    if annual is not None:
        yearly = [variation.scv(g["observed"].to_numpy(float), g["expected"].to_numpy(float))
                  for _, g in annual.groupby("year", sort=True)]
        st = pd.concat([st, pd.DataFrame({"statistic": ["scv_annual_mean"],
                                          "value": [float(sum(yearly) / len(yearly))]})], ignore_index=True)
    return results.annotate(st, counts={}, labels=["statistic"], stats=["value"], universe=UNIVERSE,
                            population_conds=[])
