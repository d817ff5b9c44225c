"""The data contract: one table spec per registry source (synthetic extracts and real deliveries alike).

    from hipfrac import schema
    spec = schema.TABLES["nhfr_operations"]
    spec.key                      # primary key columns
    [c.name for c in spec.columns]
    problems = schema.check(df, "nhfr_operations")   # list of human-readable problems ([] = conforms)

Types: string | int | float | date (YYYY-MM-DD) | datetime (YYYY-MM-DD HH:MM). In delivered CSV files
(semicolon-separated, UTF-8) a missing value is an empty field. Codes are given as a list of allowed values
or as a regular expression that the whole value must match. ICD-10 codes are written as NPR delivers them:
upper case without the dot (S72.0 -> "S720"). NCSP procedure codes: 5 characters (e.g. "NFB12").
Multi-valued fields (secondary diagnoses, procedure codes) are space-separated lists of codes.

`docs/data_contract.md` is generated from this module by `markdown()` (see `write_docs()`); a test checks
that the committed page is up to date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DTYPES = ("string", "int", "float", "date", "datetime")

# --- code patterns -------------------------------------------------------------------------------
PERSON_ID = r"P\d{7}"
ICD10 = r"[A-TV-Z]\d{2}[0-9A-Z]{0,2}"
ICD10_LIST = rf"(?:{ICD10})(?: {ICD10})*"
NCSP = r"[A-Z]{3}\d{2}"
NCSP_LIST = rf"(?:{NCSP})(?: {NCSP})*"
ATC = r"[A-Z]\d{2}[A-Z]{2}\d{2}"
MUNICIPALITY = r"\d{4}"
HIP_FRACTURE_ICD10 = ("S720", "S721", "S722")
OSTEOPOROSIS_ATC_PREFIXES = ("M05BA", "M05BB", "M05BX04", "H05AA02")

FRACTURE_TYPES = ["fn_undisplaced", "fn_displaced", "basocervical", "troch_a1", "troch_a2", "troch_a3",
                  "subtroch"]
OPERATION_TYPES = ["screws", "hemi", "total", "shs", "short_nail", "long_nail", "other"]
REOPERATION_REASONS = ["infection", "dislocation", "periprosthetic_fracture", "fixation_failure",
                       "nonunion", "avascular_necrosis", "implant_removal", "other"]
KPR_SERVICES = ["home_nursing", "practical_assistance", "short_term_stay", "long_term_nursing_home"]
CARE_LEVELS = ["inpatient", "day_patient", "outpatient"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column: name, dtype (string/int/float/date/datetime), required (no missing values allowed),
    codes (allowed values) or pattern (regex the whole value matches), value range, unit, description."""

    name: str
    dtype: str
    description: str
    required: bool = True
    codes: tuple | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    unit: str | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name}: dtype {self.dtype!r} not one of {DTYPES}")


@dataclass(frozen=True)
class TableSpec:
    """One source table: name, description, columns, primary key (column names), references to others."""

    name: str
    description: str
    columns: list[ColumnSpec]
    key: tuple[str, ...]
    notes: str = ""
    references: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


def _c(name, dtype, description, **kw) -> ColumnSpec:
    if "codes" in kw and kw["codes"] is not None:
        kw["codes"] = tuple(kw["codes"])
    return ColumnSpec(name, dtype, description, **kw)


def _hospital_codes() -> tuple:
    from hipfrac import geography

    return tuple(geography.hospitals()["hospital"])


def _trusts() -> tuple:
    from hipfrac import geography

    return tuple(sorted(set(geography.hospitals()["trust"])))


PERSON = _c("person_id", "string", "Pseudonymous person id, the linkage key across all sources.",
            pattern=PERSON_ID)

TABLES: dict[str, TableSpec] = {
    "nhfr_operations": TableSpec(
        name="nhfr_operations",
        description="Norwegian Hip Fracture Register: one row per operation form (primary operations and "
                    "reoperations), filled in by the surgeon.",
        key=("op_id",),
        references={"primary_op_id": "nhfr_operations.op_id", "person_id": "ssb_persons.person_id"},
        columns=[
            PERSON,
            _c("op_id", "string", "Operation (form) id.", pattern=r"O\d{8}"),
            _c("hospital", "string", "Code of the operating hospital (see geography.hospitals()).",
               codes=_hospital_codes()),
            _c("fracture_datetime", "datetime", "Date and time of the fracture (injury); empty on "
               "reoperations.",
               required=False),
            _c("admission_datetime", "datetime", "Date and time of admission to the operating hospital."),
            _c("surgery_datetime", "datetime", "Date and time the operation started."),
            _c("side", "string", "Side of the operated hip.", codes=["left", "right"]),
            _c("fracture_type", "string", "Fracture type: femoral neck undisplaced (Garden 1-2) or displaced "
               "(Garden 3-4), basocervical, trochanteric AO/OTA A1/A2/A3, subtrochanteric. Empty on "
               "reoperations.", required=False, codes=FRACTURE_TYPES),
            _c("asa", "int", "ASA physical status class.", required=False, min=1, max=5),
            _c("cognitive", "string", "Cognitive impairment.", required=False,
               codes=["no", "yes", "uncertain"]),
            _c("operation_type", "string", "Operation: screws/pins, hemiarthroplasty, total arthroplasty, "
               "sliding hip screw, short or long intramedullary nail, other.", codes=OPERATION_TYPES),
            _c("stem_fixation", "string", "Stem fixation (arthroplasty only).", required=False,
               codes=["cemented", "uncemented"]),
            _c("anaesthesia", "string", "Anaesthesia.", required=False, codes=["spinal", "general", "other"]),
            _c("nerve_block", "int", "1 = preoperative peripheral nerve block, 0 = not.", required=False,
               codes=[0, 1]),
            _c("op_kind", "string", "Primary operation for a new fracture, or reoperation.",
               codes=["primary", "reoperation"]),
            _c("reop_reason", "string", "Reason for reoperation (reoperations only).", required=False,
               codes=REOPERATION_REASONS),
            _c("primary_op_id", "string", "op_id of the primary operation a reoperation belongs to.",
               required=False, pattern=r"O\d{8}"),
        ]),
    "npr_episodes": TableSpec(
        name="npr_episodes",
        description="Norwegian Patient Registry: specialist-care episodes (admissions, day and outpatient "
                    "contacts) with ICD-10 diagnoses and NCSP procedures. Holds the hip fracture stays, "
                    "earlier contacts (comorbidity look-back), readmissions and later fractures.",
        key=("episode_id",),
        notes="Hip fracture stay: main diagnosis S720, S721 or S722; hip fracture surgery: NCSP codes "
              "starting NFB (arthroplasty) or NFJ (fixation).",
        columns=[
            PERSON,
            _c("episode_id", "string", "Episode id.", pattern=r"E\d{9}"),
            _c("hospital", "string", "Hospital code.", codes=_hospital_codes()),
            _c("trust", "string", "Hospital trust of the hospital.", codes=_trusts()),
            _c("admission_date", "date", "Admission (or contact) date."),
            _c("discharge_date", "date", "Discharge date (equal to admission for day and outpatient "
               "contacts)."),
            _c("care_level", "string", "Level of care.", codes=CARE_LEVELS),
            _c("diag_main", "string", "Main diagnosis, ICD-10 without dot.", pattern=ICD10),
            _c("diag_secondary", "string", "Secondary diagnoses, ICD-10 without dot, space-separated.",
               required=False, pattern=ICD10_LIST),
            _c("procedures", "string", "NCSP procedure codes, space-separated.", required=False,
               pattern=NCSP_LIST),
        ]),
    "kpr_services": TableSpec(
        name="kpr_services",
        description="Municipal patient and user registry (KPR): municipal health and care services with "
                    "start and end dates.",
        key=("service_id",),
        columns=[
            PERSON,
            _c("service_id", "string", "Service period id.", pattern=r"K\d{9}"),
            _c("service", "string", "Service type.", codes=KPR_SERVICES),
            _c("start_date", "date", "First day of the service period."),
            _c("end_date", "date", "Last day of the service period; empty if ongoing at extraction.",
               required=False),
            _c("municipality", "string", "Municipality providing the service (4 digits).",
               pattern=MUNICIPALITY),
        ]),
    "death_registry": TableSpec(
        name="death_registry",
        description="Cause of Death Registry: one row per deceased person.",
        key=("person_id",),
        columns=[
            PERSON,
            _c("death_date", "date", "Date of death."),
            _c("underlying_cause", "string", "Underlying cause of death, ICD-10 without dot.",
               required=False, pattern=ICD10),
        ]),
    "ssb_persons": TableSpec(
        name="ssb_persons",
        description="Statistics Norway person data: one row per person and calendar year (from the year of "
                    "the first registered hip fracture to the year of death or the last year).",
        key=("person_id", "year"),
        columns=[
            PERSON,
            _c("year", "int", "Calendar year the residence and socioeconomic data refer to (status on 1 "
               "January).", min=1990, max=2100),
            _c("birth_year", "int", "Year of birth.", min=1890, max=2100),
            _c("birth_month", "int", "Month of birth.", min=1, max=12),
            _c("sex", "string", "Sex.", codes=["female", "male"]),
            _c("municipality", "string", "Residence municipality (4 digits).", pattern=MUNICIPALITY),
            _c("education", "string", "Highest completed education: low = compulsory, medium = upper "
               "secondary, high = tertiary.", required=False, codes=["low", "medium", "high"]),
            _c("income_quintile", "int", "Household equivalised income quintile, 1 = lowest.",
               required=False, min=1, max=5),
            _c("living_alone", "int", "1 = one-person household, 0 = not.", required=False, codes=[0, 1]),
            _c("birth_country", "string", "Country of birth group.", required=False,
               codes=["norway", "nordic_europe", "other"]),
        ]),
    "ssb_population": TableSpec(
        name="ssb_population",
        description="Statistics Norway population on 1 January by year, municipality, sex and 5-year age "
                    "band (denominators for incidence and standardisation).",
        key=("year", "municipality", "sex", "age_band"),
        columns=[
            _c("year", "int", "Calendar year.", min=1990, max=2100),
            _c("municipality", "string", "Municipality (4 digits).", pattern=MUNICIPALITY),
            _c("sex", "string", "Sex.", codes=["female", "male"]),
            _c("age_band", "string", "5-year age band 0-4, 5-9, ..., 90-94, 95+.",
               codes=[f"{a}-{a + 4}" for a in range(0, 95, 5)] + ["95+"]),
            _c("age_from", "int", "First year of age of the band.", min=0, max=95, unit="years"),
            _c("population", "int", "Number of residents.", min=0, unit="persons"),
        ]),
    "ssb_lifetables": TableSpec(
        name="ssb_lifetables",
        description="Statistics Norway life table: mortality rate by calendar year, sex and single year of "
                    "age (105 = 105 and older). Used as population (expected) mortality.",
        key=("year", "sex", "age"),
        columns=[
            _c("year", "int", "Calendar year.", min=1990, max=2100),
            _c("sex", "string", "Sex.", codes=["female", "male"]),
            _c("age", "int", "Age in completed years (105 = 105+).", min=0, max=105, unit="years"),
            _c("mortality_rate", "float", "Central death rate (hazard).", min=0, unit="per person-year"),
            _c("qx", "float", "Probability of dying within one year at this age.", min=0, max=1),
        ]),
    "prescriptions": TableSpec(
        name="prescriptions",
        description="Norwegian Prescription Database: dispensings (the synthetic extract holds "
                    "anti-osteoporosis drugs: M05BA, M05BB, M05BX04, H05AA02).",
        key=("rx_id",),
        columns=[
            PERSON,
            _c("rx_id", "string", "Dispensing id.", pattern=r"R\d{9}"),
            _c("dispensing_date", "date", "Date the pharmacy dispensed the drug."),
            _c("atc", "string", "ATC code (level 5).", pattern=ATC),
            _c("ddd", "float", "Defined daily doses dispensed.", min=0, unit="DDD"),
        ]),
}


# --- checking ------------------------------------------------------------------------------------
def _as_text(s: pd.Series) -> pd.Series:
    return s.astype("string")


def check(df: pd.DataFrame, table: str, *, max_examples: int = 3) -> list[str]:
    """Problems of a DataFrame against the contract of `table` ([] = conforms).

    Checks: every contract column present (extra columns are reported), required columns without missing
    values, values parse as their dtype, codes / patterns / ranges respected, primary key unique.
    Values may be strings as read from CSV or typed (pandas dtypes).
    """
    spec = TABLES[table]
    problems: list[str] = []
    missing = [c for c in spec.names if c not in df.columns]
    if missing:
        problems.append(f"{table}: missing columns {missing}")
    extra = [c for c in df.columns if c not in spec.names]
    if extra:
        problems.append(f"{table}: unexpected columns {extra}")
    for col in spec.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        txt = _as_text(s)
        na = s.isna() | (txt.str.strip() == "").fillna(False)
        if col.required and na.any():
            problems.append(f"{table}.{col.name}: {int(na.sum())} missing values in a required column")
        vals = s[~na]
        if vals.empty:
            continue
        bad = pd.Series(False, index=vals.index)
        if col.dtype in ("int", "float"):
            num = pd.to_numeric(vals, errors="coerce")
            bad |= num.isna()
            if col.dtype == "int":
                bad |= (num % 1 != 0).fillna(False)
            if col.min is not None:
                bad |= (num < col.min).fillna(False)
            if col.max is not None:
                bad |= (num > col.max).fillna(False)
            if col.codes is not None:
                bad |= ~num.isin(col.codes)
        elif col.dtype in ("date", "datetime"):
            fmt = "%Y-%m-%d" if col.dtype == "date" else "%Y-%m-%d %H:%M"
            if pd.api.types.is_datetime64_any_dtype(vals):
                parsed = vals
            else:
                parsed = pd.to_datetime(_as_text(vals), format=fmt, errors="coerce")
            bad |= parsed.isna()
        else:
            t = _as_text(vals)
            if col.codes is not None:
                bad |= ~t.isin([str(c) for c in col.codes])
            if col.pattern is not None:
                bad |= ~t.str.fullmatch(col.pattern).fillna(False)
        if bad.any():
            ex = ", ".join(repr(v) for v in vals[bad].astype(str).unique()[:max_examples])
            problems.append(f"{table}.{col.name}: {int(bad.sum())} invalid values (e.g. {ex})")
    if not missing or not set(spec.key) & set(missing):
        keycols = [k for k in spec.key if k in df.columns]
        if keycols and df.duplicated(keycols).any():
            problems.append(f"{table}: {int(df.duplicated(keycols).sum())} duplicate keys {list(spec.key)}")
    return problems


# --- documentation -------------------------------------------------------------------------------
def _codes_text(c: ColumnSpec) -> str:
    parts = []
    if c.codes is not None:
        codes = [str(x) for x in c.codes]
        parts.append(", ".join(f"`{x}`" for x in codes) if len(codes) <= 12
                     else f"{len(codes)} codes: " + ", ".join(f"`{x}`" for x in codes[:6]) + ", ...")
    if c.pattern is not None:
        parts.append(f"regex `{c.pattern}`".replace("|", "\\|"))
    if c.min is not None or c.max is not None:
        lo = "" if c.min is None else f"{c.min:g}"
        hi = "" if c.max is None else f"{c.max:g}"
        parts.append(f"range [{lo}, {hi}]")
    return "; ".join(parts)


def markdown() -> str:
    """The data contract as a Markdown page (the content of docs/data_contract.md)."""
    lines = [
        "# Data contract of the registry extracts",
        "",
        "<!-- Generated from lib/hipfrac/schema.py by `python -c \"from hipfrac import schema; "
        "schema.write_docs()\"`. Do not edit by hand; tests/test_schema.py checks it is up to date. -->",
        "",
        "Every extract, synthetic or real, must meet this contract (after renaming columns with "
        "`sources.<name>.rename` and recoding values, e.g. RESH ids to hospital codes, with "
        "`sources.<name>.recode` in the params file). Files are semicolon-separated UTF-8 CSV (or parquet); "
        "a missing value is an empty field. Dates are `YYYY-MM-DD`, date-times `YYYY-MM-DD HH:MM`. "
        "ICD-10 codes are written without the dot (S72.0 -> `S720`); lists of codes are space-separated. "
        "Check a delivery with `hipfrac.schema.check(df, name)`.",
        "",
        "Reference geography (shipped, not delivered) is in `lib/hipfrac/data/` and `hipfrac.geography`: "
        "municipality -> referral area (19 orthopaedic areas, Oslo merged) -> trust -> region (4 RHF); "
        "hospital -> trust -> region.",
        "",
    ]
    for spec in TABLES.values():
        lines += [f"## {spec.name}", "", spec.description, "",
                  f"Primary key: {', '.join(f'`{k}`' for k in spec.key)}.", ""]
        if spec.notes:
            lines += [spec.notes, ""]
        lines += ["| column | type | required | unit | allowed values | description |",
                  "|---|---|---|---|---|---|"]
        for c in spec.columns:
            lines.append(f"| `{c.name}` | {c.dtype} | {'yes' if c.required else 'no'} | {c.unit or ''} | "
                         f"{_codes_text(c)} | {c.description} |")
        lines.append("")
    return "\n".join(lines)


def docs_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "data_contract.md"


def write_docs(path: str | Path | None = None) -> Path:
    """Write the Markdown page (default docs/data_contract.md)."""
    p = Path(path) if path else docs_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(markdown(), encoding="utf-8")
    return p


def _selfcheck() -> None:
    for name, spec in TABLES.items():
        for k in spec.key:
            spec.column(k)
        for c in spec.columns:
            if c.pattern is not None:
                re.compile(c.pattern)
        if len(set(spec.names)) != len(spec.names):
            raise ValueError(f"{name}: duplicate column names")


_selfcheck()
