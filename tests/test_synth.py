"""The synthetic registry generator: contract conformance, truth.json, determinism, imperfection counts,
caching, and the exactness of the survival simulation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hipfrac import geography, schema, synth
from hipfrac.params import SOURCE_NAMES
from hipfrac.synth import io, lifetable, model

SMALL = 0.005
HIP = ["S720", "S721", "S722"]


def _read_all(d, fmt="csv"):
    return {t: io.read(d / f"{t}.{fmt}") for t in SOURCE_NAMES}


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    return synth.generate(d, seed=11, scale=0.02, imperfections=False)


@pytest.fixture(scope="module")
def clean(clean_dir):
    return _read_all(clean_dir)


@pytest.fixture(scope="module")
def dirty(tiny_synth):
    return _read_all(tiny_synth)


@pytest.fixture(scope="module")
def dirty_truth(tiny_synth):
    return json.loads((tiny_synth / "truth.json").read_text(encoding="utf-8"))


# --- conformance ---------------------------------------------------------------------------------
def test_every_source_written_and_conforms_without_imperfections(clean_dir, clean):
    for t in SOURCE_NAMES:
        assert (clean_dir / f"{t}.csv").exists()
        assert len(clean[t]) > 0, t
        assert schema.check(clean[t], t) == [], t
    truth = json.loads((clean_dir / "truth.json").read_text())
    assert all(v == 0 for v in truth["imperfections"].values()), truth["imperfections"]


def test_clean_data_is_logically_consistent(clean):
    nh, npr, kpr, dr, per = (clean[k] for k in ("nhfr_operations", "npr_episodes", "kpr_services",
                                                 "death_registry", "ssb_persons"))
    f = pd.to_datetime(nh["fracture_datetime"])
    a = pd.to_datetime(nh["admission_datetime"])
    s = pd.to_datetime(nh["surgery_datetime"])
    prim = nh["op_kind"] == "primary"
    assert (f[prim] <= a[prim]).all() and (a <= s).all()
    assert (nh.loc[prim, "reop_reason"].isna()).all() and nh.loc[~prim, "reop_reason"].notna().all()
    assert set(nh.loc[~prim, "primary_op_id"]) <= set(nh.loc[prim, "op_id"])
    assert not nh.drop(columns="op_id").duplicated().any()
    assert (pd.to_datetime(npr["discharge_date"]) >= pd.to_datetime(npr["admission_date"])).all()
    end = kpr["end_date"].notna()
    assert (pd.to_datetime(kpr.loc[end, "end_date"]) >= pd.to_datetime(kpr.loc[end, "start_date"])).all()
    persons = set(per["person_id"])
    for t in ("nhfr_operations", "npr_episodes", "kpr_services", "death_registry", "prescriptions"):
        assert set(clean[t]["person_id"]) <= persons, t
    # every NHFR primary has an NPR hip fracture stay with a hip procedure on its admission date
    hip = npr[npr["diag_main"].isin(HIP) & npr["procedures"].fillna("").str.match(r"NF[BJ]")]
    k_npr = set(zip(hip["person_id"], hip["admission_date"]))
    k_nh = set(zip(nh.loc[prim, "person_id"], nh.loc[prim, "admission_datetime"].str[:10]))
    assert k_nh == k_npr   # full coverage without imperfections
    # nobody has an event after death
    death = dict(zip(dr["person_id"], pd.to_datetime(dr["death_date"])))
    last_npr = npr.groupby("person_id")["admission_date"].max()
    late = [p for p, d in last_npr.items() if p in death and pd.Timestamp(d) > death[p]]
    assert not late


def test_geography_and_codes_are_the_shipped_ones(clean):
    munis = set(geography.municipalities()["municipality"])
    assert set(clean["ssb_persons"]["municipality"]) <= munis
    assert set(clean["ssb_population"]["municipality"]) == munis
    assert set(clean["nhfr_operations"]["hospital"]) <= set(geography.hospitals()["hospital"])
    npr = clean["npr_episodes"]
    trust = dict(zip(geography.hospitals()["hospital"], geography.hospitals()["trust"]))
    assert (npr["hospital"].map(trust) == npr["trust"]).all()


def test_charlson_codes_are_recognised_by_quan_coding(clean):
    """Every comorbidity code the generator writes falls in its component's Quan ICD-10 list."""
    from importlib import resources

    import yaml

    path = resources.files("hipfrac.data").joinpath("charlson_icd10.yaml")
    if not path.is_file():
        pytest.skip("charlson_icd10.yaml not shipped yet")
    quan = yaml.safe_load(path.read_text(encoding="utf-8"))["components"]
    for comp, codes in model.COMORB_CODES.items():
        for c in codes:
            assert any(c.startswith(p) for p in quan[comp]["codes"]), (comp, c)
            others = [k for k, v in quan.items() if k != comp and any(c.startswith(p) for p in v["codes"])]
            assert not others, (comp, c, others)


# --- truth.json -------------------------------------------------------------------------------------
def test_truth_is_complete(dirty_truth, dirty):
    t = dirty_truth
    for key in ("seed", "scale", "years", "rows", "imperfections", "mortality", "treatment", "medication",
                "second_fracture"):
        assert key in t, key
    assert t["rows"] == {k: len(v) for k, v in dirty.items()}
    m = t["mortality"]
    for key in ("model", "log_hr", "hr", "relative_mortality", "excess_hazard", "net_survival",
                "duration", "duration_definition", "frailty_mean"):
        assert key in m, key
    for term in ("male", "asa_group[3]", "asa_group[4-5]", "cognitive[yes]", "residence[nursing_home]",
                 "residence[home_care]", "charlson", "delay_band[>48h]", "income_quintile", "education[low]"):
        assert m["hr"][term] == pytest.approx(np.exp(m["log_hr"][term]))
    assert m["hr"]["male"] > 1 and m["hr"]["asa_group[4-5]"] > m["hr"]["asa_group[3]"] > 1
    assert m["mean_exp_lp"] == pytest.approx(1.0, abs=1e-9)
    assert m["frailty_mean"] == pytest.approx(model.FRAILTY_MEAN) and m["frailty_mean"] > 1
    rm = m["relative_mortality"]
    mm = np.array(rm["m"])
    assert (np.diff(mm) <= 1e-12).all() and (mm >= 1).all() and mm[0] > 10   # acute, decaying, never below 1
    ns = np.array(m["net_survival"]["surv"])
    # net survival never rises (issue 14): the marginal net excess stays positive over the whole follow-up
    assert ns[0] == 1.0 and (np.diff(ns) <= 1e-12).all() and m["excess_zero_years"] is None
    for g in ("female", "male"):
        assert (np.diff(np.array(m["net_survival"]["by_sex"][g])) <= 1e-12).all(), g
    assert set(m["duration"]) >= {"all", "female", "male"}
    assert set(m["duration"]["all"]) == {"cns1y_095_years", "excess_below_005_years", "excess_below_002_years"}
    # life years lost, crude probabilities, conditional net survival: overall, by sex and age band
    for key in ("life_years_lost", "crude_probability", "conditional_net_survival"):
        assert key in m, key
    lyl, crude = m["life_years_lost"], m["crude_probability"]
    assert set(lyl["by_group"]) >= {"all", "female", "male", "age 80-89"}
    for g, v in lyl["by_group"].items():
        ex, ob, yl = (np.array(v[k]) for k in ("expected_years", "observed_years", "years_lost"))
        assert yl == pytest.approx(ex - ob) and (yl > 0).all() and (np.diff(yl) > 0).all(), g
        assert (ex <= np.array(lyl["tau_days"]) / 365.241 + 1e-12).all(), g
    for g, v in crude["by_group"].items():
        pe, pp = np.array(v["prob_excess"]), np.array(v["prob_population"])
        assert (pe > 0).all() and (np.diff(pe) > 0).all() and (np.diff(pp) > 0).all(), g
    cns = m["conditional_net_survival"]["all"]
    assert np.all(np.array(cns["one_year"]) < 1) and cns["given_days"][0] == 0.0
    by_year = m["net_survival_by_year"]
    total = np.sum([by_year["sum_surv"][y] for y in by_year["n"]], axis=0) / sum(by_year["n"].values())
    assert total == pytest.approx(ns, rel=1e-9)
    ex = m["excess_hazard"]
    assert len(ex["days"]) == len(ex["rate_per_year"]) == len(ns) - 1
    assert ex["rate_per_year"][0] > 1.0   # very high in the first days
    hospitals = set(geography.hospitals()["hospital"])
    for ind in ("surgery_48h", "arthroplasty_displaced", "cemented", "nail", "shs_a1", "nerve_block",
                "osteo_med_12m"):
        tr = t["treatment"][ind]
        assert set(tr["hospital_effects"]) == hospitals
        assert set(tr["deviant_hospitals"]) <= hospitals and tr["deviant_hospitals"]
        assert 0 < tr["national_rate"] < 1 and tr["sigma2"] > 0 and tr["mor"] > 1
        # realised variance: that of the 44 effects written (deviants included), MOR by Larsen & Merlo
        u = np.array([tr["hospital_effects"][h] for h in sorted(hospitals)])
        assert tr["sigma2_realised"] == pytest.approx(np.var(u, ddof=1), rel=1e-12)
        assert tr["mor_realised"] == pytest.approx(np.exp(np.sqrt(2 * np.var(u, ddof=1)) * 0.6744897501960817))
    assert set(t["medication"]["region_rate"]) == set(geography.REGIONS)
    assert 0.1 <= t["medication"]["overall_rate"] <= 0.2
    sf = t["second_fracture"]
    assert sf["hr_medication"] < 1 and sf["log_hr_medication"] == pytest.approx(np.log(sf["hr_medication"]))


# --- imperfections ------------------------------------------------------------------------------------
def test_imperfection_counts_match_the_files(dirty, dirty_truth):
    imp = dirty_truth["imperfections"]
    nh, npr = dirty["nhfr_operations"], dirty["npr_episodes"]
    assert imp["missing_asa"] == nh["asa"].isna().sum() > 0
    assert imp["missing_cognitive"] == nh["cognitive"].isna().sum() > 0
    assert imp["invalid_fracture_type"] == (~nh["fracture_type"].isin(schema.FRACTURE_TYPES)
                                            & nh["fracture_type"].notna()).sum()
    f = pd.to_datetime(nh["fracture_datetime"])
    s = pd.to_datetime(nh["surgery_datetime"])
    assert imp["impossible_dates_nhfr"] == (s < f).sum() > 0
    assert imp["duplicate_nhfr_forms"] == nh.drop(columns="op_id").duplicated().sum()
    assert imp["invalid_icd10_npr"] == (~npr["diag_main"].str.fullmatch(schema.ICD10)).sum() > 0
    assert imp["impossible_dates_npr"] == (pd.to_datetime(npr["discharge_date"], errors="coerce")
                                           < pd.to_datetime(npr["admission_date"])).sum() > 0
    assert imp["duplicate_npr_rows"] == npr.duplicated().sum()
    # coverage gaps: NPR operated hip fracture stays without an NHFR primary on that admission date
    prim = nh[nh["op_kind"] == "primary"]
    hip = npr[npr["diag_main"].isin(HIP) & npr["procedures"].fillna("").str.match(r"NF[BJ]")].drop_duplicates()
    k_nh = set(zip(prim["person_id"], prim["admission_datetime"].str[:10]))
    missing = sum((p, d) not in k_nh for p, d in zip(hip["person_id"], hip["admission_date"]))
    assert imp["nhfr_missing_primary"] == missing > 0
    # reoperations: NPR reoperation stays (complication diagnoses) without an NHFR reoperation form
    reop_icd = ["T840", "T841", "T845", "T848", "M966", "M841", "M872", "Z470"]
    re_npr = npr[npr["diag_main"].isin(reop_icd)].drop_duplicates()
    re_nh = nh[nh["op_kind"] == "reoperation"]
    k_re = set(zip(re_nh["person_id"], re_nh["admission_datetime"].str[:10]))
    missing_re = sum((p, d) not in k_re for p, d in zip(re_npr["person_id"], re_npr["admission_date"]))
    assert imp["nhfr_missing_reoperation"] == missing_re
    assert 0.8 < 1 - missing / len(hip) < 0.97


def test_schema_check_flags_only_the_injected_problems(dirty):
    problems = {t: schema.check(dirty[t], t) for t in SOURCE_NAMES}
    nh = " | ".join(problems["nhfr_operations"])
    assert "fracture_type" in nh and "invalid" in nh
    assert len(problems["nhfr_operations"]) == 1
    npr = " | ".join(problems["npr_episodes"])
    assert "diag_main" in npr and "duplicate keys" in npr and len(problems["npr_episodes"]) == 2
    for t in SOURCE_NAMES:
        if t not in ("nhfr_operations", "npr_episodes"):
            assert problems[t] == [], t


# --- determinism, caching, formats, CLI --------------------------------------------------------------
def test_same_seed_byte_identical_and_different_seed_differs(tmp_path):
    a = synth.generate(tmp_path / "a", seed=3, scale=SMALL)
    b = synth.generate(tmp_path / "b", seed=3, scale=SMALL)
    c = synth.generate(tmp_path / "c", seed=4, scale=SMALL)
    for name in [f"{t}.csv" for t in SOURCE_NAMES] + ["truth.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    differ = [t for t in ("nhfr_operations", "npr_episodes", "death_registry", "ssb_persons", "prescriptions")
              if (a / f"{t}.csv").read_bytes() != (c / f"{t}.csv").read_bytes()]
    assert len(differ) == 5


def test_generation_is_skipped_when_settings_are_identical(tmp_path):
    d = synth.generate(tmp_path / "x", seed=5, scale=SMALL)
    stamp = (d / "npr_episodes.csv").stat().st_mtime_ns
    synth.generate(d, seed=5, scale=SMALL)
    assert (d / "npr_episodes.csv").stat().st_mtime_ns == stamp
    settings = json.loads((d / "settings.json").read_text())
    assert settings["code_version"] == synth.code_version() and settings["seed"] == 5
    synth.generate(d, seed=6, scale=SMALL)          # different settings: regenerated
    assert json.loads((d / "settings.json").read_text())["seed"] == 6
    assert json.loads((d / "truth.json").read_text())["seed"] == 6


def test_parquet_format_conforms(tmp_path):
    d = synth.generate(tmp_path / "pq", seed=5, scale=SMALL, fmt="parquet", imperfections=False)
    for t in SOURCE_NAMES:
        df = io.read(d / f"{t}.parquet")
        assert schema.check(df, t) == [], t
    assert not list(d.glob("*.csv"))


def test_cli_flags(tmp_path):
    from hipfrac.__main__ import main

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--seed", "9", "--years", "2015-2017", "--scale", str(SMALL),
                 "--no-imperfections"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["years"] == [2015, 2017] and truth["seed"] == 9
    nh = io.read(out / "nhfr_operations.csv")
    years = pd.to_datetime(nh["fracture_datetime"]).dt.year.dropna()
    assert years.between(2015, 2017).all()


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        synth.generate(tmp_path / "bad", scale=0)
    with pytest.raises(ValueError, match="years"):
        synth.generate(tmp_path / "bad", years=(2020, 2010))
    with pytest.raises(ValueError, match="fmt"):
        synth.generate(tmp_path / "bad", fmt="xlsx")


# --- the model itself ---------------------------------------------------------------------------------
def test_life_table_matches_ssb_life_expectancy():
    lt = lifetable.life_table((2007, 2022))
    for (sex, year), e0 in {("male", 2007): 78.2, ("female", 2007): 82.7, ("male", 2018): 81.0,
                            ("female", 2018): 84.5, ("male", 2022): 80.9, ("female", 2022): 84.4}.items():
        r = lt[(lt["sex"] == sex) & (lt["year"] == year)]["mortality_rate"].to_numpy()
        assert lifetable.life_expectancy(r) == pytest.approx(e0, abs=0.01)
    for sex, e70 in (("male", 14.9), ("female", 17.3)):
        r = lt[(lt["sex"] == sex) & (lt["year"] == 2015)]["mortality_rate"].to_numpy()
        assert lifetable.life_expectancy(r, 70) == pytest.approx(e70, abs=0.01)


def test_survival_draws_follow_the_exact_model():
    """Homogeneous patients (same age, sex, year, covariates): the empirical death proportions match the
    model's exact survival exp(-int h_pop m) computed independently on a daily grid."""
    from hipfrac.synth import core

    years = (2010, 2024)
    lt = lifetable.life_table(years)
    rates = lifetable.rate_array(lt, years)
    n = 40_000
    df = pd.DataFrame({"male": 0, "asa_group": "1-2", "cognitive": "no", "charlson": 0, "residence": "home",
                       "income_quintile": 3, "education": "medium", "delay_gt48": 0,
                       "res_region": "Helse Sør-Øst", "age": 80.0, "year": 2012,
                       "fracture_day": core.day_of("2012-01-01")}, index=range(n))
    death, truth = core.simulate_survival(core.Streams(1), df, rates, years)
    day = np.arange(0, 5 * 366) + 0.5
    a = np.floor(80 + day / 365.25).astype(int)
    y = np.floor(2012 + day / 365.25).astype(int) - years[0]
    h = rates[0, y, a] / 365.25 * model.FRAILTY_MEAN * model.relative_mortality(day)
    cum = np.cumsum(h)
    for t in (30, 365, 5 * 365):
        p = 1 - np.exp(-cum[t - 1])
        se = np.sqrt(p * (1 - p) / n)
        assert np.mean(death <= t) == pytest.approx(p, abs=4 * se + 2e-3), t
    # net survival of a homogeneous group (exp(beta'x - centre) = 1): exp(-int h_pop (F m - 1))
    hp = rates[0, y, a] / 365.25
    net = np.exp(-np.cumsum(hp * (model.FRAILTY_MEAN * model.relative_mortality(day) - 1)))
    edges = truth["edges"]
    for t in (30, 365, 1826):
        k = int(np.searchsorted(edges, t))
        assert truth["net"][k] == pytest.approx(net[int(edges[k]) - 1], abs=3e-3)
    # life years lost and crude probabilities at the truth times, against the daily grid (exact integrals
    # of the same hazards, midpoint rule) and against the draws (no censoring in the generator)
    surv_o = np.exp(-cum)
    surv_p = np.exp(-np.cumsum(hp))
    exc_h = hp * (model.FRAILTY_MEAN * model.relative_mortality(day) - 1)
    s_prev = np.r_[1.0, surv_o[:-1]]
    cr_exc = np.cumsum(s_prev * exc_h / h * (1 - np.exp(-h)))
    cr_pop = np.cumsum(s_prev * hp / h * (1 - np.exp(-h)))
    c = truth["cumulative"]
    for j, t in enumerate(core.TRUTH_TIMES_DAYS):
        if t > len(day):
            continue
        ti = int(round(t))
        obs = np.sum(np.r_[1.0, surv_o][:ti] * (1 - np.exp(-h[:ti])) / h[:ti])
        exp_ = np.sum(np.r_[1.0, surv_p][:ti] * (1 - np.exp(-hp[:ti])) / hp[:ti])
        assert c["rm_obs"]["all"][j] / n == pytest.approx(obs, rel=2e-3), t
        assert c["rm_pop"]["all"][j] / n == pytest.approx(exp_, rel=2e-3), t
        assert c["crude_exc"]["all"][j] / n == pytest.approx(cr_exc[ti - 1], abs=2e-3), t
        assert c["crude_pop"]["all"][j] / n == pytest.approx(cr_pop[ti - 1], abs=2e-3), t
        # the two crude probabilities add up to the model's mortality, which the draws follow
        p = (c["crude_exc"]["all"][j] + c["crude_pop"]["all"][j]) / n
        assert np.mean(death <= t) == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n) + 1e-3), t
        assert np.mean(np.minimum(death, t)) == pytest.approx(c["rm_obs"]["all"][j] / n, rel=5e-3), t
    assert np.allclose(c["rm_obs"]["female"], c["rm_obs"]["all"], rtol=1e-12, atol=0) and not c["rm_obs"]["male"].any()
