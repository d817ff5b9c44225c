"""Patient-level simulation: index fractures, patient factors, treatment, survival, later events.

Times are float days since 1970-01-01 (calendar) or days since the fracture (follow-up). Everything is
vectorised numpy; random streams are named (see `Streams`) so that adding a draw in one part does not
shift the others.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.special import expit, logit, ndtr, ndtri

from hipfrac import geography

from . import model

EPOCH = np.datetime64("1970-01-01", "D")


class Streams:
    """Independent named random generators derived from one seed."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])


def day_of(date: str) -> float:
    return float((np.datetime64(date, "D") - EPOCH).astype(int))


def _choice(rng, options, p, size):
    p = np.asarray(p, float)
    return np.asarray(options)[rng.choice(len(options), size=size, p=p / p.sum())]


def bisect(f, lo: float, hi: float, tol: float = 1e-11) -> float:
    """Root of an increasing function f on [lo, hi] by bisection."""
    flo = f(lo)
    if flo > 0 or f(hi) < 0:
        raise ValueError("bisect: root not bracketed")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _solve_intercepts(lin: np.ndarray, years: np.ndarray, target) -> tuple[np.ndarray, dict]:
    """Per-year intercepts so the mean of expit(a_y + lin) over each year's rows equals target(year)."""
    a = np.zeros(len(lin))
    out = {}
    for y in np.unique(years):
        sel = years == y
        goal = float(np.interp(y, *target))
        ay = bisect(lambda v, s=sel, g=goal: expit(v + lin[s]).mean() - g, -15.0, 15.0)
        a[sel] = ay
        out[int(y)] = ay
    return a, out


# ------------------------------------------------------------------------------------------------
def municipality_weights(area_effects: dict[str, float] | None = None) -> np.ndarray:
    """Population each shipped municipality stands for (relative weights, in municipalities() order).

    The geography ships a few real municipalities per referral area, not all 357, so their own
    populations do not match the hospitals' volumes (a small hospital's catchment may list one small
    municipality). Patients are drawn hospital-first (by 2018 NPR volume), then a municipality of the
    hospital's catchment by population (draw_patients); the population a municipality stands for is
    its expected share of those patients divided by exp(its referral area's incidence effect). With
    one national age structure in ssb_population, the age-sex-standardised incidence of an area is
    then the national one times exp(effect), and hospitals keep their real volumes.
    """
    hosp = geography.hospitals()
    munis = geography.municipalities()
    catch = geography.catchment().merge(munis[["municipality", "population"]], on="municipality")
    vol = hosp.set_index("hospital")["volume_2018"].astype(float)
    share = catch["population"] / catch.groupby("hospital")["population"].transform("sum")
    expected = (share * vol.loc[catch["hospital"]].to_numpy()).groupby(catch["municipality"]).sum()
    w = expected.reindex(munis["municipality"]).to_numpy(float)
    if area_effects:
        w = w / np.exp(munis["referral_area"].map(area_effects).to_numpy(float))
    return w / w.sum()


def area_incidence_effects(st: Streams) -> dict[str, float]:
    """Referral areas' hip fracture incidence effects (log scale, N(0, AREA_INCIDENCE_SD), centred)."""
    areas = sorted(geography.referral_areas()["referral_area"])
    e = st("geography").normal(0.0, model.AREA_INCIDENCE_SD, len(areas))
    return dict(zip(areas, (e - e.mean()).tolist()))


def draw_patients(st: Streams, years: tuple[int, int], scale: float) -> pd.DataFrame:
    """Index fractures: date, person factors, residence and hospital."""
    rng = st("patients")
    yrs = np.arange(years[0], years[1] + 1)
    n_y = np.rint(model.FIRST_FRACTURES_PER_YEAR * scale
                  * (1 + model.VOLUME_TREND_PER_YEAR * (yrs - 2016))).astype(int)
    n_y = np.maximum(n_y, 1)
    year = np.repeat(yrs, n_y)
    n = len(year)
    # day of year with winter excess; time of day mostly daytime
    doy_w = 1 + 0.15 * np.cos(2 * np.pi * (np.arange(366) - 15) / 365.25)
    doy = rng.choice(366, size=n, p=doy_w / doy_w.sum())
    start = np.array([day_of(f"{y}-01-01") for y in yrs])
    length = np.array([day_of(f"{y + 1}-01-01") for y in yrs]) - start
    doy = np.minimum(doy, np.repeat(length, n_y) - 1)
    hour_w = np.array([1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 7, 7, 7, 7, 6, 6, 5, 5, 4, 3, 2, 1], float)
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum()) + rng.integers(0, 60, n) / 60
    fracture_day = np.repeat(start, n_y) + doy + np.round(hour * 60) / 1440

    female = rng.random(n) < model.P_FEMALE
    sex = np.where(female, "female", "male")
    age = np.empty(n)
    for s in ("female", "male"):
        sel = sex == s
        mu, sd = model.AGE_MEAN[s], model.AGE_SD[s]
        a, b = (50 - mu) / sd, (104 - mu) / sd
        pa_, pb = ndtr(a), ndtr(b)
        age[sel] = mu + sd * ndtri(pa_ + rng.random(sel.sum()) * (pb - pa_))
    # birth year and month; exact age from mid-month birth (as the cohort computes it)
    bdate = (np.floor(fracture_day) - age * 365.25).astype("int64").astype("datetime64[D]")
    bm = bdate.astype("datetime64[M]")
    birth_year = bm.astype("datetime64[Y]").astype(int) + 1970
    birth_month = (bm.astype(int) % 12) + 1
    mid = (bm.astype("datetime64[D]") + 14 - EPOCH).astype(float)
    age = (np.floor(fracture_day) - mid) / 365.25

    # hospital first (realistic volumes), then municipality from its catchment, then cross-area flow
    hosp = geography.hospitals()
    munis = geography.municipalities()
    catch = geography.catchment().merge(munis[["municipality", "population"]], on="municipality")
    hvol = hosp["volume_2018"].to_numpy(float)
    home_h = rng.choice(len(hosp), size=n, p=hvol / hvol.sum())
    muni = np.empty(n, dtype=object)
    u = rng.random(n)
    for hi, code in enumerate(hosp["hospital"]):
        sel = home_h == hi
        c = catch[catch["hospital"] == code]
        w = c["population"].to_numpy(float)
        cw = np.cumsum(w / w.sum())
        muni[sel] = c["municipality"].to_numpy()[np.minimum(np.searchsorted(cw, u[sel]), len(c) - 1)]
    treat_h = home_h.copy()
    flow = rng.random(n) < model.CROSS_AREA_FLOW
    region_of = hosp["region"].to_numpy()
    for hi in np.unique(home_h[flow]):
        sel = flow & (home_h == hi)
        cand = np.flatnonzero((region_of == region_of[hi]) & (np.arange(len(hosp)) != hi))
        w = hvol[cand] / hvol[cand].sum()
        treat_h[sel] = cand[rng.choice(len(cand), size=sel.sum(), p=w)]

    m = munis.set_index("municipality")
    df = pd.DataFrame({
        "year": year, "fracture_day": fracture_day, "sex": sex, "male": (~female).astype(int),
        "age": age, "birth_year": birth_year, "birth_month": birth_month,
        "municipality": muni.astype(str), "hospital": hosp["hospital"].to_numpy()[treat_h],
    })
    df["referral_area"] = m.loc[df["municipality"], "referral_area"].to_numpy()
    df["res_region"] = m.loc[df["municipality"], "region"].to_numpy()
    df["hosp_region"] = region_of[treat_h]

    # socioeconomic: latent SES drives education and income
    rs = st("socio")
    ses = rs.normal(size=n)
    e_cut = np.quantile(ses, [model.EDUCATION_P["low"], model.EDUCATION_P["low"] + model.EDUCATION_P["medium"]])
    df["education"] = np.where(ses < e_cut[0], "low", np.where(ses < e_cut[1], "medium", "high"))
    inc = ses * 0.6 + rs.normal(size=n) * 0.8 - 0.35
    df["income_quintile"] = np.clip(np.digitize(inc, [-0.84, -0.25, 0.25, 0.84]) + 1, 1, 5)
    df["living_alone"] = (rs.random(n) < np.where(female, 0.62, 0.36)).astype(int)
    df["birth_country"] = _choice(rs, list(model.BIRTH_COUNTRY_P), list(model.BIRTH_COUNTRY_P.values()), n)

    # comorbidity: shared frailty, age; Quan hierarchy; Charlson points
    rc = st("comorbidity")
    frail = rc.normal(size=n)
    age10 = (age - 80) / 10
    comp = {}
    for k, p in model.COMORB_PREV.items():
        extra = 0.5 * age10 if k == "dementia" else 0.15 * age10
        comp[k] = rc.random(n) < expit(logit(p) + 0.55 * frail + extra)
    for mild, severe in model.HIERARCHY.items():
        comp[mild] &= ~comp[severe]
    for k in model.QUAN_WEIGHTS:
        df[f"cci_{k}"] = comp[k].astype(int)
    df["charlson"] = sum(model.QUAN_WEIGHTS[k] * df[f"cci_{k}"] for k in model.QUAN_WEIGHTS)
    df["frailty"] = frail

    # cognitive impairment, ASA, residence
    ri = st("status")
    p_yes = expit(-1.5 + 0.5 * age10 + 3.0 * comp["dementia"] + 0.3 * frail)
    uu = ri.random(n)
    df["cognitive"] = np.where(uu < p_yes, "yes", np.where(uu < p_yes + 0.06, "uncertain", "no"))
    latent = 0.5 * frail + 0.22 * df["charlson"].to_numpy() + 0.3 * age10 + ri.logistic(size=n) * 0.7
    cuts = np.quantile(latent, [0.04, 0.34, 0.86, 0.995])
    df["asa"] = np.digitize(latent, cuts) + 1
    df["asa_group"] = np.where(df["asa"] <= 2, "1-2", np.where(df["asa"] == 3, "3", "4-5"))
    cog_yes = (df["cognitive"] == "yes").to_numpy()
    p_nh = expit(-2.4 + 2.0 * cog_yes + 0.5 * age10 + 0.3 * frail)
    p_hc = expit(-0.7 + 0.5 * age10 + 0.5 * df["living_alone"].to_numpy() + 0.2 * frail)
    ur = ri.random(n)
    nh = ur < p_nh
    hc = ~nh & (ri.random(n) < p_hc)
    df["residence"] = np.where(nh, "nursing_home", np.where(hc, "home_care", "home"))
    df["osteo_med_before"] = (ri.random(n) < np.where(female, 0.09, 0.03)).astype(int)
    return df


# ------------------------------------------------------------------------------------------------
def hospital_effects(st: Streams, hospitals: list[str]) -> dict:
    """Random hospital effects (logit scale) per indicator, with a few deviant hospitals."""
    rng = st("hospital_effects")
    out = {}
    for ind, spec in model.TREATMENT.items():
        if ind == "shs_a1":
            continue
        u = rng.normal(0, spec["sigma"], len(hospitals))
        dev = np.sort(rng.choice(len(hospitals), model.DEVIANT_PER_INDICATOR, replace=False))
        signs = np.where(rng.random(len(dev)) < 0.5, -1.0, 1.0)
        if ind in ("cemented", "arthroplasty_displaced"):
            signs[:] = -1.0   # deviant = too little of the guideline treatment (cement, arthroplasty)
        u[dev] = signs * model.DEVIANT_SD * spec["sigma"]
        out[ind] = {"u": dict(zip(hospitals, u)), "deviant": [hospitals[i] for i in dev]}
    out["shs_a1"] = {"u": {h: -v for h, v in out["nail"]["u"].items()}, "deviant": list(out["nail"]["deviant"])}
    return out


def treat(st: Streams, f: pd.DataFrame, effects: dict, stream: str) -> tuple[pd.DataFrame, dict]:
    """Fracture type, side, operation, fixation, anaesthesia, nerve block, timing for fracture rows f.

    Returns the columns added to f and the solved intercepts per indicator and year.
    """
    rng = st(stream)
    n = len(f)
    yr = f["year"].to_numpy()
    age = f["age"].to_numpy()
    hosp = f["hospital"].to_numpy()
    intercepts = {}

    def u_of(ind):
        return np.array([effects[ind]["u"][h] for h in hosp]) if n else np.zeros(0)

    ft = f["fracture_type"].to_numpy() if "fracture_type" in f else _choice(
        rng, list(model.FRACTURE_TYPE_P), list(model.FRACTURE_TYPE_P.values()), n)
    out = pd.DataFrame(index=f.index)
    out["fracture_type"] = ft
    asa45 = (f["asa_group"] == "4-5").to_numpy()
    cog = (f["cognitive"] == "yes").to_numpy()

    def indicator(ind, sel, lin_extra):
        lin = u_of(ind)[sel] + lin_extra
        a, ints = _solve_intercepts(lin, yr[sel], model.TREATMENT[ind]["target"])
        intercepts[ind] = ints
        p = expit(a + lin)
        return rng.random(sel.sum()) < p, p

    op = np.full(n, "other", dtype=object)
    # displaced femoral neck: arthroplasty vs screws
    sel = ft == "fn_displaced"
    old = age >= 60
    s1 = sel & old
    arth, _ = indicator("arthroplasty_displaced", s1, 0.3 * (age[s1] - 80) / 10)
    op[s1] = np.where(arth, "hemi", "screws")
    s2 = sel & ~old
    op[s2] = np.where(rng.random(s2.sum()) < 0.25, "hemi", "screws")
    sel = ft == "fn_undisplaced"
    op[sel] = np.where(rng.random(sel.sum()) < 0.12 + 0.1 * (age[sel] > 85), "hemi", "screws")
    sel = ft == "basocervical"
    op[sel] = _choice(rng, ["shs", "short_nail", "hemi"], [0.55, 0.3, 0.15], sel.sum())
    # nails: A1 (shs_a1 = 1 - nail), A2, A3/subtrochanteric, sharing the hospital's nail preference
    u_nail = u_of("nail")
    for types, target, ind in ((("troch_a3", "subtroch"), model.TREATMENT["nail"]["target"], "nail"),
                               (("troch_a2",), model.NAIL_A2, None),
                               (("troch_a1",), None, "shs_a1")):
        sel = np.isin(ft, types)
        if ind == "shs_a1":
            lin = -u_nail[sel]
            a, ints = _solve_intercepts(lin, yr[sel], model.TREATMENT["shs_a1"]["target"])
            intercepts["shs_a1"] = ints
            nail = rng.random(sel.sum()) >= expit(a + lin)
        else:
            lin = u_nail[sel]
            a, ints = _solve_intercepts(lin, yr[sel], target)
            if ind:
                intercepts[ind] = ints
            nail = rng.random(sel.sum()) < expit(a + lin)
        long_p = 0.6 if ind == "nail" else 0.15
        kind = np.where(rng.random(sel.sum()) < long_p, "long_nail", "short_nail")
        op[sel] = np.where(nail, kind, "shs")
    # a few "other" operations where no indicator is defined (undisplaced femoral neck, basocervical)
    op[np.isin(ft, ["fn_undisplaced", "basocervical"]) & (rng.random(n) < 0.02)] = "other"
    # hemi vs total for arthroplasties
    arth = op == "hemi"
    asa12 = (f["asa_group"] == "1-2").to_numpy()
    p_tot = np.where((age < 70) & asa12, model.P_TOTAL_ARTHRO["young_fit"],
                     np.where((age < 80) & asa12, model.P_TOTAL_ARTHRO["mid_fit"], model.P_TOTAL_ARTHRO["other"]))
    op[arth & (rng.random(n) < p_tot)] = "total"
    out["operation_type"] = op
    arth = np.isin(op, ["hemi", "total"])
    cem, _ = indicator("cemented", arth, np.zeros(arth.sum()))
    fix = np.full(n, None, dtype=object)
    fix[arth] = np.where(cem, "cemented", "uncemented")
    out["stem_fixation"] = fix
    out["anaesthesia"] = _choice(rng, ["spinal", "general", "other"], [0.85, 0.13, 0.02], n)
    allrows = np.ones(n, bool)
    nb, _ = indicator("nerve_block", allrows, np.zeros(n))
    out["nerve_block"] = nb.astype(int)
    # timing: fracture -> admission (hours), surgery within 48 h of the fracture or not
    in48, _ = indicator("surgery_48h", allrows, -0.4 * asa45 - 0.15 * cog)
    adm_h = np.minimum(np.exp(rng.normal(np.log(2.5), 0.9, n)), 30.0)
    span = np.maximum(48 - adm_h - 2, 1.0)
    t48 = adm_h + 2 + span * rng.beta(1.2, 2.6, n)
    tlate = 48 + rng.exponential(20, n) + 0.25
    hours = np.where(in48, np.minimum(t48, 47.9), tlate)
    adm_h = np.minimum(adm_h, hours - 1.0)
    out["hours_to_admission"] = np.round(adm_h * 60) / 60
    out["hours_to_surgery"] = np.round(hours * 60) / 60
    out["delay_gt48"] = (out["hours_to_surgery"] > 48).astype(int)
    out["side"] = np.where(rng.random(n) < 0.52, "left", "right")
    return out, intercepts


# ------------------------------------------------------------------------------------------------
def linear_predictor(df: pd.DataFrame) -> np.ndarray:
    """beta'x of the mortality model (uncentred), from the true patient factors."""
    b = model.LOG_HR
    lp = b["male"] * df["male"].to_numpy(float)
    lp += b["asa_group[3]"] * (df["asa_group"] == "3") + b["asa_group[4-5]"] * (df["asa_group"] == "4-5")
    lp += b["cognitive[yes]"] * (df["cognitive"] == "yes") + b["cognitive[uncertain]"] * (df["cognitive"] == "uncertain")
    lp += b["charlson"] * df["charlson"].to_numpy(float)
    lp += b["residence[home_care]"] * (df["residence"] == "home_care")
    lp += b["residence[nursing_home]"] * (df["residence"] == "nursing_home")
    lp += b["income_quintile"] * df["income_quintile"].to_numpy(float)
    lp += b["education[low]"] * (df["education"] == "low") + b["education[high]"] * (df["education"] == "high")
    lp += b["delay_band[>48h]"] * df["delay_gt48"].to_numpy(float)
    for r in ("Helse Nord", "Helse Midt-Norge", "Helse Vest"):
        lp += b[f"res_region[{r}]"] * (df["res_region"] == r)
    return np.asarray(lp, float)


#: age bands of the truth (as the cohort's age_band: hipfrac.cohort)
AGE_BANDS = ("50-59", "60-69", "70-79", "80-89", "90+")


def age_band_of(age) -> list[str]:
    """The cohort's 10-year age band of each age (years); below 50 -> "<50"."""
    a = np.asarray(age, float)
    lo = (np.floor(a / 10) * 10).astype(int)
    return ["90+" if x >= 90 else ("<50" if x < 50 else f"{b}-{b + 9}") for x, b in zip(a, lo)]


#: times (days) at which truth.json holds the life years lost (restricted means) and crude probabilities
TRUTH_TIMES_DAYS = (30.0, 90.0, 365.25, 730.5, 1826.25, 3652.5)


def simulate_survival(st: Streams, df: pd.DataFrame, rates: np.ndarray, years: tuple[int, int],
                      chunk: int = 20_000) -> tuple[np.ndarray, dict]:
    """Exact draws of death time (days after the fracture; inf = alive at the horizon) from the
    piecewise-constant hazard h_pop(age+t, sex, year+t) F(x) m(t), F(x) = FRAILTY_MEAN exp(beta'x - centre)
    (see synth.model), and the true marginal net survival / excess hazard of the cohort computed from the
    model (not from the draws), overall, by sex and by age band."""
    rng = st("survival")
    n = len(df)
    lp = linear_predictor(df)
    centre = float(np.log(np.mean(np.exp(lp))))
    rel = model.FRAILTY_MEAN * np.exp(lp - centre)
    edges = model.time_grid_days()
    dt = np.diff(edges)
    mid = edges[:-1] + dt / 2
    m_t = model.relative_mortality(mid)
    E = rng.exponential(size=n)
    sexi = df["male"].to_numpy()
    age0 = df["age"].to_numpy()
    yr = df["year"].to_numpy()
    jan1 = ((yr - 1970).astype("datetime64[Y]").astype("datetime64[D]") - EPOCH).astype(float)
    ydec = yr + (df["fracture_day"].to_numpy() - jan1) / 365.25
    n_year, n_age = rates.shape[1], rates.shape[2]
    rates_day = (rates / 365.25).ravel()
    death = np.full(n, np.inf)
    net_sum = np.zeros(len(edges))
    net_sum_sex = {0: np.zeros(len(edges)), 1: np.zeros(len(edges))}
    band = np.asarray(age_band_of(df["age"].to_numpy()))
    net_sum_band = {b: np.zeros(len(edges)) for b in AGE_BANDS}
    net_sum_year: dict[int, np.ndarray] = {}
    # sums over patients, per group, at TRUTH_TIMES_DAYS: restricted means (days) of survival with the fracture
    # (observed) and without it (population), and the crude probabilities of death from the fracture's
    # excess and from other causes (exact: the hazards are constant on each interval)
    gkeys = ["all", "female", "male"] + [f"age {b}" for b in AGE_BANDS]
    acc = {q: {g: np.zeros(len(TRUTH_TIMES_DAYS)) for g in gkeys}
           for q in ("rm_obs", "rm_pop", "crude_exc", "crude_pop")}
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        a = np.clip(np.floor(age0[lo:hi, None] + mid[None, :] / 365.25), 0, 105).astype(int)
        y = np.clip(np.floor(ydec[lo:hi, None] + mid[None, :] / 365.25) - years[0], 0,
                    years[1] - years[0]).astype(int)
        flat = (sexi[lo:hi, None] * n_year + y) * n_age + a
        hp = np.take(rates_day, flat)                              # per day
        h = hp * m_t[None, :] * rel[lo:hi, None]
        cum = np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(h * dt, axis=1)], axis=1)
        k = (cum[:, 1:] < E[lo:hi, None]).sum(axis=1)            # interval index where cum crosses E
        ok = k < len(dt)
        kk = np.minimum(k, len(dt) - 1)
        rows = np.arange(hi - lo)
        t = edges[kk] + (E[lo:hi] - cum[rows, kk]) / h[rows, kk]
        death[lo:hi] = np.where(ok, t, np.inf)
        ex = hp * (m_t[None, :] * rel[lo:hi, None] - 1.0)
        sn = np.exp(-np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(ex * dt, axis=1)], axis=1))
        net_sum += sn.sum(axis=0)
        for s in (0, 1):
            net_sum_sex[s] += sn[sexi[lo:hi] == s].sum(axis=0)
        for b in AGE_BANDS:
            net_sum_band[b] += sn[band[lo:hi] == b].sum(axis=0)
        so = np.exp(-cum)
        cum_p = np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(hp * dt, axis=1)], axis=1)
        q = {"rm_obs": so[:, :-1] * -np.expm1(-h * dt) / h,
             "rm_pop": np.exp(-cum_p[:, :-1]) * -np.expm1(-hp * dt) / hp,
             "crude_exc": ex / h * (so[:, :-1] - so[:, 1:]),
             "crude_pop": hp / h * (so[:, :-1] - so[:, 1:])}
        # at the truth times: the whole intervals before, plus the exact part of the interval holding t
        kt = np.searchsorted(edges, TRUTH_TIMES_DAYS, "right") - 1
        part = np.asarray(TRUTH_TIMES_DAYS) - edges[kt]
        hk, hpk, exk, sok = h[:, kt], hp[:, kt], ex[:, kt], so[:, kt]
        so_t = sok * np.exp(-hk * part)
        q_at = {"rm_obs": sok * -np.expm1(-hk * part) / hk,
                "rm_pop": np.exp(-cum_p[:, kt]) * -np.expm1(-hpk * part) / hpk,
                "crude_exc": exk / hk * (sok - so_t), "crude_pop": hpk / hk * (sok - so_t)}
        masks = {"all": slice(None), "female": sexi[lo:hi] == 0, "male": sexi[lo:hi] == 1,
                 **{f"age {b}": band[lo:hi] == b for b in AGE_BANDS}}
        for name, v in q.items():
            before = np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(v, axis=1)], axis=1)[:, kt] + q_at[name]
            for g, mk in masks.items():
                acc[name][g] += before[mk].sum(axis=0)
        for y_ in np.unique(yr[lo:hi]):
            net_sum_year.setdefault(int(y_), np.zeros(len(edges)))
            net_sum_year[int(y_)] += sn[yr[lo:hi] == y_].sum(axis=0)
    net = net_sum / n
    exc = -np.diff(np.log(net)) / dt * 365.25
    truth = {
        "centre": centre,
        "mean_exp_lp_centred": float(np.mean(np.exp(lp - centre))),
        "frailty_mean": float(np.mean(rel)),
        "edges": edges, "net": net, "excess": exc,
        "net_by_sex": {s: net_sum_sex[s] / max((sexi == s).sum(), 1) for s in (0, 1)},
        "net_by_age_band": {b: net_sum_band[b] / max(int((band == b).sum()), 1) for b in AGE_BANDS
                            if (band == b).any()},
        "net_sum_by_year": net_sum_year,
        "group_n": {"all": n, "female": int((sexi == 0).sum()), "male": int((sexi == 1).sum()),
                    **{f"age {b}": int((band == b).sum()) for b in AGE_BANDS}},
        "cumulative": acc,
        "n_by_year": {y_: int((yr == y_).sum()) for y_ in net_sum_year},
    }
    return death, truth


def piecewise_event(rng, n, breaks: list[np.ndarray], rates: list[np.ndarray]) -> np.ndarray:
    """Event time (days) for per-row piecewise-constant rates (per day): rates[j] holds on
    [breaks[j-1], breaks[j]) with breaks[-1] = 0 implied and the last rate continuing to infinity."""
    E = rng.exponential(size=n)
    t = np.full(n, np.inf)
    start = np.zeros(n)
    cum = np.zeros(n)
    done = np.zeros(n, bool)
    bounds = list(breaks) + [np.full(n, np.inf)]
    for b, r in zip(bounds, rates):
        with np.errstate(invalid="ignore"):
            length = np.nan_to_num(np.maximum(b - start, 0), nan=0.0)
        add = r * length
        hit = ~done & (cum + add >= E) & (r > 0)
        t[hit] = start[hit] + (E[hit] - cum[hit]) / r[hit]
        done |= hit
        cum += add
        start = np.maximum(start, b)
    return t


def later_fractures(st: Streams, df: pd.DataFrame, t_med: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days to second hip fracture and to first other fracture (inf = none before the horizon)."""
    rng = st("later_fractures")
    n = len(df)
    male = df["male"].to_numpy() == 1
    hr = model.HR_MEDICATION
    r = model.SECOND_HIP_RATE
    r02 = np.where(male, r[("male", "0-2y")], r[("female", "0-2y")]) / 365.25
    r2p = np.where(male, r[("male", "2y+")], r[("female", "2y+")]) / 365.25
    b1 = np.minimum(t_med, 730.5)
    b2 = np.maximum(t_med, 730.5)
    med_first = t_med < 730.5
    # segments: [0,b1), [b1,b2), [b2,inf)
    seg1 = r02
    seg2 = np.where(med_first, r02 * hr, r2p)
    seg3 = r2p * hr
    t2 = piecewise_event(rng, n, [b1, b2], [seg1, seg2, seg3])
    ro = np.where(male, model.OTHER_FRACTURE_RATE["male"], model.OTHER_FRACTURE_RATE["female"]) / 365.25
    to = piecewise_event(rng, n, [t_med], [ro, ro * hr])
    return t2, to
