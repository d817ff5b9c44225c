"""Params naming the registry extracts to read (synthetic or real deliveries)."""

import re
from typing import Literal

from pydantic import Field, field_validator

from hipfrac.terms import check_identifiers

from .base import Section

# strptime directives and the separators between them (no quotes: the format goes into SQL text)
DATE_FORMAT = re.compile(r"(%[A-Za-z]|[0-9A-Za-z .,:/_-])+\Z")

SOURCE_NAMES = (
    "nhfr_operations",
    "npr_episodes",
    "kpr_services",
    "death_registry",
    "ssb_persons",
    "ssb_population",
    "ssb_lifetables",
    "prescriptions",
)


class SourceFile(Section):
    """One extract file.

    path: file path (relative to the project root, or absolute). When empty, the synthetic extract
      `<synth.out_dir>/<source>.<synth.format>` is used.
    format: csv, parquet, sas (.sas7bdat), stata (.dta), spss (.sav); `auto` guesses from the suffix.
    delimiter/encoding/decimal: CSV reading options (decimal comma allowed); the delimiter is one
      character, not a quote, letter, digit or line break.
    date_format: strptime format of dates (e.g. %d.%m.%Y): directives and separators only.
    rename: delivered column name -> contract column name (letters, digits, underscores; a delivered
      name may not hold quotes or control characters).
    recode: contract column -> value map, delivered value -> contract value, applied after renaming
      and before validation; e.g. {hospital: {"974633574": "ULLEVAL"}} maps NPR's RESH ids onto the
      contract's hospital codes. A map may also be the path of a CSV file with two columns (delivered,
      contract; header line; ";" or "," separated). Values not in the map are kept (and validated as
      delivered); how many values each map changed is in the validation report.
    """

    path: str = ""
    format: Literal["auto", "csv", "parquet", "sas", "stata", "spss"] = "auto"
    delimiter: str = ";"
    encoding: Literal["utf-8", "latin-1"] = "utf-8"
    decimal: Literal[".", ","] = "."
    date_format: str | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    recode: dict[str, dict[str, str] | str] = Field(default_factory=dict)

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, v):
        if len(v) != 1 or v in "'\"\r\n\\" or v.isalnum():
            raise ValueError(f"one separator character such as ';', ',', '|' or a tab, got {v!r}")
        return v

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v):
        if v is not None and not DATE_FORMAT.match(v):
            raise ValueError(f"a strptime format of directives and separators (e.g. %d.%m.%Y), got {v!r}")
        return v

    @field_validator("rename")
    @classmethod
    def _rename(cls, v):
        bad = [k for k in v if any(ch in k for ch in "\"'") or any(ord(ch) < 32 for ch in k)]
        if bad:
            raise ValueError(f"delivered column names with quotes or control characters: {bad}")
        check_identifiers(v.values(), "contract column names")
        return v

    @field_validator("recode")
    @classmethod
    def _recode(cls, v):
        check_identifiers(v, "recoded column names")
        return v


class SourcesParams(Section):
    """Which file holds each source. Missing entries default to the synthetic extracts.

    id_format: "contract" checks pseudonymous ids (person, operation, episode, service, dispensing) against
      the contract's formats (those of the synthetic registry); "any" accepts whatever id strings a real
      delivery carries (still required, typed and checked for duplicates).
    """

    id_format: Literal["contract", "any"] = "contract"

    nhfr_operations: SourceFile = SourceFile()
    npr_episodes: SourceFile = SourceFile()
    kpr_services: SourceFile = SourceFile()
    death_registry: SourceFile = SourceFile()
    ssb_persons: SourceFile = SourceFile()
    ssb_population: SourceFile = SourceFile()
    ssb_lifetables: SourceFile = SourceFile()
    prescriptions: SourceFile = SourceFile()
