"""Build the eight registry extracts (as delivered) and the ground truth from the simulated patients.

Internal representation: dates as int days since 1970-01-01 (`*_day`), date-times as float days; they are
converted to text only when written (see `hipfrac.synth.io`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from hipfrac import geography

from . import core, lifetable, model
from .core import Streams, day_of

NCSP_PRIMARY = {("hemi", "cemented"): "NFB12", ("hemi", "uncemented"): "NFB02",
                ("total", "cemented"): "NFB40", ("total", "uncemented"): "NFB20",
                ("screws", None): "NFJ50", ("shs", None): "NFJ60", ("short_nail", None): "NFJ70",
                ("long_nail", None): "NFJ71", ("other", None): "NFJ99"}
HIP_ICD = {"fn_undisplaced": "S720", "fn_displaced": "S720", "basocervical": "S720", "troch_a1": "S721",
           "troch_a2": "S721", "troch_a3": "S721", "subtroch": "S722"}
REOP = {  # operation type -> (reasons, p), probability of a reoperation within 2 years
    "screws": (["fixation_failure", "nonunion", "avascular_necrosis", "implant_removal"], [0.45, 0.25, 0.2, 0.1]),
    "hemi": (["dislocation", "infection", "periprosthetic_fracture", "other"], [0.35, 0.4, 0.2, 0.05]),
    "total": (["dislocation", "infection", "periprosthetic_fracture", "other"], [0.45, 0.3, 0.2, 0.05]),
    "shs": (["fixation_failure", "implant_removal", "infection", "nonunion"], [0.45, 0.3, 0.15, 0.1]),
    "short_nail": (["fixation_failure", "implant_removal", "infection", "nonunion"], [0.4, 0.35, 0.15, 0.1]),
    "long_nail": (["fixation_failure", "implant_removal", "infection", "nonunion"], [0.4, 0.35, 0.15, 0.1]),
    "other": (["other"], [1.0]),
}
P_REOP = {"screws_displaced": 0.20, "screws": 0.07, "hemi": 0.045, "total": 0.06, "shs": 0.04,
          "short_nail": 0.04, "long_nail": 0.05, "other": 0.05}
REOP_ICD = {"dislocation": "T840", "infection": "T845", "periprosthetic_fracture": "M966",
            "fixation_failure": "T841", "nonunion": "M841", "avascular_necrosis": "M872",
            "implant_removal": "Z470", "other": "T848"}
REOP_NCSP = {"dislocation": "NFH20", "infection": "NFS19", "periprosthetic_fracture": "NFJ82",
             "fixation_failure": "NFC22", "nonunion": "NFC22", "avascular_necrosis": "NFC22",
             "implant_removal": "NFU10", "other": "NFW99"}
READMIT_ICD = ["J189", "N390", "R268", "E869", "K590", "L899"]
DRUGS = {"M05BA04": (84, 84.0, 0.65), "M05BA08": (365, 365.0, 0.2), "M05BX04": (182, 182.0, 0.15)}


def _prefixed(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """prefix + zero-padded numbers, as an object array of str."""
    import pyarrow as pa
    import pyarrow.compute as pc

    num = pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, num, "").to_numpy(zero_copy_only=False)


def ids(prefix: str, start: int, n: int, width: int) -> np.ndarray:
    """prefix + zero-padded sequential numbers start, start+1, ... (n of them)."""
    if n == 0:
        return np.array([], dtype=object)
    return _prefixed(prefix, np.arange(start, start + n), width)


def _dt_min(day: np.ndarray) -> np.ndarray:
    """float days -> float days rounded to the minute."""
    return np.round(np.asarray(day, float) * 1440) / 1440


def _pick(rng, options, n):
    return np.asarray(options)[rng.integers(0, len(options), n)]


#: the durations of excess mortality held in truth.json (mortality.duration), per group
DURATION_TRUTH_DEFINITION = {
    "cns1y_095_years": "earliest time (years since the fracture) from which the conditional one-year net "
                       "survival NS(t + 1 y) / NS(t) stays at or above 0.95 until the end of the follow-up "
                       "horizon (a size-based 'time to cure' in the sense of Dal Maso et al. 2014: an excess "
                       "of at most 5 % in the next year)",
    "excess_below_005_years": "earliest time from which the marginal net excess hazard stays below 0.05 per "
                              "person-year",
    "excess_below_002_years": "earliest time from which the marginal net excess hazard stays below 0.02 per "
                              "person-year",
    "null": "a duration is null when the criterion is not met within the follow-up horizon; the excess "
            "itself stays positive (see excess_zero_years), so the significance-based duration (the "
            "notebook's definition) grows with the number of patients and is not a property of the model",
}


def _excess(edges: np.ndarray, net: np.ndarray) -> np.ndarray:
    """Marginal net excess hazard per person-year on each interval of edges (days)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.diff(np.log(net)) / np.diff(edges) * 365.25


def _stays_from(t: np.ndarray, ok: np.ndarray) -> float | None:
    """Earliest t[k] from which ok holds at every later point (None when ok fails at the last point)."""
    if not len(ok) or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return float(t[bad[-1] + 1]) if len(bad) else float(t[0])


def _durations(edges: np.ndarray, net: np.ndarray) -> dict:
    """Durations of excess mortality of one group's true net survival curve (see DURATION_TRUTH_DEFINITION)."""
    years = edges / 365.25
    exc = _excess(edges, net)
    start = years[:-1]
    out = {"excess_below_005_years": _stays_from(start, exc < 0.05),
           "excess_below_002_years": _stays_from(start, exc < 0.02)}
    horizon = edges[-1] - 365.25
    t = edges[edges <= horizon]
    cns = np.interp(t + 365.25, edges, net) / np.interp(t, edges, net)
    out["cns1y_095_years"] = _stays_from(t / 365.25, cns >= 0.95)
    return out




def _groups_present(surv: dict) -> list[str]:
    return [g for g, n in surv["group_n"].items() if n > 0]


def _life_years_lost(surv: dict) -> dict:
    """Restricted mean life years lost to the fracture within each tau, per group: mean over the group's
    index fractures of integral_0^tau [S_pop,i - S_i] dt (years of 365.241 days, as hipfrac.relsurv)."""
    out = {"tau_days": list(core.TRUTH_TIMES_DAYS), "by_group": {},
           "definition": "mean over the group's index fractures of the exact restricted mean survival without "
                         "the fracture (population hazard x 1: expected_years) and with it (observed_years) up to "
                         "tau_days, years of 365.241 days; years_lost = expected_years - observed_years "
                         "(hipfrac.relsurv.life_years_lost, relsurv::years 'yd')"}
    for g in _groups_present(surv):
        n = surv["group_n"][g]
        c = surv["cumulative"]
        ex = c["rm_pop"][g] / n / 365.241
        ob = c["rm_obs"][g] / n / 365.241
        out["by_group"][g] = {"expected_years": ex.tolist(), "observed_years": ob.tolist(),
                              "years_lost": (ex - ob).tolist()}
    return out


def _crude_probability(surv: dict) -> dict:
    """Crude probabilities of death from the fracture's excess and from other causes by each time, per group."""
    out = {"days": list(core.TRUTH_TIMES_DAYS), "by_group": {},
           "definition": "mean over the group's index fractures of integral_0^t S_i(u) lambda_i(u) du, with "
                         "lambda_i the excess hazard h_pop (F(x) m(t) - 1) (prob_excess) or the population hazard "
                         "h_pop (prob_population); prob_excess + prob_population = 1 - the group's mean survival "
                         "(hipfrac.relsurv.crude_probability, relsurv::cmp.rel)"}
    for g in _groups_present(surv):
        n = surv["group_n"][g]
        c = surv["cumulative"]
        out["by_group"][g] = {"prob_excess": (c["crude_exc"][g] / n).tolist(),
                              "prob_population": (c["crude_pop"][g] / n).tolist()}
    return out


def _conditional_net(edges: np.ndarray, net: np.ndarray) -> dict:
    """Conditional one-year net survival NS(s + 1 y) / NS(s) of the marginal net survival at yearly s."""
    s = np.arange(0.0, edges[-1] / 365.25 - 1 + 1e-9, 1.0) * 365.25
    cns = np.interp(s + 365.25, edges, net) / np.interp(s, edges, net)
    return {"given_days": s.tolist(), "one_year": cns.tolist()}


class Builder:
    def __init__(self, seed: int, years: tuple[int, int], scale: float, imperfections: bool):
        self.st = Streams(seed)
        self.seed, self.years, self.scale, self.imperfections = seed, years, scale, imperfections
        self.end_day = day_of(f"{years[1] + 1}-01-01")   # data end (exclusive): 1 January after the last year
        self.hosp = geography.hospitals()
        self.trust_of = dict(zip(self.hosp["hospital"], self.hosp["trust"]))
        self.region_of_h = dict(zip(self.hosp["hospital"], self.hosp["region"]))
        self.munis = geography.municipalities()
        self.imperf: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, pd.DataFrame], dict]:
        st, years = self.st, self.years
        lt = lifetable.life_table(years)
        rates = lifetable.rate_array(lt, years)
        df = core.draw_patients(st, years, self.scale)
        n = len(df)
        pnum = st("ids").choice(9_999_999, size=n, replace=False) + 1
        df["person_id"] = _prefixed("P", pnum, 7)
        hospitals = list(self.hosp["hospital"])
        effects = core.hospital_effects(st, hospitals)
        tr, intercepts = core.treat(st, df, effects, "treatment_index")
        df = pd.concat([df, tr], axis=1)
        death_t, surv_truth = core.simulate_survival(st, df, rates, years)
        df["death_t"] = death_t
        df["surgery_t"] = df["hours_to_surgery"].to_numpy() / 24
        df["operated"] = df["death_t"] > df["surgery_t"]
        # medication after the fracture
        t_med, med_truth = self._medication(df, effects)
        df["t_med"] = t_med
        t2, to = core.later_fractures(st, df, t_med)
        df["t_second"], df["t_other"] = t2, to
        second = self._second_fractures(df, effects)
        tables = {
            "nhfr_operations": None,
            "npr_episodes": None,
            "kpr_services": self._kpr(df),
            "death_registry": self._deaths(df),
            "ssb_persons": self._persons(df),
            # the population each shipped municipality stands for (see core.municipality_weights)
            "ssb_population": lifetable.population(
                self.munis.assign(population=core.municipality_weights(core.area_incidence_effects(st))),
                years, self.scale),
            "ssb_lifetables": lt,
            "prescriptions": self._prescriptions(df),
        }
        nhfr, npr_ops, coverage = self._nhfr(df, second)
        tables["npr_episodes"] = self._npr(df, second, npr_ops)
        tables["nhfr_operations"] = nhfr
        truth = self._truth(df, second, effects, intercepts, surv_truth, med_truth, coverage, tables)
        # person-level truth kept in memory for tests (one row per person, first hip fracture; never written)
        self.patients, self.second = df, second
        return tables, truth

    # ------------------------------------------------------------------------------------------
    def _medication(self, df, effects):
        rng = self.st("medication")
        n = len(df)
        lor = model.PATIENT_LOG_OR["osteo_med_12m"]
        lin = np.array([effects["osteo_med_12m"]["u"][h] for h in df["hospital"]])
        lin += np.array([model.MED_REGION_LOG_OR[r] for r in df["res_region"]])
        lin += lor["female"] * (df["male"].to_numpy() == 0) + lor["age_90plus"] * (df["age"].to_numpy() >= 90)
        lin += lor["residence[nursing_home]"] * (df["residence"] == "nursing_home").to_numpy()
        lin += lor["osteo_med_before"] * df["osteo_med_before"].to_numpy()
        a, ints = core._solve_intercepts(lin, df["year"].to_numpy(), model.TREATMENT["osteo_med_12m"]["target"])
        p = expit(a + lin)
        start = rng.random(n) < p
        u = rng.random(n)
        t_early = 7 - 60 * np.log(1 - u * (1 - np.exp(-350 / 60)))      # within 7..357 days
        t_late = 366 + rng.exponential(400, n)
        late = ~start & (rng.random(n) < 0.05)
        t = np.where(start, t_early, np.where(late, t_late, np.inf))
        t = np.where(t < df["death_t"].to_numpy(), t, np.inf)
        region = df["res_region"].to_numpy()
        truth = {"overall_rate": float(p.mean()),
                 "region_rate": {r: float(p[region == r].mean()) for r in geography.REGIONS},
                 "intercepts": ints, "p": p}
        return t, truth

    def _second_fractures(self, df, effects) -> pd.DataFrame:
        """Second hip fractures (before death and data end) as fracture rows, treated like index ones."""
        rng = self.st("second")
        t2 = df["t_second"].to_numpy()
        day2 = df["fracture_day"].to_numpy() + t2
        ok = (t2 < df["death_t"].to_numpy()) & (day2 < self.end_day)
        s = df.loc[ok, ["person_id", "sex", "male", "age", "hospital", "asa", "cognitive", "residence",
                        "res_region", "side", "death_t", "fracture_day"]].copy()
        s["t_since_index"] = t2[ok]
        s["fracture_day"] = _dt_min(day2[ok])
        s["age"] = s["age"] + s["t_since_index"] / 365.25
        s["year"] = (s["fracture_day"].to_numpy().astype("int64").astype("datetime64[D]")
                     .astype("datetime64[Y]").astype(int) + 1970)
        m = len(s)
        s["asa"] = np.minimum(s["asa"].to_numpy() + (rng.random(m) < 0.3), 5)
        s["asa_group"] = np.where(s["asa"] <= 2, "1-2", np.where(s["asa"] == 3, "3", "4-5"))
        s["side"] = np.where(rng.random(m) < 0.95, np.where(s["side"] == "left", "right", "left"), s["side"])
        side = s.pop("side")
        tr, _ = core.treat(self.st, s, effects, "treatment_second")
        s = pd.concat([s, tr.drop(columns="side")], axis=1)
        s["side"] = side
        s["death_t_rel"] = s["death_t"] - s["t_since_index"]      # days from this fracture to death
        s["surgery_t"] = s["hours_to_surgery"] / 24
        s["operated"] = s["death_t_rel"] > s["surgery_t"]
        return s.reset_index(drop=True)

    # ------------------------------------------------------------------------------------------
    def _fracture_events(self, df, second):
        """Index and second fractures stacked: one row per fracture with its treatment and timing."""
        cols = ["person_id", "fracture_day", "hospital", "side", "fracture_type", "asa", "cognitive",
                "operation_type", "stem_fixation", "anaesthesia", "nerve_block", "hours_to_admission",
                "hours_to_surgery", "operated", "age"]
        a = df[cols].copy()
        a["death_rel"] = df["death_t"].to_numpy()
        a["is_index"] = True
        b = second[cols].copy()
        b["death_rel"] = second["death_t_rel"].to_numpy()
        b["is_index"] = False
        return pd.concat([a, b], ignore_index=True)

    def _nhfr(self, df, second):
        rng = self.st("nhfr")
        ev = self._fracture_events(df, second)
        ev["admission_dt"] = _dt_min(ev["fracture_day"] + ev["hours_to_admission"] / 24)
        ev["surgery_dt"] = _dt_min(ev["fracture_day"] + ev["hours_to_surgery"] / 24)
        ev["ev_id"] = np.arange(len(ev))
        ops = ev[ev["operated"] & (ev["surgery_dt"] < self.end_day)].copy()
        ops["op_kind"] = "primary"
        ops["reop_reason"] = None
        # reoperations within two years (alive, before data end)
        key = np.where((ops["operation_type"] == "screws") & (ops["fracture_type"] == "fn_displaced"),
                       "screws_displaced", ops["operation_type"])
        p = np.array([P_REOP[k] for k in key])
        t_reop = 14 + rng.exponential(200, len(ops))
        death_after_surgery = ops["death_rel"].to_numpy() - ops["hours_to_surgery"].to_numpy() / 24
        has = (rng.random(len(ops)) < p) & (t_reop < 730) & (t_reop < death_after_surgery)
        re = ops[has].copy()
        re["reop_of_ev"] = re["ev_id"]
        re_day = np.floor(re["surgery_dt"].to_numpy() + t_reop[has]) + rng.integers(8 * 60, 15 * 60, has.sum()) / 1440
        re["admission_dt"] = _dt_min(re_day - rng.integers(2, 20, has.sum()) / 24)
        re["surgery_dt"] = _dt_min(re_day)
        reasons = np.empty(has.sum(), dtype=object)
        for ot, (rs, pr) in REOP.items():
            sel = (re["operation_type"] == ot).to_numpy()
            reasons[sel] = core._choice(rng, rs, pr, sel.sum())
        re["reop_reason"] = reasons
        conv = np.isin(reasons, ["fixation_failure", "nonunion", "avascular_necrosis"]) & \
            (re["fracture_type"].isin(["fn_displaced", "fn_undisplaced", "basocervical"])).to_numpy()
        re["operation_type"] = np.where(conv, "hemi", "other")
        re["stem_fixation"] = np.where(conv, "cemented", None)
        re["op_kind"] = "reoperation"
        re["fracture_type"] = None
        re["fracture_day"] = np.nan
        re["nerve_block"] = 0
        re = re[re["surgery_dt"] < self.end_day]
        forms = pd.concat([ops.assign(reop_of_ev=-1), re], ignore_index=True)
        forms = forms.sort_values(["surgery_dt", "person_id", "op_kind"], kind="stable").reset_index(drop=True)
        forms["op_id"] = ids("O", 1, len(forms), 8)
        prim = forms[forms["op_kind"] == "primary"].set_index("ev_id")["op_id"]
        forms["primary_op_id"] = np.where(forms["reop_of_ev"] >= 0,
                                          prim.reindex(forms["reop_of_ev"]).to_numpy(), None)
        # NPR sees every operation; NHFR coverage gaps by hospital
        npr_ops = forms[["ev_id", "op_id", "op_kind", "reop_reason", "operation_type", "stem_fixation",
                         "surgery_dt", "admission_dt", "hospital", "person_id", "fracture_type"]].copy()
        hospitals = list(self.hosp["hospital"])
        rc = self.st("coverage")
        cov = np.clip(rc.normal(*model.COVERAGE_TYPICAL, len(hospitals)), 0.8, 0.995)
        low = np.sort(rc.choice(len(hospitals), model.COVERAGE_LOW_HOSPITALS, replace=False))
        cov[low] = rc.uniform(*model.COVERAGE_LOW_RANGE, len(low))
        coverage = {"by_hospital": dict(zip(hospitals, cov.tolist())),
                    "low_coverage_hospitals": [hospitals[i] for i in low]}
        cov_of = dict(zip(hospitals, cov))
        if self.imperfections:
            keep = rc.random(len(forms)) < np.array([cov_of[h] for h in forms["hospital"]])
            self.imperf["nhfr_missing_primary"] = int((~keep & (forms["op_kind"] == "primary")).sum())
            self.imperf["nhfr_missing_reoperation"] = int((~keep & (forms["op_kind"] == "reoperation")).sum())
            forms = forms[keep].reset_index(drop=True)
        forms = self._nhfr_imperfections(forms)
        out = pd.DataFrame({
            "person_id": forms["person_id"], "op_id": forms["op_id"], "hospital": forms["hospital"],
            "fracture_datetime": forms["fracture_day"], "admission_datetime": forms["admission_dt"],
            "surgery_datetime": forms["surgery_dt"], "side": forms["side"],
            "fracture_type": forms["fracture_type"], "asa": forms["asa"].astype("Int64"),
            "cognitive": forms["cognitive"], "operation_type": forms["operation_type"],
            "stem_fixation": forms["stem_fixation"], "anaesthesia": forms["anaesthesia"],
            "nerve_block": forms["nerve_block"].astype("Int64"), "op_kind": forms["op_kind"],
            "reop_reason": forms["reop_reason"], "primary_op_id": forms["primary_op_id"],
        })
        out = out.sort_values("op_id", kind="stable").reset_index(drop=True)
        return out, npr_ops, coverage

    def _nhfr_imperfections(self, forms):
        if not self.imperfections:
            for k in ("missing_asa", "missing_cognitive", "invalid_fracture_type", "impossible_dates_nhfr",
                      "duplicate_nhfr_forms", "nhfr_missing_primary", "nhfr_missing_reoperation"):
                self.imperf[k] = 0
            return forms
        rng = self.st("nhfr_imperfections")
        n = len(forms)
        forms = forms.copy()
        forms["asa"] = forms["asa"].astype("float")
        defect = np.zeros(n, bool)
        m_asa = rng.random(n) < model.P_MISSING_ASA
        forms.loc[m_asa, "asa"] = np.nan
        m_cog = rng.random(n) < model.P_MISSING_COGNITIVE
        forms.loc[m_cog, "cognitive"] = None
        prim = (forms["op_kind"] == "primary").to_numpy()
        inv = prim & (rng.random(n) < model.P_INVALID_FRACTURE_TYPE)
        forms.loc[inv, "fracture_type"] = "9"
        imp = prim & ~inv & (rng.random(n) < model.P_IMPOSSIBLE_NHFR_DATE)
        forms.loc[imp, "surgery_dt"] = forms.loc[imp, "surgery_dt"] - 365.0   # year typed one too low
        defect |= m_asa | m_cog | inv | imp
        dup = ~defect & (rng.random(n) < model.P_DUPLICATE_NHFR)
        d = forms[dup].copy()
        # new ids must not collide with existing ones: existing ids run to the pre-coverage count
        top = int(forms["op_id"].str[1:].astype(int).max())
        d["op_id"] = ids("O", top + 1, len(d), 8)
        self.imperf.update({"missing_asa": int(m_asa.sum()), "missing_cognitive": int(m_cog.sum()),
                            "invalid_fracture_type": int(inv.sum()), "impossible_dates_nhfr": int(imp.sum()),
                            "duplicate_nhfr_forms": int(dup.sum())})
        return pd.concat([forms, d], ignore_index=True)

    # ------------------------------------------------------------------------------------------
    def _npr(self, df, second, npr_ops):
        rng = self.st("npr")
        parts = []
        ev = self._fracture_events(df, second)
        ev["ev_id"] = np.arange(len(ev))
        # index and second hip fracture stays
        adm_day = np.floor(_dt_min(ev["fracture_day"] + ev["hours_to_admission"] / 24))   # = NHFR admission date
        los = np.maximum(1, np.round(np.exp(rng.normal(np.log(5.5), 0.5, len(ev)))))
        death_day = np.floor(ev["fracture_day"] + ev["death_rel"])
        dis = np.minimum(adm_day + los, death_day)
        prim = npr_ops[npr_ops["op_kind"] == "primary"].set_index("ev_id")
        code = np.array([NCSP_PRIMARY.get((o, f if o in ("hemi", "total") else None), "NFJ99")
                         for o, f in zip(ev["operation_type"], ev["stem_fixation"])], dtype=object)
        has_op = ev["ev_id"].isin(prim.index).to_numpy()
        pid = ev["person_id"].to_numpy()
        comorb_codes = self._comorb_secondary(df, rng)
        sec = np.array([comorb_codes.get(p, "") for p in pid], dtype=object)
        newdem = rng.random(len(ev)) < 0.05
        sec = np.where(newdem, np.char.strip(np.char.add(sec.astype(str), " F039")), sec)
        sec = np.where(sec == "", None, sec)
        parts.append(pd.DataFrame({
            "person_id": pid, "hospital": ev["hospital"].to_numpy(), "admission_day": adm_day,
            "discharge_day": dis, "care_level": "inpatient",
            "diag_main": [HIP_ICD[t] for t in ev["fracture_type"]], "diag_secondary": sec,
            "procedures": np.where(has_op, code, None), "_kind": "hip"}))
        # transfers to another hospital of the same region right after discharge (same fracture)
        alive = death_day > dis
        tsel = alive & (rng.random(len(ev)) < 0.05)
        other_h = self._other_hospital(rng, ev["hospital"].to_numpy()[tsel])
        parts.append(pd.DataFrame({
            "person_id": pid[tsel], "hospital": other_h, "admission_day": dis[tsel],
            "discharge_day": np.minimum(dis[tsel] + rng.integers(2, 10, tsel.sum()), death_day[tsel]),
            "care_level": "inpatient", "diag_main": [HIP_ICD[t] for t in ev["fracture_type"][tsel]],
            "diag_secondary": None, "procedures": None, "_kind": "transfer"}))
        # 30-day readmissions
        rsel = alive & (rng.random(len(ev)) < 0.12)
        rday = dis[rsel] + rng.integers(2, 30, rsel.sum())
        parts.append(pd.DataFrame({
            "person_id": pid[rsel], "hospital": ev["hospital"].to_numpy()[rsel], "admission_day": rday,
            "discharge_day": np.minimum(rday + rng.integers(1, 8, rsel.sum()), death_day[rsel]),
            "care_level": "inpatient", "diag_main": _pick(rng, READMIT_ICD, rsel.sum()),
            "diag_secondary": None, "procedures": None, "_kind": "readmission"}))
        # reoperation stays
        re = npr_ops[npr_ops["op_kind"] == "reoperation"]
        rd = np.floor(re["admission_dt"].to_numpy())
        parts.append(pd.DataFrame({
            "person_id": re["person_id"].to_numpy(), "hospital": re["hospital"].to_numpy(), "admission_day": rd,
            "discharge_day": rd + rng.integers(1, 10, len(re)), "care_level": "inpatient",
            "diag_main": [REOP_ICD[r] for r in re["reop_reason"]], "diag_secondary": None,
            "procedures": [REOP_NCSP[r] if o == "other" else NCSP_PRIMARY[(o, f)]
                           for r, o, f in zip(re["reop_reason"], re["operation_type"], re["stem_fixation"])],
            "_kind": "reoperation"}))
        # comorbidity contacts in the 5-year look-back, and some older ones; and again before a second hip
        # fracture (chronic conditions stay under follow-up), so that a second fracture that is the cohort's
        # index (first one before the study period) sees the person's comorbidity in its own look-back
        parts.append(self._comorb_contacts(df, rng))
        parts.append(self._comorb_contacts_before_second(df, second))
        # background contacts (non-Charlson diagnoses) from 8 years before to the end of follow-up
        nb = rng.poisson(2.5, len(df))
        rep = np.repeat(np.arange(len(df)), nb)
        fday = np.floor(df["fracture_day"].to_numpy())[rep]
        last = np.minimum(fday + df["death_t"].to_numpy()[rep], self.end_day - 1)
        first = fday - 2900
        bday = np.floor(first + rng.random(len(rep)) * (last - first))
        bday = np.where((bday >= fday - 1) & (bday <= fday + 20), fday - 30, bday)   # not during the stay
        parts.append(pd.DataFrame({
            "person_id": df["person_id"].to_numpy()[rep], "hospital": df["hospital"].to_numpy()[rep],
            "admission_day": bday, "discharge_day": bday,
            "care_level": core._choice(rng, ["outpatient", "day_patient"], [0.85, 0.15], len(rep)),
            "diag_main": _pick(rng, model.BACKGROUND_CODES, len(rep)), "diag_secondary": None,
            "procedures": None, "_kind": "background"}))
        # other (non-hip) fractures
        to = df["t_other"].to_numpy()
        oday = np.floor(df["fracture_day"].to_numpy() + to)
        osel = (to < df["death_t"].to_numpy()) & (oday < self.end_day) & (to > 30)
        oc = _pick(rng, model.OTHER_FRACTURE_CODES, osel.sum())
        inpat = np.isin(oc, ["S324", "S422", "S820"]) & (rng.random(osel.sum()) < 0.6)
        parts.append(pd.DataFrame({
            "person_id": df["person_id"].to_numpy()[osel], "hospital": df["hospital"].to_numpy()[osel],
            "admission_day": oday[osel], "discharge_day": oday[osel] + np.where(inpat, 4, 0),
            "care_level": np.where(inpat, "inpatient", "outpatient"), "diag_main": oc,
            "diag_secondary": None, "procedures": None, "_kind": "other_fracture"}))
        npr = pd.concat(parts, ignore_index=True)
        dday = pd.Series(np.floor(df["fracture_day"].to_numpy() + df["death_t"].to_numpy()),
                         index=df["person_id"].to_numpy())
        alive_then = npr["admission_day"].to_numpy() <= dday.reindex(npr["person_id"]).to_numpy()
        npr = npr[(npr["admission_day"] < self.end_day) & alive_then].copy()
        npr["discharge_day"] = np.minimum(npr["discharge_day"], self.end_day - 1)
        npr["discharge_day"] = np.maximum(npr["discharge_day"], npr["admission_day"])
        npr["trust"] = npr["hospital"].map(self.trust_of)
        npr = npr.sort_values(["admission_day", "person_id", "diag_main", "_kind", "hospital"],
                              kind="stable").reset_index(drop=True)
        npr["episode_id"] = ids("E", 1, len(npr), 9)
        npr = self._npr_imperfections(npr, rng)
        cols = ["person_id", "episode_id", "hospital", "trust", "admission_day", "discharge_day", "care_level",
                "diag_main", "diag_secondary", "procedures"]
        out = npr[cols].rename(columns={"admission_day": "admission_date", "discharge_day": "discharge_date"})
        return out.sort_values("episode_id", kind="stable").reset_index(drop=True)

    def _npr_imperfections(self, npr, rng):
        if not self.imperfections:
            self.imperf.update({"invalid_icd10_npr": 0, "impossible_dates_npr": 0, "duplicate_npr_rows": 0})
            return npr
        bg = (npr["_kind"] == "background").to_numpy()
        n = len(npr)
        inv = bg & (rng.random(n) < model.P_INVALID_ICD10)
        npr.loc[inv, "diag_main"] = npr.loc[inv, "diag_main"].str.lower()
        imp = bg & ~inv & (rng.random(n) < model.P_IMPOSSIBLE_NPR_DATE)
        npr.loc[imp, "discharge_day"] = npr.loc[imp, "admission_day"] - rng.integers(1, 30, imp.sum())
        dup = ~inv & ~imp & (rng.random(n) < model.P_DUPLICATE_NPR)
        self.imperf.update({"invalid_icd10_npr": int(inv.sum()), "impossible_dates_npr": int(imp.sum()),
                            "duplicate_npr_rows": int(dup.sum())})
        return pd.concat([npr, npr[dup]], ignore_index=True)

    def _other_hospital(self, rng, hosp):
        out = np.empty(len(hosp), dtype=object)
        h = self.hosp
        for code in np.unique(hosp):
            sel = hosp == code
            cand = h[(h["region"] == self.region_of_h[code]) & (h["hospital"] != code)]["hospital"].to_numpy()
            out[sel] = cand[rng.integers(0, len(cand), sel.sum())]
        return out

    def _comorb_secondary(self, df, rng) -> dict:
        """Per person: up to 3 of their comorbidity codes as secondary diagnoses on the fracture stay."""
        codes = np.full(len(df), "", dtype=object)
        for k in model.QUAN_WEIGHTS:
            has = (df[f"cci_{k}"] == 1).to_numpy() & (rng.random(len(df)) < 0.5)
            c = _pick(rng, model.COMORB_CODES[k], has.sum())
            codes[has] = np.char.strip(np.char.add(np.char.add(codes[has].astype(str), " "), c))
        codes = np.array([" ".join(c.split()[:3]) for c in codes], dtype=object)
        return dict(zip(df["person_id"], codes))

    def _comorb_contacts(self, df, rng) -> pd.DataFrame:
        rows = []
        fday = np.floor(df["fracture_day"].to_numpy())
        for k in model.QUAN_WEIGHTS:
            idx = np.flatnonzero(df[f"cci_{k}"].to_numpy() == 1)
            cnt = 1 + rng.poisson(0.7, len(idx))
            rep = np.repeat(idx, cnt)
            day = fday[rep] - rng.integers(14, 1790, len(rep))
            old = idx[rng.random(len(idx)) < 0.3]
            rep = np.concatenate([rep, old])
            day = np.concatenate([day, fday[old] - rng.integers(1830, 3000, len(old))])
            cl = core._choice(rng, ["outpatient", "inpatient", "day_patient"], [0.6, 0.3, 0.1], len(rep))
            rows.append(pd.DataFrame({
                "person_id": df["person_id"].to_numpy()[rep], "hospital": df["hospital"].to_numpy()[rep],
                "admission_day": day, "discharge_day": day + np.where(cl == "inpatient", rng.integers(1, 8, len(rep)), 0),
                "care_level": cl, "diag_main": _pick(rng, model.COMORB_CODES[k], len(rep)),
                "diag_secondary": None, "procedures": None, "_kind": "comorbidity"}))
        out = pd.concat(rows, ignore_index=True)
        # an inpatient comorbidity stay ends at the latest the day before the fracture
        fd = pd.Series(fday, index=df["person_id"].to_numpy()).reindex(out["person_id"]).to_numpy()
        out["discharge_day"] = np.minimum(out["discharge_day"].to_numpy(), fd - 1)
        return out

    def _comorb_contacts_before_second(self, df, second) -> pd.DataFrame:
        """Comorbidity contacts in the 5-year look-back of each second hip fracture (14-1789 days before it),
        only after the first fracture's stay (earlier ones are drawn by `_comorb_contacts`). Own random
        stream, so the other NPR draws are unchanged."""
        rng = self.st("comorbidity_before_second")
        first = pd.Series(np.floor(df["fracture_day"].to_numpy()), index=df["person_id"].to_numpy())
        pid2 = second["person_id"].to_numpy()
        day2 = np.floor(second["fracture_day"].to_numpy())
        first2 = first.reindex(pid2).to_numpy()
        hosp2 = second["hospital"].to_numpy()
        rows = []
        for k in model.QUAN_WEIGHTS:
            has = df.set_index("person_id")[f"cci_{k}"].reindex(pid2).to_numpy() == 1
            idx = np.flatnonzero(has)
            rep = np.repeat(idx, 1 + rng.poisson(0.7, len(idx)))
            day = day2[rep] - rng.integers(14, 1790, len(rep))
            cl = core._choice(rng, ["outpatient", "inpatient", "day_patient"], [0.6, 0.3, 0.1], len(rep))
            dis = np.minimum(day + np.where(cl == "inpatient", rng.integers(1, 8, len(rep)), 0), day2[rep] - 1)
            keep = day > first2[rep] + 20
            rows.append(pd.DataFrame({
                "person_id": pid2[rep][keep], "hospital": hosp2[rep][keep], "admission_day": day[keep],
                "discharge_day": dis[keep], "care_level": cl[keep],
                "diag_main": _pick(rng, model.COMORB_CODES[k], len(rep))[keep],
                "diag_secondary": None, "procedures": None, "_kind": "comorbidity"}))
        return pd.concat(rows, ignore_index=True)

    # ------------------------------------------------------------------------------------------
    def _kpr(self, df):
        rng = self.st("kpr")
        n = len(df)
        f = np.floor(df["fracture_day"].to_numpy())
        death = np.floor(df["fracture_day"].to_numpy() + df["death_t"].to_numpy())
        death = np.where(np.isfinite(death), death, np.inf)
        res = df["residence"].to_numpy()
        pid, muni = df["person_id"].to_numpy(), df["municipality"].to_numpy()
        rows = []

        def add(sel, service, start, end):
            end = np.where(np.isfinite(end), end, np.nan)
            rows.append(pd.DataFrame({"person_id": pid[sel], "service": service, "start_day": start,
                                      "end_day": end, "municipality": muni[sel]}))

        nh = res == "nursing_home"
        add(nh, "long_term_nursing_home", f[nh] - rng.integers(30, 1500, nh.sum()), death[nh])
        hc = res == "home_care"
        hc_start = f[hc] - rng.integers(30, 1200, hc.sum())
        # after the fracture
        los = 6
        alive = death > f + los + 1
        age10 = (df["age"].to_numpy() - 80) / 10
        cog = (df["cognitive"] == "yes").to_numpy()
        p_new_nh = expit(-1.9 + 1.2 * cog + 0.5 * age10 + 0.5 * df["living_alone"].to_numpy())
        new_nh = ~nh & alive & (rng.random(n) < p_new_nh)
        nh_start = f + los + rng.integers(20, 330, n)
        new_nh &= nh_start < death
        add(new_nh, "long_term_nursing_home", nh_start[new_nh], death[new_nh])
        hc_end = np.where(new_nh[hc], nh_start[hc] - 1, death[hc])
        add(hc, "home_nursing", hc_start, hc_end)
        pa = hc & (rng.random(n) < 0.4)
        add(pa, "practical_assistance", f[pa] - rng.integers(30, 900, pa.sum()),
            np.where(new_nh[pa], nh_start[pa] - 1, death[pa]))
        sts = ~nh & alive & (rng.random(n) < 0.35)
        s_start = f + los
        s_end = np.minimum(s_start + rng.integers(10, 45, n), death)
        add(sts, "short_term_stay", s_start[sts], s_end[sts])
        hn = (res == "home") & alive & ~new_nh & (rng.random(n) < 0.30)
        hn_start = np.where(sts, s_end + 1, s_start)
        hn_end = np.where(rng.random(n) < 0.5, hn_start + rng.integers(30, 400, n), death)
        hn &= hn_start < death
        add(hn, "home_nursing", hn_start[hn], np.minimum(hn_end, death)[hn])
        # an old, ended short-term stay for some living at home (history without current services)
        old = (res == "home") & (rng.random(n) < 0.08)
        os_ = f[old] - rng.integers(400, 2000, old.sum())
        add(old, "short_term_stay", os_, os_ + rng.integers(7, 30, old.sum()))
        k = pd.concat(rows, ignore_index=True)
        k = k[k["start_day"] < self.end_day].copy()
        k.loc[k["end_day"] >= self.end_day, "end_day"] = np.nan
        k = k.sort_values(["start_day", "person_id", "service"], kind="stable").reset_index(drop=True)
        k["service_id"] = ids("K", 1, len(k), 9)
        self._kpr_truth = {"p_new_nursing_home_mean": float(p_new_nh[~nh].mean())}
        return k[["person_id", "service_id", "service", "start_day", "end_day", "municipality"]].rename(
            columns={"start_day": "start_date", "end_day": "end_date"})

    def _deaths(self, df):
        rng = self.st("deaths")
        day = np.floor(df["fracture_day"].to_numpy() + df["death_t"].to_numpy())
        sel = day < self.end_day
        t = df["death_t"].to_numpy()[sel]
        early = t < 30
        cause = np.where(early,
                         core._choice(rng, ["W19", "J189", "I219", "S720", "F039", "I509"],
                                      [0.3, 0.2, 0.1, 0.15, 0.1, 0.15], sel.sum()),
                         core._choice(rng, ["I219", "I509", "C349", "C61", "F039", "J189", "I639", "J449", "R54"],
                                      [0.14, 0.15, 0.06, 0.06, 0.2, 0.12, 0.1, 0.08, 0.09], sel.sum()))
        cause = np.where(rng.random(sel.sum()) < 0.01, None, cause)
        out = pd.DataFrame({"person_id": df["person_id"].to_numpy()[sel], "death_date": day[sel],
                            "underlying_cause": cause})
        return out.sort_values("person_id", kind="stable").reset_index(drop=True)

    def _persons(self, df):
        rng = self.st("persons")
        y0 = df["year"].to_numpy()
        dday = df["fracture_day"].to_numpy() + df["death_t"].to_numpy()
        dyear = np.where(np.isfinite(dday),
                         np.nan_to_num(dday, posinf=0).astype("int64").astype("datetime64[D]")
                         .astype("datetime64[Y]").astype(int) + 1970, 9999)
        y1 = np.minimum(dyear, self.years[1])
        cnt = (y1 - y0 + 1).astype(int)
        rep = np.repeat(np.arange(len(df)), cnt)
        year = y0[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        muni = df["municipality"].to_numpy()[rep].astype(object)
        # a few move within their referral area in a later year
        mv = rng.random(len(df)) < 0.02
        move_year = y0 + 1 + rng.integers(0, 5, len(df))
        m = self.munis
        alt = {}
        for _, g in m.groupby("referral_area"):
            codes = g["municipality"].to_numpy()
            for c in codes:
                alt[c] = codes[codes != c] if len(codes) > 1 else codes
        newm = np.array([alt[c][i % len(alt[c])] for c, i in zip(df["municipality"], rng.integers(0, 100, len(df)))])
        moved = mv[rep] & (year >= move_year[rep])
        muni[moved] = newm[rep][moved]
        out = pd.DataFrame({
            "person_id": df["person_id"].to_numpy()[rep], "year": year,
            "birth_year": df["birth_year"].to_numpy()[rep], "birth_month": df["birth_month"].to_numpy()[rep],
            "sex": df["sex"].to_numpy()[rep], "municipality": muni.astype(str),
            "education": df["education"].to_numpy()[rep], "income_quintile": df["income_quintile"].to_numpy()[rep],
            "living_alone": df["living_alone"].to_numpy()[rep], "birth_country": df["birth_country"].to_numpy()[rep],
        })
        return out.sort_values(["person_id", "year"], kind="stable").reset_index(drop=True)

    def _prescriptions(self, df):
        rng = self.st("prescriptions")
        n = len(df)
        f = df["fracture_day"].to_numpy()
        last = np.minimum(f + df["death_t"].to_numpy(), self.end_day - 1)
        t = df["t_med"].to_numpy()
        starters = np.isfinite(t) & (f + t < self.end_day)
        drug = core._choice(rng, list(DRUGS), [v[2] for v in DRUGS.values()], n)
        interval = np.array([DRUGS[d][0] for d in drug])
        persist = rng.exponential(700, n) + 1
        stop = np.minimum(f + t + persist, last)
        k = np.where(starters, np.floor((stop - (f + np.where(starters, t, 0))) / interval) + 1, 0).astype(int)
        k = np.maximum(k, np.where(starters, 1, 0))
        rep = np.repeat(np.arange(n), k)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
        day = np.floor(f[rep] + t[rep] + j * interval[rep] + np.where(j > 0, rng.integers(-5, 6, len(rep)), 0))
        post = pd.DataFrame({"pidx": rep, "day": day, "atc": drug[rep]})
        # users before the fracture (stopped or paused at the fracture)
        pre = df["osteo_med_before"].to_numpy() == 1
        kp = np.where(pre, rng.integers(1, 5, n), 0)
        rp = np.repeat(np.arange(n), kp)
        jp = np.arange(len(rp)) - np.repeat(np.cumsum(kp) - kp, kp)
        pday = np.floor(f[rp]) - 1 - rng.integers(0, 20, len(rp)) - jp * 84
        pre_df = pd.DataFrame({"pidx": rp, "day": pday, "atc": "M05BA04"})
        rx = pd.concat([post, pre_df], ignore_index=True)
        rx = rx[(rx["day"] < self.end_day) & (rx["day"] <= np.floor(last[rx["pidx"]]))]
        rx["person_id"] = df["person_id"].to_numpy()[rx["pidx"]]
        rx["ddd"] = [DRUGS[a][1] for a in rx["atc"]]
        rx = rx.sort_values(["day", "person_id", "atc"], kind="stable").reset_index(drop=True)
        rx["rx_id"] = ids("R", 1, len(rx), 9)
        return rx[["person_id", "rx_id", "day", "atc", "ddd"]].rename(columns={"day": "dispensing_date"})

    # ------------------------------------------------------------------------------------------
    def _truth(self, df, second, effects, intercepts, surv, med, coverage, tables) -> dict:
        hospitals = list(self.hosp["hospital"])
        treatment = {}
        for ind, spec in model.TREATMENT.items():
            u = effects[ind]["u"]
            s2 = spec["sigma"] ** 2
            s2r = float(np.var([u[h] for h in hospitals], ddof=1))
            treatment[ind] = {
                "national_rate_target": {str(y): float(np.interp(y, *spec["target"]))
                                         for y in range(self.years[0], self.years[1] + 1)},
                "national_rate": None,
                "sigma2": s2, "mor": model.mor(s2),
                # the variance the data carry: sample variance (ddof 1) of the effects actually drawn for all
                # hospitals, deviants included (about 1.4 x nominal), and its MOR
                "sigma2_realised": s2r, "mor_realised": model.mor(s2r),
                "hospital_effects": {h: float(u[h]) for h in hospitals},
                "deviant_hospitals": list(effects[ind]["deviant"]),
                "intercept_by_year": {str(k): float(v) for k, v in intercepts.get(ind, {}).items()},
                "patient_log_or": model.PATIENT_LOG_OR.get(ind, {}),
                "eligible": spec["eligible"],
            }
        treatment["osteo_med_12m"]["intercept_by_year"] = {str(k): float(v) for k, v in med["intercepts"].items()}
        treatment["osteo_med_12m"]["region_log_or"] = model.MED_REGION_LOG_OR
        # realised-model national rates: mean of the target over the index fractures' years
        yrs = df["year"].to_numpy()
        for ind, spec in model.TREATMENT.items():
            treatment[ind]["national_rate"] = float(np.mean(np.interp(yrs, *spec["target"])))
        treatment["osteo_med_12m"]["national_rate"] = med["overall_rate"]
        edges = surv["edges"]
        hr = {k: float(np.exp(v)) for k, v in model.LOG_HR.items()}
        nonpos = np.flatnonzero(surv["excess"] <= 0)
        excess_zero = float(edges[nonpos[0]] / 365.25) if len(nonpos) else None
        days_m = np.unique(np.concatenate([np.arange(0, 61), np.arange(60, 366, 7), np.arange(365, 6210, 91)]))
        groups = {"all": surv["net"], "female": surv["net_by_sex"][0], "male": surv["net_by_sex"][1],
                  **{f"age {b}": v for b, v in surv["net_by_age_band"].items()}}
        mortality = {
            "model": ("all-cause hazard h(t|x) = h_pop(age+t, sex, year+t) * F(x) * m(t); F(x) = frailty_mean * "
                      "exp(beta'x - centre), the patient's mortality relative to the general population had the "
                      "fracture not happened (cohort mean frailty_mean); m(t) = 1 + A1 exp(-t/tau1), the "
                      "fracture's own acute excess; h_pop from ssb_lifetables (attained age and calendar year "
                      "advance, years beyond the table use its last year); t = days since the fracture "
                      "date-time; beta'x from the true patient factors (recorded values may be missing or wrong "
                      "by design); age enters only through h_pop; centre = log(mean over index fractures of "
                      "exp(beta'x))."),
            "log_hr": {k: float(v) for k, v in model.LOG_HR.items()},
            "hr": hr,
            "reference_levels": model.MORTALITY_REFERENCE,
            "centre": surv["centre"],
            "mean_exp_lp": surv["mean_exp_lp_centred"],
            "frailty_mean": surv["frailty_mean"],
            "relative_mortality": {"days": days_m.tolist(),
                                   "m": model.relative_mortality(days_m).tolist()},
            "excess_hazard": {"days": edges[:-1].tolist(), "days_end": edges[1:].tolist(),
                              "rate_per_year": surv["excess"].tolist(),
                              "by_group": {g: _excess(edges, v).tolist() for g, v in groups.items() if g != "all"},
                              "definition": "marginal net excess hazard of all index fractures on "
                                            "[days, days_end): -dlog(net survival)/dt, per person-year"},
            "net_survival": {"days": edges.tolist(), "surv": surv["net"].tolist(),
                             "by_sex": {"female": surv["net_by_sex"][0].tolist(),
                                        "male": surv["net_by_sex"][1].tolist()},
                             "by_age_band": {b: v.tolist() for b, v in surv["net_by_age_band"].items()},
                             "definition": "mean over all index fractures of each patient's exact net "
                                           "survival exp(-int h_pop (F(x) m(t) - 1))"},
            "net_survival_by_year": {
                "n": {str(y): n for y, n in surv["n_by_year"].items()},
                "sum_surv": {str(y): v.tolist() for y, v in surv["net_sum_by_year"].items()},
                "definition": "per fracture year: the SUM over that year's index fractures of exact net "
                              "survival at net_survival.days; the truth for any set of years is "
                              "sum(sum_surv) / sum(n) over those years"},
            "excess_zero_years": excess_zero,
            "excess_zero_definition": "first time (years) at which the true marginal net excess hazard of all "
                                      "index fractures is <= 0 (null: positive over the whole follow-up, so "
                                      "net survival never rises)",
            "life_years_lost": _life_years_lost(surv),
            "crude_probability": _crude_probability(surv),
            "conditional_net_survival": {g: _conditional_net(edges, v) for g, v in groups.items()},
            "duration": {g: _durations(edges, v) for g, v in groups.items()},
            "duration_definition": DURATION_TRUTH_DEFINITION,
        }
        r = model.SECOND_HIP_RATE
        truth = {
            "seed": self.seed, "scale": self.scale, "years": list(self.years),
            "rows": {k: int(len(v)) for k, v in tables.items()},
            "imperfections": dict(sorted(self.imperf.items())),
            "mortality": mortality,
            "treatment": treatment,
            "medication": {"overall_rate": med["overall_rate"], "region_rate": med["region_rate"],
                           "definition": "model probability of a first anti-osteoporosis dispensing within "
                                         "365 days of the index fracture if alive; index fractures by "
                                         "residence region"},
            "second_fracture": {
                "hr_medication": model.HR_MEDICATION, "log_hr_medication": float(np.log(model.HR_MEDICATION)),
                "rate_per_year": {f"{s}_{b}": v for (s, b), v in r.items()},
                "other_fracture_rate_per_year": model.OTHER_FRACTURE_RATE,
                "definition": "cause-specific rate of a second hip fracture after the index fracture, by sex "
                              "and time since fracture (0-2 years, 2+ years), times hr_medication from the "
                              "first dispensing after the fracture on; death competes; at most one second "
                              "hip fracture; it does not change mortality",
                "n_second_hip_fractures": int(len(second)),
            },
            "coverage": {"by_hospital": coverage["by_hospital"],
                         "low_coverage_hospitals": coverage["low_coverage_hospitals"],
                         "applied": bool(self.imperfections),
                         "definition": "probability that an NPR hip fracture operation has an NHFR form"},
            "municipal_care": self._kpr_truth,
            "geography": {
                "area_incidence_log_effect": core.area_incidence_effects(self.st),
                "area_incidence_sd": model.AREA_INCIDENCE_SD,
                "cross_area_flow": model.CROSS_AREA_FLOW,
                "definition": "age-sex-specific hip fracture incidence of a referral area's residents is the "
                              "national one times exp(area_incidence_log_effect) (effects centred to mean 0): "
                              "patients are drawn by hospital volume, then a municipality of its catchment by "
                              "population (cross_area_flow of them treated at another hospital of the region); "
                              "ssb_population gives each shipped municipality its expected share of patients "
                              "divided by exp(effect), with one national age structure",
            },
            "npr_coding": {"hip_fracture_icd10": HIP_ICD, "primary_ncsp": {f"{o}|{f}": c for (o, f), c in
                                                                           NCSP_PRIMARY.items()}},
        }
        return truth
