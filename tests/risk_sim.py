"""A small simulated cohort with known hazard ratios, for the fast tests of hipfrac.risk
(independent of the synthetic registry; the truth.json recovery lives in test_risk_recovery.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

TRUE_LOG_HR = {
    "male": np.log(1.7), "asa_group[3]": np.log(1.8), "asa_group[4-5]": np.log(3.0),
    "cognitive[yes]": np.log(2.0), "cognitive[uncertain]": np.log(1.4), "charlson": np.log(1.1),
    "residence[home_care]": np.log(1.3), "residence[nursing_home]": np.log(1.8),
    "delay_band[>48h]": np.log(1.3), "delay_band[24-48h]": 0.0, "income_quintile": np.log(0.95),
}
AGE_LOG_HR_PER_YEAR = 0.055


def simulate_cohort(n: int = 3000, seed: int = 1, missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(81, 9, n), 50, 104)
    male = (rng.uniform(size=n) < 0.32).astype(int)
    asa = rng.choice(["1-2", "3", "4-5"], n, p=[0.35, 0.5, 0.15])
    cog = rng.choice(["no", "yes", "uncertain"], n, p=[0.65, 0.28, 0.07])
    charlson = rng.poisson(1.2, n)
    res = rng.choice(["home", "home_care", "nursing_home"], n, p=[0.5, 0.3, 0.2])
    delay = rng.choice(["<24h", "24-48h", ">48h"], n, p=[0.6, 0.25, 0.15])
    inc = rng.integers(1, 6, n)
    edu = rng.choice(["low", "medium", "high"], n, p=[0.4, 0.4, 0.2])
    alone = (rng.uniform(size=n) < 0.5).astype(int)
    hosp = rng.choice([f"H{i:02d}" for i in range(20)], n)
    region = np.where(np.isin(hosp, ["H00", "H01", "H02", "H03"]), "Helse Nord",
                      np.where(np.isin(hosp, ["H04", "H05", "H06"]), "Helse Vest", "Helse Sør-Øst"))
    ftype = rng.choice(["fn_undisplaced", "fn_displaced", "troch_a1", "troch_a2", "subtroch"], n,
                       p=[0.2, 0.35, 0.2, 0.2, 0.05])
    op = np.where(ftype == "fn_displaced", "hemi", np.where(ftype == "fn_undisplaced", "screws", "short_nail"))
    gl = np.where(ftype == "fn_displaced", (rng.uniform(size=n) < 0.9).astype(float), np.nan)
    vol = rng.choice([100.0, 200.0, 300.0, 450.0], n)
    lp = (AGE_LOG_HR_PER_YEAR * (age - 80) + TRUE_LOG_HR["male"] * male
          + np.select([asa == "3", asa == "4-5"], [TRUE_LOG_HR["asa_group[3]"], TRUE_LOG_HR["asa_group[4-5]"]], 0)
          + np.select([cog == "yes", cog == "uncertain"], [TRUE_LOG_HR["cognitive[yes]"], TRUE_LOG_HR["cognitive[uncertain]"]], 0)
          + TRUE_LOG_HR["charlson"] * charlson
          + np.select([res == "home_care", res == "nursing_home"],
                      [TRUE_LOG_HR["residence[home_care]"], TRUE_LOG_HR["residence[nursing_home]"]], 0)
          + TRUE_LOG_HR["delay_band[>48h]"] * (delay == ">48h") + TRUE_LOG_HR["income_quintile"] * inc)
    rate = 0.12 / 365.25 * np.exp(lp)                        # per day
    t_death = rng.exponential(1 / rate)
    t_cens = rng.uniform(365, 4000, n)
    dead = (t_death <= t_cens).astype(int)
    follow = np.round(np.minimum(t_death, t_cens)) + 0.5
    t_sec = rng.exponential(365.25 / 0.02, n)
    second = (t_sec < follow).astype(int)
    df = pd.DataFrame({
        "age": age, "male": male, "sex": np.where(male == 1, "male", "female"), "asa_group": asa,
        "cognitive": cog, "charlson": charlson, "residence": res, "delay_band": delay,
        "income_quintile": inc.astype(float), "education": edu, "living_alone": alone.astype(float),
        "hospital": hosp, "res_region": region, "fracture_type": ftype, "operation_type": op,
        "guideline_implant": gl, "hospital_volume": vol, "followup_days": follow, "dead": dead,
        "second_hip_fracture": second, "days_to_second_fracture": np.where(second == 1, np.round(t_sec) + 0.5, np.nan),
    })
    if missing:
        for c in ["asa_group", "cognitive", "income_quintile", "education", "delay_band"]:
            df.loc[rng.uniform(size=n) < missing, c] = np.nan
    return df
