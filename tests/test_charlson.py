"""Charlson mapping (Quan 2005 ICD-10 coding, Quan 2011 weights) against known codes."""

import pandas as pd
import pytest

from hipfrac import charlson

KNOWN = [  # code as it may appear in NPR, expected component (None: no Charlson component)
    ("I21.0", "mi"), ("I252", "mi"), ("I25.1", None), ("I50.9", "chf"), ("I42.0", "chf"), ("I42.1", None),
    ("P29.0", "chf"), ("I70.2", "pvd"), ("Z95.8", "pvd"), ("I63.9", "cevd"), ("G45.9", "cevd"),
    ("H34.0", "cevd"), ("F03", "dementia"), ("G30.1", "dementia"), ("F05.1", "dementia"), ("F05.0", None),
    ("J44.1", "cpd"), ("J68.4", "cpd"), ("J68.0", None), ("M05.3", "rheumd"), ("M35.3", "rheumd"),
    ("M35.0", None), ("K25.4", "pud"), ("B18.2", "mld"), ("K70.3", "mld"), ("K70.4", "msld"),
    ("E11.9", "diab"), ("E10.6", "diab"), ("E11.2", "diabwc"), ("E14.7", "diabwc"), ("G81.1", "hp"),
    ("G83.5", None), ("N18.5", "rend"), ("Z99.2", "rend"), ("N03.1", None), ("C50.9", "canc"),
    ("C44.3", None), ("C91.0", "canc"), ("C78.7", "metacanc"), ("I85.0", "msld"), ("B20.1", "aids"),
    ("B23.0", None), ("S72.0", None), ("i21.4 ", "mi"),
]


@pytest.mark.parametrize("code,component", KNOWN)
def test_known_codes_map_to_their_component(code, component):
    comp = charlson.components(pd.DataFrame({"person_id": ["p"], "code": [code]}))
    hits = [c.removeprefix("cci_") for c in comp.columns if comp.loc["p", c] == 1]
    assert hits == ([component] if component else [])


def test_quan_2011_weights_and_hierarchy():
    w = charlson.weights()
    assert w == {"mi": 0, "chf": 2, "pvd": 0, "cevd": 0, "dementia": 2, "cpd": 1, "rheumd": 1, "pud": 0,
                 "mld": 2, "diab": 0, "diabwc": 1, "hp": 2, "rend": 1, "canc": 2, "msld": 4,
                 "metacanc": 6, "aids": 4}
    assert sum(w.values()) - w["mld"] - w["diab"] - w["canc"] == 24  # Quan 2011 maximum score
    dx = pd.DataFrame({"person_id": ["a", "a", "a", "a", "b", "b", "c"],
                       "code": ["K70.3", "K70.4", "C50.1", "C79.5", "E11.9", "F03", "J45"]})
    comp = charlson.components(dx, ids=["a", "b", "c", "d"])
    assert comp.loc["a", "cci_mld"] == 0 and comp.loc["a", "cci_msld"] == 1     # severe liver wins
    assert comp.loc["a", "cci_canc"] == 0 and comp.loc["a", "cci_metacanc"] == 1
    assert comp.loc["d"].sum() == 0                                               # no codes -> zeros
    s = charlson.score(comp)
    assert s.to_dict() == {"a": 10, "b": 2, "c": 1, "d": 0}
    s2 = charlson.score(comp, {"cpd": 3, "mi": 1})
    assert s2["c"] == 3
    with pytest.raises(ValueError, match="unknown component 'heart'"):
        charlson.weights({"heart": 1})


def test_prefix_table_is_unique_and_sorted():
    lut = charlson.prefix_table()
    assert not lut.duplicated().any()
    assert lut["prefix"].str.len().isin([3, 4]).all()
    assert charlson.group(pd.Series([0, 1, 2, 3, 9])).tolist() == ["0", "1", "2", "3+", "3+"]
