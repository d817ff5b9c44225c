"""Small hand-made registry extracts (all 8 sources, contract columns) with known answers, for the
ingestion, validation and cohort tests. Every person is designed to test one rule; see PERSONS.

    frames = base_frames()                 # dict source -> DataFrame (strings, as delivered)
    params = write_run(tmp_path, frames)   # writes CSVs + a params file; returns loaded params
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

NHFR_COLS = ["person_id", "op_id", "hospital", "fracture_datetime", "admission_datetime", "surgery_datetime",
             "side", "fracture_type", "asa", "cognitive", "operation_type", "stem_fixation", "anaesthesia",
             "nerve_block", "op_kind", "reop_reason", "primary_op_id"]
NPR_COLS = ["person_id", "episode_id", "hospital", "trust", "admission_date", "discharge_date", "care_level",
            "diag_main", "diag_secondary", "procedures"]

# person: (sex, birth_year, birth_month, municipality) ; None = not in SSB
PERSONS = {
    "P0000001": ("female", 1935, 3, "0301"),   # both; Charlson chf+diabwc; home care; osteo med at 52 days; dies
    "P0000002": ("male", 1945, 7, "0301"),     # nhfr_only; A1 with SHS; 50 h to surgery
    "P0000003": ("female", 1930, 1, "0301"),   # npr_only (operated)
    "P0000004": ("female", 1970, 5, "0301"),   # age 45: excluded (age)
    "P0000005": ("female", 1932, 2, "0301"),   # fractures 2014 (left) and 2018 (right): second hip fracture
    "P0000006": ("male", 1931, 6, "0301"),     # NPR hip fracture 2010: washout
    "P0000007": ("female", 1933, 8, "0301"),   # pathological (M844 in the index stay)
    "P0000009": ("female", 1934, 9, "0301"),   # fracture 2012: outside the period
    "P0000010": ("female", 1928, 4, "0301"),   # nursing home before the fracture
    "P0000011": ("male", 1940, 1, "9999"),     # municipality not in Norway's geography: non-resident
    # P0000008 is not in SSB
}
HOSP, TRUST = "ULLEVAL", "Oslo universitetssykehus"


def _nhfr(pid, op, frac, adm, srg, side="left", ftype="fn_displaced", asa="3", cog="no", optype="hemi",
          stem="cemented", kind="primary", reop="", prim="", hosp=HOSP):
    return dict(person_id=pid, op_id=op, hospital=hosp, fracture_datetime=frac, admission_datetime=adm,
                surgery_datetime=srg, side=side, fracture_type=ftype, asa=asa, cognitive=cog,
                operation_type=optype, stem_fixation=stem, anaesthesia="spinal", nerve_block="1", op_kind=kind,
                reop_reason=reop, primary_op_id=prim)


def _npr(pid, ep, adm, dis, main, sec="", proc="", hosp=HOSP, trust=TRUST, level="inpatient"):
    return dict(person_id=pid, episode_id=ep, hospital=hosp, trust=trust, admission_date=adm,
                discharge_date=dis, care_level=level, diag_main=main, diag_secondary=sec, procedures=proc)


def base_frames() -> dict[str, pd.DataFrame]:
    nhfr = [
        _nhfr("P0000001", "O00000001", "2015-06-10 10:00", "2015-06-10 12:00", "2015-06-11 09:00"),
        _nhfr("P0000001", "O00000090", "", "2015-09-01 08:00", "2015-09-01 12:00", ftype="", optype="total",
              stem="cemented", kind="reoperation", reop="dislocation", prim="O00000001"),
        _nhfr("P0000002", "O00000002", "2016-03-01 20:00", "2016-03-01 22:00", "2016-03-03 22:00",
              ftype="troch_a1", optype="shs", stem="", asa="2"),
        _nhfr("P0000004", "O00000004", "2015-05-05 10:00", "2015-05-05 12:00", "2015-05-06 10:00"),
        _nhfr("P0000005", "O00000005", "2014-02-02 10:00", "2014-02-02 11:00", "2014-02-02 20:00",
              ftype="troch_a3", optype="short_nail", stem=""),
        _nhfr("P0000005", "O00000015", "2018-02-02 10:00", "2018-02-02 11:00", "2018-02-02 20:00", side="right",
              ftype="fn_undisplaced", optype="screws", stem=""),
        _nhfr("P0000006", "O00000006", "2014-07-07 10:00", "2014-07-07 11:00", "2014-07-07 20:00"),
        _nhfr("P0000007", "O00000007", "2017-01-10 10:00", "2017-01-10 11:00", "2017-01-11 10:00"),
        _nhfr("P0000008", "O00000008", "2017-01-10 10:00", "2017-01-10 11:00", "2017-01-11 10:00"),
        _nhfr("P0000009", "O00000009", "2012-04-04 10:00", "2012-04-04 11:00", "2012-04-04 20:00"),
        _nhfr("P0000010", "O00000010", "2019-10-10 10:00", "2019-10-10 11:00", "2019-10-11 10:00", asa="4"),
        _nhfr("P0000011", "O00000011", "2019-10-10 10:00", "2019-10-10 11:00", "2019-10-11 10:00"),
    ]
    npr = [
        _npr("P0000001", "E000000001", "2013-02-01", "2013-02-05", "I509", "E112"),
        _npr("P0000001", "E000000002", "2015-06-10", "2015-06-20", "S720", "I509", "NFB02"),
        _npr("P0000001", "E000000003", "2009-02-01", "2009-02-01", "C509", level="outpatient"),  # > 5 y before
        _npr("P0000003", "E000000004", "2016-08-08", "2016-08-15", "S721", "", "NFJ52"),
        _npr("P0000005", "E000000005", "2014-02-02", "2014-02-10", "S721", "", "NFJ52"),
        _npr("P0000005", "E000000006", "2018-02-02", "2018-02-10", "S720", "", "NFJ02"),
        _npr("P0000005", "E000000016", "2016-05-05", "2016-05-06", "S525", "", ""),          # wrist fracture
        _npr("P0000006", "E000000007", "2010-03-03", "2010-03-10", "S720", "", "NFB02"),
        _npr("P0000006", "E000000008", "2014-07-07", "2014-07-15", "S720", "", "NFB02"),
        _npr("P0000007", "E000000009", "2017-01-10", "2017-01-20", "S720", "M844 C795", "NFB02"),
        _npr("P0000010", "E000000010", "2019-10-10", "2019-10-15", "S721", "F03", "NFJ52"),
        _npr("P0000010", "E000000011", "2019-01-10", "2019-01-12", "F03", ""),
    ]
    ssb = []
    for pid, (sex, by, bm, muni) in PERSONS.items():
        for year in range(2008, 2025):
            ssb.append(dict(person_id=pid, year=str(year), birth_year=str(by), birth_month=str(bm), sex=sex,
                            municipality=muni, education="medium", income_quintile="3", living_alone="1",
                            birth_country="norway"))
    kpr = [
        dict(person_id="P0000001", service_id="K000000001", service="home_nursing", start_date="2014-01-01",
             end_date="", municipality="0301"),
        dict(person_id="P0000010", service_id="K000000002", service="long_term_nursing_home",
             start_date="2018-01-01", end_date="", municipality="0301"),
        dict(person_id="P0000002", service_id="K000000003", service="long_term_nursing_home",
             start_date="2016-05-01", end_date="2016-12-31", municipality="0301"),
    ]
    death = [dict(person_id="P0000001", death_date="2016-01-01", underlying_cause="I509"),
             dict(person_id="P0000010", death_date="2019-10-20", underlying_cause="S721")]
    rx = [dict(person_id="P0000001", rx_id="R000000001", dispensing_date="2015-08-01", atc="M05BA04", ddd="90"),
          dict(person_id="P0000001", rx_id="R000000002", dispensing_date="2015-11-01", atc="M05BA04", ddd="90"),
          dict(person_id="P0000002", rx_id="R000000003", dispensing_date="2015-06-01", atc="M05BX04", ddd="180"),
          dict(person_id="P0000002", rx_id="R000000004", dispensing_date="2016-12-01", atc="A10BA02", ddd="100")]
    pop = []
    for year in range(2012, 2025):
        for sex in ("female", "male"):
            for a in range(0, 95, 5):
                pop.append(dict(year=str(year), municipality="0301", sex=sex, age_band=f"{a}-{a + 4}",
                                age_from=str(a), population=str(1000 + a)))
            pop.append(dict(year=str(year), municipality="0301", sex=sex, age_band="95+", age_from="95",
                            population="50"))
    life = [dict(year=str(y), sex=s, age=str(a), mortality_rate="0.01", qx="0.00995")
            for y in range(2012, 2025) for s in ("female", "male") for a in range(0, 106)]
    return {"nhfr_operations": pd.DataFrame(nhfr, columns=NHFR_COLS), "npr_episodes": pd.DataFrame(npr, columns=NPR_COLS),
            "kpr_services": pd.DataFrame(kpr), "death_registry": pd.DataFrame(death), "ssb_persons": pd.DataFrame(ssb),
            "ssb_population": pd.DataFrame(pop), "ssb_lifetables": pd.DataFrame(life), "prescriptions": pd.DataFrame(rx)}


def write_run(tmp: Path, frames: dict[str, pd.DataFrame], cohort: dict | None = None, sources: dict | None = None,
              write: bool = True):
    """Write the frames as `;`-separated UTF-8 CSV in tmp/extracts and a params file; return loaded params."""
    from hipfrac.params import load

    ext = Path(tmp) / "extracts"
    ext.mkdir(parents=True, exist_ok=True)
    if write:
        for name, df in frames.items():
            df.to_csv(ext / f"{name}.csv", sep=";", index=False)
    spec = {"run": "handmade", "allow_outside_project": True, "synth": {"out_dir": str(ext), "format": "csv"},
            "cohort": {"out_dir": str(Path(tmp) / "cohort"), "period_start": "2013-01-01",
                       "period_end": "2023-12-31", "end_of_followup": "2024-12-31", **(cohort or {})}}
    if sources:
        spec["sources"] = sources
    p = Path(tmp) / "handmade.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load(p)
