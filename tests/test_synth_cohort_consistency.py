"""The cohort reproduces the generator's per-patient truth: the Charlson index and its components computed
from NPR (5-year look-back, index stay excluded) equal the generator's true comorbidity for every cohort
patient, including those whose index is a later hip fracture (first one before the study period)."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import charlson
from hipfrac.synth import extracts


@pytest.fixture(scope="module")
def generator_patients(tiny_params, tiny_synth):
    """The tiny registry's person-level truth (the same deterministic build as tiny_synth, kept in memory)."""
    s = tiny_params.synth
    b = extracts.Builder(s.seed, tuple(s.years), s.scale, s.imperfections)
    b.run()
    return b.patients.set_index("person_id"), b.second


def test_charlson_equals_generator_truth(tiny_cohort, generator_patients):
    pat, second = generator_patients
    coh = tiny_cohort.set_index("person_id")
    assert coh.index.isin(pat.index).all()
    true = pat.loc[coh.index]
    cols = [f"cci_{k}" for k in charlson.COMPONENTS]
    # the generator's charlson is the plain Quan 2011 sum of its components (the cohort default weights)
    assert (true["charlson"] == charlson.score(true[cols])).all()
    diff = coh["charlson"] != true["charlson"]
    assert not diff.any(), coh.loc[diff, ["fracture_date", "charlson"]].join(true["charlson"], rsuffix="_true")
    assert (coh[cols].to_numpy() == true[cols].to_numpy()).all()
    # the case that used to fail: index = the person's second hip fracture, with comorbidity to find
    first_day = pd.to_datetime(np.floor(true["fracture_day"]), unit="D")
    later = pd.to_datetime(coh["fracture_date"]) > first_day + pd.Timedelta(days=30)
    assert coh.index[later].isin(second["person_id"]).all()
    assert later.sum() >= 10 and (true.loc[later, "charlson"] > 0).sum() >= 5
