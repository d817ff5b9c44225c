"""Charlson comorbidity index from ICD-10 diagnoses (Quan 2005 coding, Quan 2011 weights).

The code list lives in `hipfrac/data/charlson_icd10.yaml` (17 components, code prefixes without the dot).
A diagnosis code matches a component when its normalised form (upper case, dot and spaces removed)
starts with one of the component's prefixes; all prefixes are 3 or 4 characters long, so matching is an
equality join on the first 3 and first 4 characters (fast in DuckDB on tens of millions of rows).

Hierarchy: when both a milder and a more severe form are present, only the severe one counts
(mild liver disease < moderate/severe liver disease; diabetes < diabetes with chronic complication;
any malignancy < metastatic solid tumour). The component columns returned here already have the hierarchy
applied, so the index is the plain weighted sum of the components.

    >>> from hipfrac import charlson
    >>> comp = charlson.components(pd.DataFrame({"person_id": ["a", "a"], "code": ["I21.4", "C78.0"]}))
    >>> charlson.score(comp)          # Quan 2011 weights: MI 0, metastatic tumour 6 -> 6
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd
import yaml

__all__ = ["COMPONENTS", "codes", "components", "hierarchy", "normalise", "prefix_table", "score", "weights"]


@lru_cache(maxsize=1)
def _spec() -> dict:
    text = resources.files("hipfrac").joinpath("data/charlson_icd10.yaml").read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    for name, comp in spec["components"].items():
        for code in comp["codes"]:
            if len(code) not in (3, 4) or code != code.upper() or "." in code:
                raise ValueError(f"charlson_icd10.yaml: bad prefix {code!r} in component {name!r}")
    return spec


COMPONENTS: tuple[str, ...] = tuple(_spec()["components"])


def codes() -> dict[str, list[str]]:
    """Component -> list of ICD-10 prefixes (no dot)."""
    return {k: list(v["codes"]) for k, v in _spec()["components"].items()}


def hierarchy() -> dict[str, str]:
    """Milder component -> the severe component that supersedes it."""
    return dict(_spec()["hierarchy"])


def weights(overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Quan 2011 weights, with `overrides` (component -> weight) applied.

    Raises ValueError naming any unknown component in overrides.
    """
    w = {k: int(v["weight"]) for k, v in _spec()["components"].items()}
    for k, v in (overrides or {}).items():
        if k not in w:
            raise ValueError(f"charlson_weights: unknown component {k!r}; components are {', '.join(w)}")
        w[k] = int(v)
    return w


def normalise(code: pd.Series) -> pd.Series:
    """ICD-10 codes upper case without dots or spaces ("i21.4 " -> "I214")."""
    return code.astype("string").str.upper().str.replace(r"[.\s]", "", regex=True)


def prefix_table() -> pd.DataFrame:
    """One row per (prefix, component), sorted: the lookup table joined in SQL."""
    rows = [(p, comp) for comp, ps in codes().items() for p in ps]
    return pd.DataFrame(rows, columns=["prefix", "component"]).sort_values(["prefix", "component"],
                                                                            ignore_index=True)


def components(diagnoses: pd.DataFrame, id_col: str = "person_id", code_col: str = "code",
               ids=None) -> pd.DataFrame:
    """0/1 component indicators per id, hierarchy applied.

    diagnoses: long frame of (id, ICD-10 code) rows (any number per id).
    ids: all ids to return (ids without any matching code get zeros); default the ids in `diagnoses`.
    Returns a frame indexed by id with one int column per component, named `cci_<component>`.
    """
    d = pd.DataFrame({"id": diagnoses[id_col].to_numpy(), "code": normalise(diagnoses[code_col]).to_numpy()})
    d = d.dropna()
    lut = prefix_table()
    hits = []
    for n in (3, 4):
        sub = pd.DataFrame({"id": d["id"], "prefix": d["code"].str[:n]})
        hits.append(sub.merge(lut[lut["prefix"].str.len() == n], on="prefix")[["id", "component"]])
    hit = pd.concat(hits).drop_duplicates()
    idx = pd.Index(sorted(set(d["id"])) if ids is None else list(ids), name=id_col)
    out = pd.DataFrame(0, index=idx, columns=list(COMPONENTS), dtype="int64")
    if len(hit):
        wide = pd.crosstab(hit["id"], hit["component"]).clip(upper=1)
        wide = wide.reindex(index=idx, columns=list(COMPONENTS), fill_value=0).fillna(0).astype("int64")
        out = wide
    out = apply_hierarchy(out)
    out.columns = [f"cci_{c}" for c in COMPONENTS]
    out.index.name = id_col
    return out


def apply_hierarchy(comp: pd.DataFrame) -> pd.DataFrame:
    """Set a mild component to 0 where its severe form is 1 (columns named by component, with or without
    the `cci_` prefix)."""
    out = comp.copy()
    pre = "cci_" if any(str(c).startswith("cci_") for c in out.columns) else ""
    for mild, severe in hierarchy().items():
        out.loc[out[pre + severe] == 1, pre + mild] = 0
    return out


def score(comp: pd.DataFrame, overrides: dict[str, int] | None = None) -> pd.Series:
    """Charlson index = sum of weight x component (columns `cci_<component>` or `<component>`), int."""
    w = weights(overrides)
    comp = apply_hierarchy(comp)
    pre = "cci_" if any(str(c).startswith("cci_") for c in comp.columns) else ""
    total = sum(comp[pre + k].astype("int64") * v for k, v in w.items())
    return pd.Series(total, index=comp.index, name="charlson").astype("int64")


def group(index: pd.Series) -> pd.Series:
    """Charlson group "0", "1", "2", "3+"."""
    return pd.Series(pd.cut(index, [-1, 0, 1, 2, 10_000], labels=["0", "1", "2", "3+"]).astype("string"),
                     index=index.index, name="charlson_group")
