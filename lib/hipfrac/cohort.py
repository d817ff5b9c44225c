"""The analysis cohort: registry extracts -> validation -> DuckDB linkage -> one row per index fracture.

    from hipfrac import cohort
    path = cohort.build(params)     # also: python -m hipfrac cohort --params params/default.yaml
    df = cohort.load(params)        # the cached cohort.parquet (never rebuilt here)

Steps (all heavy work in DuckDB SQL, out of core, so national NPR extracts fit on one machine):
1. Read every source named in `params.sources` (`hipfrac.ingest`) and validate it against the data
   contract (`hipfrac.schema`, `hipfrac.validate`): fatal problems stop the build with a message naming
   file, column and rows; rows with warnings are kept, cleaned (bad value -> missing) or dropped, each
   drop counted with its reason (drops.parquet).
2. Fracture events. NPR stays with main diagnosis S72.0-S72.2 are grouped per person into fractures: each
   stay with hip fracture surgery (NCSP NFB*/NFJ*) is a fracture; a stay without it belongs to the last
   operated stay less than `new_fracture_gap_days` before it, else to an operated stay at most
   `match_window_days` after it; remaining stays form fractures of their own (a new one starting
   `new_fracture_gap_days` or more after the previous stay). Each NHFR
   primary operation is matched to the NPR fracture of the same person starting within
   `match_window_days` of the NHFR admission (closest, one-to-one): source = both / nhfr_only / npr_only.
3. Coverage of NHFR against NPR per hospital and year (coverage.parquet).
4. Flowchart: exclusions in a fixed order, each counted (in = kept + excluded at every step).
5. Derived variables (see lib/hipfrac/data/cohort_dictionary.yaml and docs/cohort_dictionary.md).

Dates: day-level differences are in days; `followup_days` adds 0.5 to same-day deaths.

Companion files in `params.cohort_dir`: cohort.parquet, flowchart.parquet, validation_report.parquet,
validation_report.txt, drops.parquet, coverage.parquet, population.parquet (SSB population aged 50+ by
year, referral area, sex and 5-year age band: incidence denominators), incidence_events.parquet (index
fractures by year, area, sex and age band with NPR-only fractures included: incidence numerators),
extracts.parquet (rows read, dropped
and kept per source: n_read = n_dropped + n_kept), fingerprint.json.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from hipfrac import charlson, geography, ingest, safepaths, schema
from hipfrac.params.cohort import ICD10_PREFIX
from hipfrac.validate import DropLog, Problem, ValidationReport, Validator

__all__ = ["CohortNotBuiltError", "FLOWCHART_COLUMNS", "build", "dictionary", "dictionary_markdown",
           "fingerprint", "load", "load_companion", "write_dictionary_docs"]

HIP_CODES = schema.HIP_FRACTURE_ICD10
OSTEO_ATC = schema.OSTEOPOROSIS_ATC_PREFIXES
# Later fractures (any_new_fracture): ICD-10 main diagnosis prefixes (no dot)
NEW_FRACTURE_PREFIXES = ("S222", "S223", "S224", "S32", "S42", "S52", "S72", "T08")
FLOWCHART_COLUMNS = ["step", "label", "n_in", "n_excluded", "n_out"]

# Columns whose missing value makes a record unusable (dropped, counted); other required columns are
# kept with the value missing (reported as a warning).
DROP_IF_MISSING = {
    "nhfr_operations": ["person_id", "op_id", "op_kind"],
    "npr_episodes": ["person_id", "episode_id", "admission_date", "diag_main"],
    "kpr_services": ["person_id", "service_id", "service", "start_date"],
    "death_registry": ["person_id", "death_date"],
    "ssb_persons": ["person_id", "year"],
    "ssb_population": ["year", "municipality", "sex", "age_band", "population"],
    "ssb_lifetables": ["year", "sex", "age", "mortality_rate"],
    "prescriptions": ["person_id", "rx_id", "dispensing_date", "atc"],
}
# Columns whose bad codes make the record unusable (dropped) rather than set missing
DROP_IF_BAD = {"nhfr_operations": ["person_id", "op_id", "op_kind"],
               "npr_episodes": ["person_id", "episode_id"],
               "prescriptions": ["person_id"], "kpr_services": ["person_id", "service"],
               "death_registry": ["person_id"], "ssb_persons": ["person_id"]}
# Only these sources are needed to build the cohort (lifetables are used by the survival notebooks)
COHORT_SOURCES = ("nhfr_operations", "npr_episodes", "kpr_services", "death_registry", "ssb_persons",
                  "ssb_population", "prescriptions")


class CohortNotBuiltError(FileNotFoundError):
    """The cached cohort does not exist (or is incomplete): run `make cohort`."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ================================================================================================
# dictionary
# ================================================================================================
@lru_cache(maxsize=1)
def _dictionary_text() -> str:
    return resources.files("hipfrac").joinpath("data/cohort_dictionary.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _dictionary() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(_dictionary_text(), Loader=loader)["columns"]


def dictionary() -> dict:
    """The cohort data dictionary (lib/hipfrac/data/cohort_dictionary.yaml): column -> spec dict."""
    return copy.deepcopy(_dictionary())


def dictionary_markdown() -> str:
    """The data dictionary page (docs/cohort_dictionary.md) generated from the YAML."""
    cols = dictionary()
    lines = ["# Analysis cohort: data dictionary", "",
             "<!-- Generated from lib/hipfrac/data/cohort_dictionary.yaml by "
             "`python -c \"from hipfrac import cohort; cohort.write_dictionary_docs()\"`. Do not edit by "
             "hand; tests/test_cohort.py checks it is current. -->", "",
             "`data/cohort/<run>/cohort.parquet` holds one row per patient's index hip fracture (the first "
             "in the study period, after the exclusions of the flowchart). Build it with `make cohort` "
             "(or `python -m hipfrac cohort --params params/<run>.yaml`); load it with "
             "`hipfrac.cohort.load(params)`. Missing values are null; categorical codes are lower-case "
             "strings. Times are counted from `fracture_date`.", "",
             "| column | type | nullable | unit | codes | definition |", "|---|---|---|---|---|---|"]
    for name, spec in cols.items():
        codes = ", ".join(f"`{c}`" for c in spec.get("codes", []) or [])
        definition = str(spec.get("definition", "")).replace("|", "\\|")
        lines.append(f"| `{name}` | {spec['type']} | {'yes' if spec.get('nullable') else 'no'} | "
                     f"{spec.get('unit', '')} | {codes} | {definition} |")
    lines += ["", "Companion files in the same directory: `flowchart.parquet` (exclusion steps: n_in = "
              "n_excluded + n_out), `validation_report.parquet` / `.txt` (problems found in the extracts), "
              "`drops.parquet` (every removed record with its reason), `coverage.parquet` (NHFR coverage "
              "against NPR per hospital and year), `population.parquet` (SSB population aged 50+ by year, "
              "referral area, sex and 5-year age band), `incidence_events.parquet` (index fractures by year, area "
              "of residence, sex and age band, NPR-only fractures included: incidence numerators), `extracts.parquet` (rows read, dropped and kept per source).", ""]
    return "\n".join(lines)


def dictionary_docs_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "cohort_dictionary.md"


def write_dictionary_docs(path: str | Path | None = None) -> Path:
    p = Path(path) if path else dictionary_docs_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dictionary_markdown(), encoding="utf-8")
    return p


# ================================================================================================
# cache
# ================================================================================================
_CODE_FILES = ("cohort.py", "ingest.py", "validate.py", "charlson.py", "schema.py", "geography.py",
               "data/cohort_dictionary.yaml", "data/charlson_icd10.yaml", "data/hospitals.csv",
               "data/municipalities.csv", "data/referral_areas.csv", "params/cohort.py", "params/sources.py")


def fingerprint(params) -> dict:
    """What the cohort depends on: cohort and sources params, each input file's size and mtime, and a hash
    of the package code that builds it."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in _CODE_FILES:
        f = pkg / rel
        if f.exists():
            h.update(rel.encode())
            h.update(f.read_bytes())
    files = {}
    for name in COHORT_SOURCES:
        sf = params.source_file(name)
        p = Path(sf.path)
        st = p.stat() if p.exists() else None
        files[name] = {"path": str(p), "size": st.st_size if st else None,
                       "mtime_ns": st.st_mtime_ns if st else None}
        for col, m in sf.recode.items():          # recode map files: a changed map rebuilds the cohort
            if isinstance(m, str):
                mp = Path(m)
                mst = mp.stat() if mp.exists() else None
                files[f"{name}.recode.{col}"] = {"path": str(mp), "size": mst.st_size if mst else None,
                                                 "mtime_ns": mst.st_mtime_ns if mst else None}
    return {"cohort": json.loads(params.cohort.model_dump_json()),
            "sources": json.loads(params.sources.model_dump_json()),
            "synth_format": params.synth.format, "files": files, "code": h.hexdigest()[:16]}


COMPANIONS = ("flowchart", "validation_report", "drops", "coverage", "population", "incidence_events", "extracts")


def _is_current(params) -> bool:
    d = params.cohort_dir
    fp = d / "fingerprint.json"
    if not fp.exists() or not (d / "cohort.parquet").exists():
        return False
    if not all((d / f"{c}.parquet").exists() for c in COMPANIONS):
        return False
    try:
        old = json.loads(fp.read_text())
    except (OSError, ValueError):
        return False
    return old == json.loads(json.dumps(fingerprint(params)))


# ================================================================================================
# public API
# ================================================================================================
def load(params) -> pd.DataFrame:
    """The cached analysis cohort of this run (never rebuilds it).

    Raises CohortNotBuiltError telling how to build it when cohort.parquet is missing.
    """
    path = params.cohort_path
    if not path.exists():
        raise CohortNotBuiltError(
            f"no cohort for run '{params.run}' at {path}. Build it first: `make cohort RUNS={params.run}` "
            f"(or `python -m hipfrac cohort --params params/{params.run}.yaml`); notebooks never build it.")
    df = pd.read_parquet(path)
    for col, spec in dictionary().items():
        if spec["type"] == "date" and col in df.columns:
            df[col] = pd.to_datetime(df[col]).astype("datetime64[ns]")
    from hipfrac import results

    # one row per patient's index fracture: the root population of every count (hipfrac.results)
    return results.with_population(df, [], "patients")


def load_companion(params, name: str) -> pd.DataFrame:
    """A companion table of the cached cohort: flowchart, validation_report, drops, coverage, population,
    incidence_events, extracts."""
    if name not in COMPANIONS:
        raise KeyError(f"unknown companion {name!r}; companions are {', '.join(COMPANIONS)}")
    path = params.cohort_dir / f"{name}.parquet"
    if not path.exists():
        raise CohortNotBuiltError(f"{path} is missing: build the cohort first (`make cohort RUNS={params.run}`)")
    return pd.read_parquet(path)


def build(params, force: bool = False, verbose: bool = True) -> Path:
    """Build (or reuse, when inputs are unchanged) the cohort of a run; returns the path of cohort.parquet.

    Raises hipfrac.validate.ValidationError on fatal problems in the extracts and
    hipfrac.ingest.IngestError when a file is missing or unreadable.
    """
    out_dir = params.cohort_dir
    if not force and _is_current(params):
        if verbose:
            print(f"cohort: up to date ({params.cohort_path})")
        return params.cohort_path
    safepaths.check_replaceable(out_dir)   # refuse someone's folder before any work
    t0 = time.perf_counter()
    builder = _Builder(params, verbose=verbose)
    try:
        result = builder.run()
    finally:
        builder.close()
    tmp = safepaths.make_owned(out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}")
    for name, df in result.items():
        if name == "cohort":
            pq.write_table(to_arrow(df), tmp / "cohort.parquet")
        else:
            df.to_parquet(tmp / f"{name}.parquet", index=False)
    (tmp / "validation_report.txt").write_text(builder.report.text() + "\n", encoding="utf-8")
    (tmp / "fingerprint.json").write_text(json.dumps(fingerprint(params), indent=1, sort_keys=True))
    safepaths.replace(tmp, out_dir)   # only over a directory hipfrac made (marker), never someone's folder
    if verbose:
        fc = result["flowchart"]
        print(f"cohort: {len(result['cohort'])} index fractures ({fc['n_in'].iloc[0]} fracture events; "
              f"{len(builder.report.problems)} validation warnings) -> {params.cohort_path} "
              f"in {time.perf_counter() - t0:.1f} s")
    return params.cohort_path


# ================================================================================================
# builder
# ================================================================================================
@dataclass
class _Step:
    step: int
    label: str
    n_in: int
    n_excluded: int
    n_out: int


class _Builder:
    def __init__(self, params, verbose: bool = False):
        self.p = params
        self.c = params.cohort
        self.verbose = verbose
        tmpdir = safepaths.make_owned(params.cohort_dir.parent / f".duckdb-{params.run}-{os.getpid()}")
        self.tmpdir = tmpdir
        self.con = duckdb.connect(config={"memory_limit": self.c.duckdb_memory_limit,
                                          "temp_directory": str(tmpdir), "threads": max(1, os.cpu_count() or 1),
                                          "preserve_insertion_order": True})
        self.report = ValidationReport()
        self.drops = DropLog()
        self.extracts: dict[str, ingest.Extract] = {}
        self.sources: list[dict] = []
        self._t = time.perf_counter()

    def close(self):
        self.con.close()
        safepaths.remove(self.tmpdir)

    def log(self, msg: str):
        if self.verbose:
            print(f"  [{time.perf_counter() - self._t:6.1f} s] {msg}", flush=True)

    def sql(self, text: str, params=None):
        return self.con.execute(text, params or [])

    def scalar(self, text: str, params=None):
        return self.con.execute(text, params or []).fetchone()[0]

    # -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, pd.DataFrame]:
        self.read_and_validate()
        # every extract is read: from here on DuckDB opens no file (no COPY ... TO, no read_csv of other
        # files), whatever SQL text might reach it (params values only ever go in as bound parameters)
        self.con.execute("SET enable_external_access = false")
        self.log("validated")
        self.events()
        self.log("fracture events")
        coverage = self.coverage()
        flow = self.flowchart()
        self.log("flowchart")
        cohort = self.derive()
        self.log("derived variables")
        population = self.population()
        incidence_events = self.incidence_events()
        self.log("incidence events")
        extracts = pd.DataFrame(self.sources, columns=["source", "file", "format", "n_read", "n_dropped",
                                                       "n_kept"])
        return {"cohort": cohort, "flowchart": flow, "validation_report": self.report.table(),
                "drops": self.drops.table(), "coverage": coverage, "population": population,
                "incidence_events": incidence_events, "extracts": extracts}

    # -------------------------------------------------------------------------------------------
    def read_and_validate(self):
        con = self.con
        geo_muni = list(geography.municipalities()["municipality"])
        for name in COHORT_SOURCES:
            spec = schema.TABLES[name]
            sf = self.p.source_file(name)
            ext = ingest.register(con, sf, name)
            self.extracts[name] = ext
            for col, (k, size) in ext.recoded.items():
                self.report.add(Problem("values recoded by the params' recode map", name, str(ext.path), col,
                                        "warning", k, [], "keep", f"{size} delivered values mapped"))
            types = {c.name: c.dtype for c in spec.columns}
            typed = f"t_{name}"
            v = Validator(con, self.report, name, ext.path, ext.table, typed)
            missing = v.missing_columns(ext.columns, [c.name for c in spec.columns if c.required])
            if missing:
                continue  # fatal; reported together after all sources are read
            absent = [c.name for c in spec.columns if c.name not in ext.columns]
            for c in absent:
                v.report.add(Problem("optional column missing (treated as empty)", name, str(ext.path), c,
                                     "warning", 1, [], "keep"))
            con.execute(f"CREATE OR REPLACE TEMP TABLE {typed} AS SELECT "
                        f"{ingest.typed_select(con, ext, types, flags=True)} FROM {ext.table}")
            drop_cols = set(DROP_IF_MISSING.get(name, []))
            v.types(types, ext.columns, self.c.fatal_type_fraction,
                    actions={c: "drop" for c in drop_cols})
            if any(p.severity == "fatal" for p in self.report.problems if p.source == name):
                continue
            with v.batch():   # one scan: missing keys, code lists, patterns, ranges
                v.required_values([c for c in DROP_IF_MISSING.get(name, [])])
                for col in spec.columns:
                    if col.name not in ext.columns:
                        continue
                    bad_action = "drop" if col.name in DROP_IF_BAD.get(name, []) else "null"
                    if col.codes is not None:
                        v.code_list(col.name, [str(x) for x in col.codes], f"{name}.{col.name}", action=bad_action,
                                    fatal_above=self.c.fatal_code_fraction)
                    id_free = col.name.endswith("_id") and self.p.sources.id_format == "any"
                    if col.pattern is not None and not id_free:
                        pat = col.pattern.replace("'", "''")
                        # lists of codes (space-separated): report only, the bad codes never match anything
                        act = "keep" if " " in col.pattern else bad_action
                        what = {schema.ICD10: "ICD-10", schema.ICD10_LIST: "ICD-10", schema.NCSP_LIST: "NCSP",
                                schema.NCSP: "NCSP", schema.ATC: "ATC", schema.MUNICIPALITY: "municipality",
                                schema.PERSON_ID: "person id"}.get(col.pattern, "pattern")
                        v.check(f"{_q(col.name)} IS NOT NULL AND NOT regexp_full_match({_q(col.name)}, '{pat}')",
                                f"code outside the {what} code list", col.name, action=act,
                                detail=f"expected {col.pattern}", fatal_above=self.c.fatal_code_fraction)
                    if col.min is not None or col.max is not None:
                        conds = []
                        if col.min is not None:
                            conds.append(f"{_q(col.name)} < {col.min}")
                        if col.max is not None:
                            conds.append(f"{_q(col.name)} > {col.max}")
                        v.check(f"{_q(col.name)} IS NOT NULL AND ({' OR '.join(conds)})", "value out of range",
                                col.name, action="drop" if col.name in drop_cols else "null",
                                detail=f"allowed [{col.min}, {col.max}]")
            with v.batch():   # one scan: other missing values, cross-column checks
                # other required columns with missing values: reported, kept
                for col in spec.columns:
                    if col.required and col.name in ext.columns and col.name not in drop_cols:
                        v.check(f"{_q(col.name)} IS NULL", "missing value in a required column", col.name,
                                action="keep")
                if name in ("ssb_persons",):
                    v.check("municipality IS NOT NULL AND municipality NOT IN (SELECT unnest(?::VARCHAR[]))"
                            .replace("?", "[" + ",".join(f"'{m}'" for m in geo_muni) + "]"),
                            "municipality not in the geography (non-resident or unknown)", "municipality",
                            action="keep")
                self._specific_checks(name, v)
            v.duplicates(list(spec.key), action="drop")
            n_drop = v.apply(self.drops, stage="validation")
            n_kept = self.scalar(f"SELECT count(*) FROM {typed}")
            self.sources.append({"source": name, "file": str(ext.path), "format": ext.format,
                                 "n_read": ext.n_rows, "n_dropped": n_drop, "n_kept": int(n_kept)})
            self.log(f"{name}: {ext.n_rows} rows read, {n_drop} dropped")
            con.execute(f"DROP TABLE {ext.table}")
        self.report.raise_if_fatal()
        self._cross_checks()

    def _specific_checks(self, name: str, v: Validator):
        if name == "nhfr_operations":
            before_fx = ("surgery_datetime < coalesce(fracture_datetime, "
                         "admission_datetime - INTERVAL 1 DAY)")
            v.check(f"surgery_datetime IS NOT NULL AND {before_fx}",
                    "impossible order: surgery before fracture", "surgery_datetime", action="keep",
                    detail="hours to surgery set missing (fracture time unknown: more than a day before "
                           "admission)")
            v.check(f"surgery_datetime IS NOT NULL AND admission_datetime IS NOT NULL "
                    f"AND surgery_datetime < admission_datetime - INTERVAL 1 DAY AND NOT ({before_fx})",
                    "impossible order: surgery more than a day before admission", "surgery_datetime",
                    action="keep", detail="hours from admission to surgery set missing")
            for col in ("asa", "cognitive"):
                v.check(f"{col} IS NULL", "missing value (optional column)", col, action="keep")
            self.con.execute(f"""
                CREATE OR REPLACE TEMP TABLE dupform_{name} AS SELECT _row FROM (
                  SELECT _row, row_number() OVER (PARTITION BY person_id, op_kind, hospital, side,
                                                  surgery_datetime ORDER BY _row) AS k
                  FROM t_{name} WHERE surgery_datetime IS NOT NULL AND person_id IS NOT NULL) WHERE k > 1""")
            v.check(f"_row IN (SELECT _row FROM dupform_{name})",
                    "duplicate form (same person, operation kind, hospital, side and surgery time)", "op_id",
                    action="drop", detail="registered twice under another op_id; the first is kept")
            v.check("admission_datetime IS NOT NULL AND fracture_datetime IS NOT NULL "
                    "AND admission_datetime < fracture_datetime - INTERVAL 1 DAY",
                    "impossible order: admission more than a day before fracture", "admission_datetime",
                    action="keep")
            v.check("op_kind = 'primary' AND fracture_datetime IS NULL AND admission_datetime IS NULL",
                    "primary operation without fracture or admission date", "admission_datetime",
                    action="drop")
            v.check("op_kind = 'reoperation' AND primary_op_id IS NULL",
                    "reoperation without its primary operation id", "primary_op_id", action="keep")
        elif name == "npr_episodes":
            v.check("discharge_date IS NOT NULL AND admission_date IS NOT NULL AND discharge_date < admission_date",
                    "impossible order: discharge before admission", "discharge_date", action="null")
        elif name == "kpr_services":
            v.check("end_date IS NOT NULL AND start_date IS NOT NULL AND end_date < start_date",
                    "impossible order: service ends before it starts", "end_date", action="null")

    def _cross_checks(self):
        """Problems across sources (reported; the flowchart excludes the affected fractures)."""
        ssb = "(SELECT DISTINCT person_id FROM t_ssb_persons)"
        for name in ("nhfr_operations", "npr_episodes", "death_registry"):
            v = Validator(self.con, self.report, name, self.extracts[name].path, f"t_{name}", f"t_{name}")
            v.check(f"person_id NOT IN {ssb}", "person unknown to SSB", "person_id", action="keep",
                    detail="fractures of these persons are excluded in the flowchart")
        v = Validator(self.con, self.report, "death_registry", self.extracts["death_registry"].path,
                      "t_death_registry", "t_death_registry")
        v.check("death_date < (SELECT min(CAST(coalesce(fracture_datetime, admission_datetime) AS DATE)) "
                "FROM t_nhfr_operations n WHERE n.person_id = t_death_registry.person_id "
                "AND n.op_kind = 'primary')", "impossible order: death before fracture", "death_date",
                action="keep", detail="the fracture is excluded in the flowchart (invalid record)")

    # -------------------------------------------------------------------------------------------
    def events(self):
        c = self.c
        hip = ", ".join(f"'{x}'" for x in HIP_CODES)
        # params values reach SQL only as bound parameters (and the codes are checked, also when the
        # params object bypassed validation): a code is data, never SQL text
        bad = [x for x in c.pathological_codes if not ICD10_PREFIX.match(str(x))]
        if bad:
            raise ValueError(f"cohort.pathological_codes: not ICD-10 codes or prefixes: {bad}")
        patho = "(^| )(" + ("|".join(c.pathological_codes) or "NOMATCH") + ")"
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE npr_hip AS
            SELECT person_id, episode_id, hospital, admission_date,
                   coalesce(discharge_date, admission_date) AS discharge_date,
                   regexp_matches(coalesce(procedures, ''), '(^| )NF[BJ]') AS operated,
                   regexp_matches(diag_main || ' ' || coalesce(diag_secondary, ''), ?) AS patho
            FROM t_npr_episodes WHERE substr(diag_main, 1, 4) IN ({hip})""", [patho])
        gap, win = c.new_fracture_gap_days, c.match_window_days
        # every operated stay (NCSP NFB*/NFJ*: primary hip fracture surgery) is a fracture of its own
        self.sql("""
            CREATE OR REPLACE TEMP TABLE npr_op AS
            SELECT person_id, episode_id, admission_date,
                   row_number() OVER (PARTITION BY person_id ORDER BY admission_date, episode_id) AS ev_no
            FROM npr_hip WHERE operated""")
        # a stay without surgery belongs to the last operated stay less than `gap` days before it
        # (transfer, rehabilitation, readmission), else to an operated stay within `win` days after it
        # (admitted elsewhere, operated after transfer); the rest form fractures of their own, a new one
        # starting `gap` days or more after the previous stay
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE npr_nonop AS
            SELECT n.episode_id, n.person_id, n.admission_date,
                   CASE WHEN date_diff('day', o.admission_date, n.admission_date) < {gap} THEN o.ev_no END AS prev_ev
            FROM (SELECT * FROM npr_hip WHERE NOT operated) n
            ASOF LEFT JOIN npr_op o ON n.person_id = o.person_id AND n.admission_date >= o.admission_date""")
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE npr_nonop2 AS
            SELECT n.*, CASE WHEN date_diff('day', n.admission_date, o.admission_date) <= {win}
                             THEN o.ev_no END AS next_ev
            FROM npr_nonop n
            ASOF LEFT JOIN npr_op o ON n.person_id = o.person_id AND n.admission_date <= o.admission_date""")
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE npr_free AS
            SELECT episode_id, 1000000 + sum(new) OVER (PARTITION BY person_id ORDER BY admission_date, episode_id
                                                        ROWS UNBOUNDED PRECEDING) AS ev_no
            FROM (SELECT *, CASE WHEN lag(admission_date) OVER w IS NULL
                         OR date_diff('day', lag(admission_date) OVER w, admission_date) >= {gap}
                         THEN 1 ELSE 0 END AS new
                  FROM npr_nonop2 WHERE prev_ev IS NULL AND next_ev IS NULL
                  WINDOW w AS (PARTITION BY person_id ORDER BY admission_date, episode_id))""")
        self.sql("""
            CREATE OR REPLACE TEMP TABLE npr_hip_ev AS
            SELECT h.*, coalesce(o.ev_no, n.prev_ev, n.next_ev, f.ev_no) AS ev_no
            FROM npr_hip h
            LEFT JOIN npr_op o USING (episode_id)
            LEFT JOIN npr_nonop2 n USING (episode_id)
            LEFT JOIN npr_free f USING (episode_id)""")
        self.sql("""
            CREATE OR REPLACE TEMP TABLE npr_events AS
            SELECT person_id, ev_no, min(admission_date) AS start_date, max(discharge_date) AS end_date,
                   bool_or(operated) AS operated, bool_or(patho) AS patho,
                   coalesce(arg_min(hospital, admission_date) FILTER (WHERE operated),
                            arg_min(hospital, admission_date)) AS hospital,
                   count(*) AS n_stays
            FROM npr_hip_ev GROUP BY person_id, ev_no""")
        self.sql("""
            CREATE OR REPLACE TEMP TABLE nhfr_prim AS
            SELECT op_id, person_id, hospital, fracture_datetime, admission_datetime, surgery_datetime, side,
                   fracture_type, asa, cognitive, operation_type, stem_fixation, anaesthesia, nerve_block,
                   CAST(coalesce(fracture_datetime, admission_datetime) AS DATE) AS frac_date,
                   CAST(coalesce(admission_datetime, fracture_datetime) AS DATE) AS adm_date
            FROM t_nhfr_operations WHERE op_kind = 'primary'""")
        w = c.match_window_days
        self.sql(f"""
            CREATE OR REPLACE TEMP TABLE pairs AS
            SELECT p.op_id, e.person_id, e.ev_no,
                   abs(date_diff('day', p.adm_date, e.start_date)) AS d
            FROM nhfr_prim p JOIN npr_events e ON p.person_id = e.person_id
            WHERE (e.start_date BETWEEN p.adm_date - INTERVAL {w} DAY AND p.adm_date + INTERVAL {w} DAY)
               OR (p.adm_date BETWEEN e.start_date AND e.end_date)""")
        # one-to-one: closest pairs first (greedy; ties by op_id and fracture number, so that two
        # same-day fractures of the two hips pair off instead of competing for one NPR fracture)
        pairs = self.sql("SELECT op_id, person_id, ev_no, d FROM pairs ORDER BY d, op_id, ev_no").fetchall()
        used_op, used_ev, rows = set(), set(), []
        for op_id, person_id, ev_no, _d in pairs:
            if op_id in used_op or (person_id, ev_no) in used_ev:
                continue
            used_op.add(op_id)
            used_ev.add((person_id, ev_no))
            rows.append((op_id, person_id, ev_no))
        self.con.register("matches_df", pd.DataFrame(rows, columns=["op_id", "person_id", "ev_no"]).astype(
            {"op_id": "string", "person_id": "string", "ev_no": "int64"}))
        self.sql("CREATE OR REPLACE TEMP TABLE matches AS SELECT * FROM matches_df")
        self.con.unregister("matches_df")
        self.sql("""
            CREATE OR REPLACE TEMP TABLE events AS
            SELECT p.op_id AS event_id, p.person_id, p.op_id,
                   CASE WHEN m.ev_no IS NULL THEN 'nhfr_only' ELSE 'both' END AS source,
                   p.frac_date AS fracture_date,
                   least(p.frac_date, coalesce(e.start_date, p.frac_date)) AS stay_start,
                   coalesce(e.end_date, p.adm_date) AS stay_end,
                   p.hospital, true AS operated, coalesce(e.patho, false) AS patho, m.ev_no
            FROM nhfr_prim p LEFT JOIN matches m USING (op_id)
            LEFT JOIN npr_events e ON e.person_id = m.person_id AND e.ev_no = m.ev_no
            UNION ALL
            SELECT e.person_id || '-N' || lpad(CAST(e.ev_no AS VARCHAR), 7, '0') AS event_id, e.person_id,
                   NULL AS op_id, 'npr_only' AS source, e.start_date AS fracture_date,
                   e.start_date AS stay_start, e.end_date AS stay_end, e.hospital, e.operated, e.patho,
                   e.ev_no
            FROM npr_events e ANTI JOIN matches m ON e.person_id = m.person_id AND e.ev_no = m.ev_no""")

    # -------------------------------------------------------------------------------------------
    def coverage(self) -> pd.DataFrame:
        """NHFR coverage against NPR per treating hospital and year (all fracture years in the extracts).

        NPR-only fractures count when operated (NCSP NFB*/NFJ*), the register's scope. Coverage =
        (nhfr_only + both) / (npr_only + nhfr_only + both) (the union-based formula of the national
        medical quality registries)."""
        c = self.c
        df = self.sql(f"""
            SELECT hospital, year(fracture_date) AS year,
                   count(*) FILTER (WHERE source = 'both') AS n_both,
                   count(*) FILTER (WHERE source = 'nhfr_only') AS n_nhfr_only,
                   count(*) FILTER (WHERE source = 'npr_only') AS n_npr_only
            FROM events
            WHERE hospital IS NOT NULL AND (source <> 'npr_only' OR operated OR NOT {c.npr_require_surgery})
            GROUP BY ALL ORDER BY hospital, year""").df()
        df = df.astype({"year": "int64", "n_both": "int64", "n_nhfr_only": "int64", "n_npr_only": "int64"})
        df["n_total"] = df["n_both"] + df["n_nhfr_only"] + df["n_npr_only"]
        df["n_nhfr"] = df["n_both"] + df["n_nhfr_only"]
        df["n_npr"] = df["n_both"] + df["n_npr_only"]
        df["coverage"] = df["n_nhfr"] / df["n_total"]
        return df.reset_index(drop=True)

    # -------------------------------------------------------------------------------------------
    def flowchart(self) -> pd.DataFrame:
        c = self.c
        con = self.con
        # per-event facts needed by the exclusion rules
        # SSB status in the fracture year; when that year is missing, the closest earlier year, else later
        ssb_cols = ", ".join(f"s.{_q(c.name)}" for c in schema.TABLES["ssb_persons"].columns)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE ssb_pick AS
            SELECT ev.event_id, {ssb_cols} FROM events ev JOIN t_ssb_persons s
              ON s.person_id = ev.person_id AND s.year = year(ev.fracture_date)""")
        con.execute(f"""
            INSERT INTO ssb_pick
            SELECT * EXCLUDE (rn) FROM (
              SELECT ev.event_id, {ssb_cols}, row_number() OVER (PARTITION BY ev.event_id ORDER BY
                     CASE WHEN s.year <= year(ev.fracture_date) THEN 0 ELSE 1 END,
                     abs(s.year - year(ev.fracture_date)), s.year) AS rn
              FROM events ev JOIN t_ssb_persons s ON s.person_id = ev.person_id
              WHERE ev.event_id NOT IN (SELECT event_id FROM ssb_pick)) WHERE rn = 1""")
        muni = geography.municipalities()[["municipality"]]
        con.register("geo_muni_df", muni)
        con.execute("CREATE OR REPLACE TEMP TABLE geo_muni AS SELECT * FROM geo_muni_df")
        con.unregister("geo_muni_df")
        hosp = geography.hospitals()[["hospital"]]
        con.register("geo_hosp_df", hosp)
        con.execute("CREATE OR REPLACE TEMP TABLE geo_hosp AS SELECT * FROM geo_hosp_df")
        con.unregister("geo_hosp_df")
        wy = c.washout_years
        con.execute("""
            CREATE OR REPLACE TEMP TABLE ev_facts AS
            SELECT ev.*, s.person_id IS NOT NULL AS in_ssb, s.sex, s.birth_year, s.birth_month,
                   s.municipality,
                   CASE WHEN s.birth_year IS NOT NULL AND s.birth_month IS NOT NULL THEN
                     date_diff('day', make_date(s.birth_year, s.birth_month, 15), ev.fracture_date) / 365.25
                   END AS age,
                   s.municipality IN (SELECT municipality FROM geo_muni) AS resident,
                   ev.hospital IN (SELECT hospital FROM geo_hosp) AS known_hospital,
                   d.death_date
            FROM events ev LEFT JOIN ssb_pick s USING (event_id)
            LEFT JOIN t_death_registry d ON d.person_id = ev.person_id""")
        # previous hip fractures (any event of the person) within the washout window
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE washout_hit AS
            SELECT DISTINCT a.event_id FROM events a JOIN events b
              ON a.person_id = b.person_id AND a.event_id <> b.event_id
             AND b.fracture_date < a.fracture_date
             AND b.fracture_date >= a.fracture_date - INTERVAL {wy} YEAR
             AND NOT (a.ev_no IS NOT NULL AND b.ev_no IS NOT NULL AND a.ev_no = b.ev_no)""")
        steps = [
            ("fracture date outside the study period",
             f"fracture_date NOT BETWEEN DATE '{c.period_start}' AND DATE '{c.period_end}'"),
            ("NPR-only fracture (no NHFR form; include_npr_only is false)" if not c.include_npr_only else
             "NPR-only fracture without hip fracture surgery (outside the register's scope)",
             "source = 'npr_only'" if not c.include_npr_only else
             ("source = 'npr_only' AND NOT operated" if c.npr_require_surgery else "false")),
            ("later fracture of a person (not the first in the period; followed up as second fracture)",
             "event_id IN (SELECT event_id FROM (SELECT event_id, row_number() OVER (PARTITION BY person_id "
             "ORDER BY fracture_date, source, event_id) AS r FROM cur) WHERE r > 1)"),
            ("person unknown to SSB (no identity or residence data)", "NOT in_ssb"),
            ("missing sex or birth date", "sex IS NULL OR age IS NULL"),
            (f"age under {c.min_age:g} years", f"age < {c.min_age}"),
            ("not resident in Norway (residence municipality unknown)", "municipality IS NULL OR NOT resident"),
            ("pathological fracture (" + ", ".join(c.pathological_codes) + ")", "patho"),
            (f"previous hip fracture within {wy} years (washout)",
             "event_id IN (SELECT event_id FROM washout_hit)" if wy > 0 else "false"),
            ("invalid record: death before the fracture", "death_date IS NOT NULL AND death_date < fracture_date"),
            ("invalid record: unknown treating hospital", "hospital IS NULL OR NOT known_hospital"),
        ]
        # the incidence companion applies the same steps to every fracture, NPR-only ones included
        # (NPR is complete; gaps in the register's coverage must not look like low incidence)
        self._incidence_steps = [st if i != 1 else (
            "NPR-only fracture without hip fracture surgery",
            "source = 'npr_only' AND NOT operated" if c.npr_require_surgery else "false")
            for i, st in enumerate(steps)]
        con.execute("CREATE OR REPLACE TEMP TABLE cur AS SELECT * FROM ev_facts")
        rows = []
        n = self.scalar("SELECT count(*) FROM cur")
        n_start = n
        for i, (label, cond) in enumerate(steps, start=1):
            con.execute(f"CREATE OR REPLACE TEMP TABLE excl AS SELECT event_id FROM cur WHERE coalesce({cond}, false)")
            k = self.scalar("SELECT count(*) FROM excl")
            con.execute("DELETE FROM cur WHERE event_id IN (SELECT event_id FROM excl)")
            n_out = self.scalar("SELECT count(*) FROM cur")
            if n_out != n - k:
                raise RuntimeError(f"flowchart step {label!r} does not conserve counts: {n} != {n_out} + {k}")
            rows.append(_Step(i, label, n, k, n_out).__dict__)
            self.drops.add("flowchart", "fracture events", label, k)
            n = n_out
        flow = pd.DataFrame(rows, columns=FLOWCHART_COLUMNS).astype(
            {"step": "int64", "n_in": "int64", "n_excluded": "int64", "n_out": "int64"})
        assert flow["n_in"].iloc[0] == n_start
        con.execute("CREATE OR REPLACE TEMP TABLE idx AS SELECT * FROM cur ORDER BY event_id")
        return flow

    # -------------------------------------------------------------------------------------------
    def derive(self) -> pd.DataFrame:
        c = self.c
        con = self.con
        eof = f"DATE '{c.end_of_followup}'"
        lb = c.charlson_lookback_years
        # Charlson components: NPR diagnoses in the look-back window before the index stay
        lut = charlson.prefix_table()
        con.register("cci_lut_df", lut)
        con.execute("CREATE OR REPLACE TEMP TABLE cci_lut AS SELECT * FROM cci_lut_df")
        con.unregister("cci_lut_df")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE dx AS
            SELECT DISTINCT event_id, code FROM (
              SELECT i.event_id,
                     unnest(string_split(trim(n.diag_main || ' ' || coalesce(n.diag_secondary, '')), ' ')) AS code
              FROM idx i JOIN t_npr_episodes n ON n.person_id = i.person_id
               AND n.admission_date < i.stay_start
               AND n.admission_date >= i.fracture_date - INTERVAL {lb} YEAR)
            WHERE code <> ''""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE cci_hits AS
            SELECT DISTINCT event_id, component FROM (
              SELECT dx.event_id, l.component FROM dx JOIN cci_lut l ON l.prefix = substr(dx.code, 1, 3)
              UNION ALL
              SELECT dx.event_id, l.component FROM dx JOIN cci_lut l ON l.prefix = substr(dx.code, 1, 4))""")
        comp_cols = ", ".join(f"max(CASE WHEN component = '{k}' THEN 1 ELSE 0 END) AS cci_{k}"
                              for k in charlson.COMPONENTS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE cci AS SELECT event_id, {comp_cols} FROM cci_hits GROUP BY event_id")
        # KPR before / after
        con.execute("""
            CREATE OR REPLACE TEMP TABLE kpr_agg AS
            SELECT i.event_id,
              bool_or(k.service = 'long_term_nursing_home' AND k.start_date <= i.fracture_date - 1
                      AND coalesce(k.end_date, DATE '9999-12-31') >= i.fracture_date - 1) AS nh_before,
              bool_or(k.service IN ('home_nursing', 'practical_assistance', 'short_term_stay')
                      AND k.start_date <= i.fracture_date - 1
                      AND coalesce(k.end_date, DATE '9999-12-31') >= i.fracture_date - 1) AS hc_before,
              bool_or(k.service = 'long_term_nursing_home' AND k.start_date >= i.fracture_date
                      AND k.start_date <= i.fracture_date + 365) AS nh_after,
              bool_or(k.start_date <= i.fracture_date + 365
                      AND coalesce(k.end_date, DATE '9999-12-31') >= i.fracture_date) AS care_after
            FROM idx i JOIN t_kpr_services k ON k.person_id = i.person_id GROUP BY i.event_id""")
        # later fractures
        newfx = "|".join(NEW_FRACTURE_PREFIXES)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE second_fx AS
            SELECT i.event_id, min(e.fracture_date) AS second_date FROM idx i JOIN events e
              ON e.person_id = i.person_id AND e.event_id <> i.event_id
             AND e.fracture_date >= i.fracture_date AND e.fracture_date <= {eof}
            GROUP BY i.event_id""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE new_fx AS
            SELECT i.event_id, min(n.admission_date) AS new_date FROM idx i JOIN t_npr_episodes n
              ON n.person_id = i.person_id AND regexp_matches(n.diag_main, '^({newfx})')
             AND substr(n.diag_main, 1, 3) <> 'S72' AND n.admission_date > i.fracture_date
             AND n.admission_date <= {eof}
            GROUP BY i.event_id""")
        atc = " OR ".join(f"starts_with(r.atc, '{a}')" for a in OSTEO_ATC)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE osteo AS
            SELECT i.event_id,
              bool_or(r.dispensing_date < i.fracture_date AND r.dispensing_date >= i.fracture_date - 365) AS before,
              bool_or(r.dispensing_date >= i.fracture_date AND r.dispensing_date <= i.fracture_date + 91) AS m3,
              bool_or(r.dispensing_date >= i.fracture_date AND r.dispensing_date <= i.fracture_date + 182) AS m6,
              bool_or(r.dispensing_date >= i.fracture_date AND r.dispensing_date <= i.fracture_date + 365) AS m12,
              min(r.dispensing_date) FILTER (WHERE r.dispensing_date >= i.fracture_date) AS first_after,
              max(r.dispensing_date) FILTER (WHERE r.dispensing_date >= i.fracture_date) AS last_after
            FROM idx i JOIN t_prescriptions r ON r.person_id = i.person_id AND ({atc})
             AND r.dispensing_date <= {eof}
            GROUP BY i.event_id""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE reop AS
            SELECT i.event_id, count(*) > 0 AS reop_1y FROM idx i
            JOIN nhfr_prim p ON p.op_id = i.op_id
            JOIN t_nhfr_operations r ON r.primary_op_id = i.op_id AND r.op_kind = 'reoperation'
             AND r.surgery_datetime >= p.surgery_datetime
             AND r.surgery_datetime <= p.surgery_datetime + INTERVAL 365 DAY
            GROUP BY i.event_id""")
        # an earlier hip fracture of the person (before the washout window: the washout step removed
        # the others), as far back as the extracts reach
        con.execute("""
            CREATE OR REPLACE TEMP TABLE prev_fx AS
            SELECT DISTINCT i.event_id FROM idx i JOIN events e
              ON e.person_id = i.person_id AND e.event_id <> i.event_id AND e.fracture_date < i.fracture_date
             AND NOT (i.ev_no IS NOT NULL AND e.ev_no IS NOT NULL AND i.ev_no = e.ev_no)""")
        cci_sel = ", ".join(f"coalesce(cci.cci_{k}, 0) AS cci_{k}" for k in charlson.COMPONENTS)
        df = con.execute(f"""
            SELECT i.event_id, i.person_id, i.op_id, i.source, i.fracture_date,
                   p.fracture_datetime,
                   CASE WHEN i.source = 'npr_only' THEN CAST(i.fracture_date AS TIMESTAMP)
                        ELSE p.admission_datetime END AS admission_datetime,
                   p.surgery_datetime, i.age, i.sex, p.asa, p.cognitive, i.municipality,
                   s.living_alone, s.education, s.income_quintile, s.birth_country,
                   i.hospital, p.fracture_type, p.side, p.operation_type, p.stem_fixation, p.anaesthesia,
                   p.nerve_block, {cci_sel},
                   coalesce(k.nh_before, false) AS nh_before, coalesce(k.hc_before, false) AS hc_before,
                   coalesce(k.nh_after, false) AS nh_after, coalesce(k.care_after, false) AS care_after,
                   CASE WHEN i.death_date <= {eof} THEN i.death_date END AS death_date,
                   CASE WHEN i.death_date <= {eof} THEN d.underlying_cause END AS death_cause,
                   pf.event_id IS NOT NULL AS previous_hip, sf.second_date, nf.new_date,
                   coalesce(o.before, false) AS osteo_before, coalesce(o.m3, false) AS osteo_m3,
                   coalesce(o.m6, false) AS osteo_m6, coalesce(o.m12, false) AS osteo_m12,
                   o.first_after, o.last_after,
                   CASE WHEN i.source = 'npr_only' THEN NULL ELSE coalesce(r.reop_1y, false) END AS reop_1y
            FROM idx i
            LEFT JOIN nhfr_prim p ON p.op_id = i.op_id
            LEFT JOIN ssb_pick s ON s.event_id = i.event_id
            LEFT JOIN cci ON cci.event_id = i.event_id
            LEFT JOIN kpr_agg k ON k.event_id = i.event_id
            LEFT JOIN t_death_registry d ON d.person_id = i.person_id
            LEFT JOIN prev_fx pf ON pf.event_id = i.event_id
            LEFT JOIN second_fx sf ON sf.event_id = i.event_id
            LEFT JOIN new_fx nf ON nf.event_id = i.event_id
            LEFT JOIN osteo o ON o.event_id = i.event_id
            LEFT JOIN reop r ON r.event_id = i.event_id
            ORDER BY i.fracture_date, i.person_id, i.event_id""").df()
        return _finish(df, self.p)

    # -------------------------------------------------------------------------------------------
    def incidence_events(self) -> pd.DataFrame:
        """Index fractures for incidence, NPR-only fractures included whatever include_npr_only says:
        year, referral_area, region (of residence), sex, age_band5, events (all index fractures),
        events_registered (of them with an NHFR form). Aggregates, no persons; the same exclusion
        steps as the cohort (period, first in period, washout, age, residence, ...)."""
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE cur AS SELECT * FROM ev_facts")
        for _, cond in self._incidence_steps:
            con.execute(f"DELETE FROM cur WHERE coalesce({cond}, false)")
        muni = geography.municipalities()[["municipality", "referral_area", "region"]]
        self.con.register("geo_inc_df", muni)
        ev = self.sql("""
            SELECT year(c.fracture_date) AS year, g.referral_area, g.region, c.sex, c.age,
                   c.source <> 'npr_only' AS registered
            FROM cur c JOIN geo_inc_df g USING (municipality)""").df()
        self.con.unregister("geo_inc_df")
        con.execute("DROP TABLE cur")
        ev["age_band5"] = _age_band5(ev["age"]).astype(object)   # the cohort's own age bands
        ev["registered"] = ev["registered"].astype("int64")
        keys = ["year", "referral_area", "region", "sex", "age_band5"]
        df = ev.groupby(keys, sort=True).agg(events=("registered", "size"),
                                             events_registered=("registered", "sum")).reset_index()
        return df.astype({"year": "int64", "events": "int64", "events_registered": "int64"}).reset_index(drop=True)

    # -------------------------------------------------------------------------------------------
    def population(self) -> pd.DataFrame:
        """SSB population aged 50+ by year, referral area, sex and 5-year age band (persons)."""
        muni = geography.municipalities()[["municipality", "referral_area", "region"]]
        self.con.register("geo_area_df", muni)
        n_out = self.scalar("SELECT count(*) FROM t_ssb_population WHERE municipality NOT IN "
                            "(SELECT municipality FROM geo_area_df)")
        self.drops.add("population", "ssb_population", "municipality not in the geography (no referral area)",
                       n_out)
        df = self.sql(f"""
            SELECT p.year, g.referral_area, g.region, p.sex,
                   CASE WHEN p.age_from >= 95 THEN '95+' ELSE p.age_band END AS age_band5,
                   sum(p.population) AS population
            FROM t_ssb_population p JOIN geo_area_df g USING (municipality)
            WHERE p.age_from >= 50 AND p.year BETWEEN {self.c.period_start.year} AND {self.c.period_end.year}
            GROUP BY ALL ORDER BY ALL""").df()
        self.con.unregister("geo_area_df")
        return df.astype({"year": "int64", "population": "int64"}).reset_index(drop=True)


# ================================================================================================
# derived variables in pandas (one row per index fracture: small)
# ================================================================================================
def _age_band(age: pd.Series) -> pd.Series:
    bands = pd.cut(age, [-np.inf, 59.999999, 69.999999, 79.999999, 89.999999, np.inf], right=True,
                   labels=["50-59", "60-69", "70-79", "80-89", "90+"])
    out = bands.astype("string")
    return out.where(age >= 50)


def _age_band5(age: pd.Series) -> pd.Series:
    lo = (np.floor(age / 5) * 5).astype("Int64")
    s = lo.astype("string") + "-" + (lo + 4).astype("string")
    s = s.where(age < 95, "95+")
    return s.where(age.notna())


def _finish(df: pd.DataFrame, params) -> pd.DataFrame:
    c = params.cohort
    geo_m = geography.municipalities().set_index("municipality")
    geo_h = geography.hospitals().set_index("hospital")
    out = pd.DataFrame(index=df.index)
    out["person_id"] = df["person_id"]
    out["op_id"] = df["op_id"]
    out["source"] = df["source"]
    fd = pd.to_datetime(df["fracture_date"])
    out["fracture_date"] = fd
    out["fracture_datetime"] = pd.to_datetime(df["fracture_datetime"])
    out["admission_datetime"] = pd.to_datetime(df["admission_datetime"])
    out["surgery_datetime"] = pd.to_datetime(df["surgery_datetime"])
    out["year"] = fd.dt.year
    ndays = np.where(fd.dt.is_leap_year, 366.0, 365.0)
    out["year_decimal"] = fd.dt.year + (fd.dt.dayofyear - 1) / ndays
    age = df["age"].astype(float)
    out["age"] = age
    out["age_band"] = _age_band(age)
    out["age_band5"] = _age_band5(age)
    out["sex"] = df["sex"]
    out["male"] = (df["sex"] == "male").astype("int64")
    asa = pd.to_numeric(df["asa"]).astype("Int64")
    out["asa"] = asa
    out["asa_group"] = pd.Series(np.select([asa.isin([1, 2]).fillna(False).to_numpy(bool),
                                            (asa == 3).fillna(False).to_numpy(bool),
                                            asa.isin([4, 5]).fillna(False).to_numpy(bool)],
                                           ["1-2", "3", "4-5"], default=""), index=df.index).replace("", pd.NA)
    out["cognitive"] = df["cognitive"]
    comp = df[[f"cci_{k}" for k in charlson.COMPONENTS]].astype("int64")
    comp = charlson.apply_hierarchy(comp)
    out["charlson"] = charlson.score(comp, c.charlson_weights)
    out["charlson_group"] = charlson.group(out["charlson"])
    for k in charlson.COMPONENTS:
        out[f"cci_{k}"] = comp[f"cci_{k}"]
    out["residence"] = np.where(df["nh_before"], "nursing_home", np.where(df["hc_before"], "home_care", "home"))
    out["living_alone"] = pd.to_numeric(df["living_alone"]).astype("Int64")
    out["education"] = df["education"]
    out["income_quintile"] = pd.to_numeric(df["income_quintile"]).astype("Int64")
    out["birth_country"] = df["birth_country"]
    # geography
    muni = df["municipality"].astype("string")
    out["municipality"] = muni
    out["referral_area"] = muni.map(geo_m["referral_area"])
    out["res_trust"] = muni.map(geo_m["trust"])
    out["res_region"] = muni.map(geo_m["region"])
    hosp = df["hospital"].astype("string")
    out["hospital"] = hosp
    out["hospital_name"] = hosp.map(geo_h["hospital_name"])
    out["hosp_trust"] = hosp.map(geo_h["trust"])
    out["hosp_region"] = hosp.map(geo_h["region"])
    n_years = c.period_end.year - c.period_start.year + 1
    operated = df["source"] != "npr_only"
    vol = df.loc[operated].groupby("hospital").size() / n_years
    out["hospital_volume"] = hosp.map(vol).astype(float).fillna(0.0)
    # fracture and treatment
    ft = df["fracture_type"]
    out["fracture_type"] = ft
    out["fracture_group"] = ft.map({"fn_undisplaced": "femoral_neck", "fn_displaced": "femoral_neck",
                                    "basocervical": "femoral_neck", "troch_a1": "trochanteric",
                                    "troch_a2": "trochanteric", "troch_a3": "trochanteric",
                                    "subtroch": "subtrochanteric"})
    out["side"] = df["side"]
    op = df["operation_type"]
    out["operation_type"] = op
    out["arthroplasty"] = _flag(op.isin(["hemi", "total"]), op.notna())
    out["nail"] = _flag(op.isin(["short_nail", "long_nail"]), op.notna())
    arth = op.isin(["hemi", "total"])
    stem = df["stem_fixation"].where(arth)
    out["stem_fixation"] = stem
    out["cemented"] = _flag(stem == "cemented", stem.notna())
    out["anaesthesia"] = df["anaesthesia"]
    out["nerve_block"] = pd.to_numeric(df["nerve_block"]).astype("Int64")
    fx_dt, adm_dt, srg = out["fracture_datetime"], out["admission_datetime"], out["surgery_datetime"]
    h_fx = (srg - fx_dt).dt.total_seconds() / 3600.0
    h_adm = (srg - adm_dt).dt.total_seconds() / 3600.0
    h_fx = h_fx.where(h_fx >= 0)            # surgery before fracture: impossible (reported) -> missing
    h_adm = h_adm.where(h_adm >= -24)       # surgery more than a day before admission -> missing
    h_adm = h_adm.clip(lower=0)
    out["hours_fracture_to_surgery"] = h_fx
    out["hours_admission_to_surgery"] = h_adm
    out["delay_band"] = pd.Series(np.select([(h_fx < 24).to_numpy(bool), (h_fx <= 48).to_numpy(bool),
                                             (h_fx > 48).to_numpy(bool)], ["<24h", "24-48h", ">48h"],
                                            default=""), index=df.index).replace("", pd.NA)
    out["surgery_24h"] = _flag(h_fx <= 24, h_fx.notna())
    out["surgery_48h"] = _flag(h_fx <= 48, h_fx.notna())
    out["surgery_24h_adm"] = _flag(h_adm <= 24, h_adm.notna())
    out["surgery_48h_adm"] = _flag(h_adm <= 48, h_adm.notna())
    gi = pd.Series(pd.NA, index=df.index, dtype="Int64")
    known = op.notna()
    dfn = (ft == "fn_displaced") & (age > 70) & known
    gi[dfn] = arth[dfn].astype(int)
    a3 = ft.isin(["troch_a3", "subtroch"]) & known
    gi[a3] = op[a3].isin(["short_nail", "long_nail"]).astype(int)
    a1 = (ft == "troch_a1") & known
    gi[a1] = (op[a1] == "shs").astype(int)
    out["guideline_implant"] = gi
    out["reoperation_1y"] = df["reop_1y"].astype("boolean").astype("Int64")
    # follow-up
    eof = pd.Timestamp(c.end_of_followup)
    out["end_of_followup"] = eof
    death = pd.to_datetime(df["death_date"])
    out["death_date"] = death
    out["death_cause"] = df["death_cause"]
    dead = death.notna() & (death <= eof)
    out["dead"] = dead.astype("int64")
    end = death.where(dead, eof)
    fu = (end - fd).dt.days.astype(float)
    out["followup_days"] = np.where(fu == 0, 0.5, fu)
    dd = (death - fd).dt.days
    out["dead_30d"] = (dead & (dd <= 30)).astype("int64")
    out["dead_90d"] = (dead & (dd <= 90)).astype("int64")
    out["dead_1y"] = (dead & (dd <= 365)).astype("int64")
    out["previous_hip_fracture"] = df["previous_hip"].astype("int64")
    sd = pd.to_datetime(df["second_date"])
    sd = sd.where(~dead | (sd <= death))
    out["second_hip_fracture"] = sd.notna().astype("int64")
    out["second_fracture_date"] = sd
    out["days_to_second_fracture"] = (sd - fd).dt.days.astype(float)
    nd = pd.to_datetime(df["new_date"])          # other fractures (not hip) after the fracture date
    nd = nd.where(~dead | (nd <= death))
    nd = nd.where(sd.isna() | (nd <= sd), sd)      # or a second hip fracture, whichever comes first
    out["any_new_fracture"] = nd.notna().astype("int64")
    out["new_fracture_date"] = nd
    out["osteo_med_before"] = df["osteo_before"].astype("int64")
    out["osteo_med_3m"] = df["osteo_m3"].astype("int64")
    out["osteo_med_6m"] = df["osteo_m6"].astype("int64")
    out["osteo_med_12m"] = df["osteo_m12"].astype("int64")
    out["days_to_osteo_med"] = (pd.to_datetime(df["first_after"]) - fd).dt.days.astype(float)
    out["osteo_med_last_date"] = pd.to_datetime(df["last_after"])
    out["new_nursing_home"] = (df["nh_after"] & ~df["nh_before"]).astype("int64")
    out["municipal_care_after"] = df["care_after"].astype("int64")
    return conform(out)


def _flag(cond: pd.Series, known: pd.Series) -> pd.Series:
    """1/0 where known, missing elsewhere (nullable Int64)."""
    s = pd.Series(pd.NA, index=cond.index, dtype="Int64")
    k = known.fillna(False).to_numpy(bool)
    s[k] = cond.fillna(False).to_numpy(bool)[k].astype(int)
    return s


_PD = {"string": "string", "float": "float64", "bool": "boolean"}


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in dictionary order with dictionary types (raises ValueError naming missing columns or
    missing values in non-nullable columns)."""
    spec = dictionary()
    missing = [c for c in spec if c not in df.columns]
    if missing:
        raise ValueError(f"cohort lacks dictionary columns: {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    for col, s in spec.items():
        t, nullable = s["type"], bool(s.get("nullable"))
        v = df[col]
        if t == "int":
            v = pd.to_numeric(v).astype("Int64")
            if not nullable:
                if v.isna().any():
                    raise ValueError(f"cohort column {col!r} has {int(v.isna().sum())} missing values")
                v = v.astype("int64")
        elif t == "date":
            v = pd.to_datetime(v).dt.normalize().astype("datetime64[ns]")
        elif t == "datetime":
            v = pd.to_datetime(v).astype("datetime64[ns]")
        else:
            v = v.astype(_PD[t])
        if not nullable and v.isna().any():
            raise ValueError(f"cohort column {col!r} has {int(v.isna().sum())} missing values")
        out[col] = v
    return out.reset_index(drop=True)


ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
               "date": pa.date32(), "datetime": pa.timestamp("us")}


def arrow_schema() -> pa.Schema:
    """The parquet schema of cohort.parquet, from the dictionary (nullable flags included)."""
    return pa.schema([pa.field(col, ARROW_TYPES[s["type"]], nullable=bool(s.get("nullable")))
                      for col, s in dictionary().items()])


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """A conformed cohort frame as an Arrow table with the dictionary's types (dates as date32)."""
    schema_ = arrow_schema()
    arrays = []
    for f in schema_:
        s = df[f.name]
        if pa.types.is_date32(f.type):
            arrays.append(pa.array(s.dt.date.where(s.notna(), None), type=f.type))
        elif pa.types.is_timestamp(f.type):
            arrays.append(pa.array(s.astype("datetime64[us]"), type=f.type))
        else:
            arrays.append(pa.array(s, type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema_)
