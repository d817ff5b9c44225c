"""Params naming the registry extracts to read (synthetic or real deliveries)."""

from typing import Literal

from pydantic import Field

from .base import Section

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
    delimiter/encoding/decimal: CSV reading options (decimal comma allowed).
    rename: delivered column name -> contract column name.
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
