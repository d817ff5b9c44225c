"""Norwegian health-care geography (shipped reference data, not generated).

Hierarchies:
    municipality -> referral area (19 orthopaedic areas; the three Oslo areas merged) -> trust -> region (4 RHF)
    hospital (44 that treat hip fractures) -> trust -> region; each hospital also belongs to a referral area

Files in `hipfrac/data/`: referral_areas.csv (with a fixed tile-map layout), hospitals.csv (codes, names,
NPR hip fracture operations in 2018 from SKDE indicator data), municipalities.csv (a few real municipalities
per referral area with 4-digit numbers, approximate total population, and the local hospital(s) whose
catchment they belong to, `|`-separated). Municipality populations are approximate and only serve as
weights for the synthetic registry; the names, trusts, regions and 2018 volumes follow the health atlases.

All functions return fresh DataFrames (codes are strings; municipality numbers keep their leading zero).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import pandas as pd

REGIONS = ("Helse Nord", "Helse Midt-Norge", "Helse Vest", "Helse Sør-Øst")


@cache
def _read(name: str) -> pd.DataFrame:
    with resources.files("hipfrac.data").joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def referral_areas() -> pd.DataFrame:
    """The 19 orthopaedic referral areas: referral_area, trust, region, tile_row, tile_col."""
    df = _read("referral_areas.csv").copy()
    df["tile_row"] = df["tile_row"].astype(int)
    df["tile_col"] = df["tile_col"].astype(int)
    return df


def tile_grid() -> pd.DataFrame:
    """Tile-map layout of the referral areas (row 0 = north): referral_area, region, row, col."""
    df = referral_areas()
    return df[["referral_area", "region", "tile_row", "tile_col"]].rename(
        columns={"tile_row": "row", "tile_col": "col"}).reset_index(drop=True)


def hospitals() -> pd.DataFrame:
    """The 44 hospitals: hospital (code), hospital_name, trust, region, referral_area,
    volume_2018 (NPR hip fracture operations in 2018, operations per year)."""
    df = _read("hospitals.csv").copy()
    df["volume_2018"] = df["volume_2018"].astype(int)
    return df


def municipalities() -> pd.DataFrame:
    """Municipalities: municipality (4-digit string), municipality_name, referral_area, trust, region,
    population (approximate total population, persons), local_hospitals (`|`-separated hospital codes)."""
    df = _read("municipalities.csv").copy()
    df["population"] = df["population"].astype(int)
    areas = referral_areas()[["referral_area", "trust", "region"]]
    out = df.merge(areas, on="referral_area", how="left", validate="many_to_one")
    return out[["municipality", "municipality_name", "referral_area", "trust", "region", "population",
                "local_hospitals"]]


def catchment() -> pd.DataFrame:
    """Long table municipality -> local hospital (one row per pair): municipality, hospital, n_local
    (how many local hospitals the municipality shares its patients between)."""
    m = municipalities()
    rows = [(r.municipality, h, len(r.local_hospitals.split("|")))
            for r in m.itertuples() for h in r.local_hospitals.split("|")]
    return pd.DataFrame(rows, columns=["municipality", "hospital", "n_local"])


def trusts() -> pd.DataFrame:
    """Hospital trusts: trust, region (from hospitals and referral areas)."""
    a = referral_areas()[["trust", "region"]]
    h = hospitals()[["trust", "region"]]
    return pd.concat([a, h]).drop_duplicates().sort_values(["region", "trust"]).reset_index(drop=True)


def validate() -> None:
    """Check the shipped files are consistent; raises ValueError naming what is wrong."""
    a, h, m = referral_areas(), hospitals(), municipalities()
    problems = []
    if len(a) != 19 or a["referral_area"].duplicated().any():
        problems.append("referral_areas.csv must hold 19 distinct areas")
    if set(a["region"]) - set(REGIONS):
        problems.append(f"unknown regions {sorted(set(a['region']) - set(REGIONS))}")
    if a[["tile_row", "tile_col"]].duplicated().any():
        problems.append("two referral areas share a tile")
    if h["hospital"].duplicated().any():
        problems.append("duplicate hospital codes")
    bad = sorted(set(h["referral_area"]) - set(a["referral_area"]))
    if bad:
        problems.append(f"hospitals in unknown referral areas {bad}")
    if m["municipality"].duplicated().any() or not m["municipality"].str.fullmatch(r"\d{4}").all():
        problems.append("municipality numbers must be distinct 4-digit strings")
    if m["trust"].isna().any():
        problems.append("municipalities in unknown referral areas")
    c = catchment()
    unknown = sorted(set(c["hospital"]) - set(h["hospital"]))
    if unknown:
        problems.append(f"catchment names unknown hospitals {unknown}")
    orphan = sorted(set(h["hospital"]) - set(c["hospital"]))
    if orphan:
        problems.append(f"hospitals without a catchment municipality {orphan}")
    if problems:
        raise ValueError("geography data: " + "; ".join(problems))


def slug(name: str) -> str:
    """A unit's name as part of an output file name: lower case ASCII, words joined by "_"
    ("Helse Sør-Øst" -> "helse_sor-ost", "Førde" -> "forde")."""
    import unicodedata

    s = str(name).lower().replace("ø", "o").replace("æ", "ae").replace("å", "a")
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    return "_".join("".join(ch if ch.isalnum() or ch in "-." else " " for ch in s).split())
