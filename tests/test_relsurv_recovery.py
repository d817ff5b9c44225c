"""Recovery of the generator's true net survival and excess hazard (truth.json) by hipfrac.relsurv.

What the truth describes: truth.json's `mortality.net_survival` / `excess_hazard` are the marginal net
survival and net excess hazard over ALL generated index fractures. The registry cohort cannot contain
patients who died before admission or surgery (no NHFR form; NPR-only fractures without surgery are
excluded), so the first days' deaths are under-represented. The comparisons therefore condition on
surviving the first 30 days: excess hazards on intervals from 30 days on, and net survival
NS(t) / NS(30 d). The duration is compared with the duration implied by the true marginal excess hazard
on the same intervals (the first interval from which the true excess is <= 0 throughout), which is what
DURATION_DEFINITION estimates; truth's `duration_years` (when m(t) reaches 1) is later, because the
covariate mix makes the marginal net excess negative before that (survivors are selected to lower risk).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipfrac import relsurv as rs

BREAKS = np.r_[30.0, 90.0, 182.6, np.arange(1, 12) * rs.DAYS_PER_YEAR]


def _truth(params):
    return json.loads((params.synth_dir / "truth.json").read_text())["mortality"]


def _true_interval_excess(tr, breaks):
    nd = np.asarray(tr["net_survival"]["days"], float)
    ns = np.asarray(tr["net_survival"]["surv"], float)
    S = np.interp(breaks, nd, ns)
    return np.log(S[:-1] / S[1:]) / (np.diff(breaks) / rs.DAYS_PER_YEAR), nd, ns


def _true_duration(rate, breaks):
    pos = rate > 0
    last_pos = np.flatnonzero(pos)
    return breaks[last_pos[-1] + 1] / rs.DAYS_PER_YEAR if len(last_pos) else breaks[0] / rs.DAYS_PER_YEAR


def _check_recovery(cohort, params, n_boot, min_cover, duration_two_sided=True):
    lt = rs.lifetable_from_params(params)
    tr = _truth(params)
    C = rs.COHORT_COLUMNS
    fu_max = cohort["followup_days"].max()
    br = BREAKS[BREAKS <= fu_max]
    est = rs.net_excess_hazard(cohort, **C, lifetable=lt, breaks=br)
    true_rate, nd, ns = _true_interval_excess(tr, br)
    true_rate = true_rate[: len(est)]
    covered = (est["lower"].to_numpy() <= true_rate) & (true_rate <= est["upper"].to_numpy())
    assert covered.mean() >= min_cover, est.assign(truth=true_rate)
    # net survival conditional on 30 days, at 1, 3 and 5 years
    t = np.array([30.0, 365.0, 1095.0, 1826.0])
    full = rs.net_survival(cohort, **C, lifetable=lt, times=t)
    cond = full["surv"].to_numpy()[1:] / full["surv"].to_numpy()[0]
    truth = np.interp(t[1:], nd, ns) / np.interp(30.0, nd, ns)
    se = full["std_err"].to_numpy()[1:] / full["surv"].to_numpy()[1:]       # log scale, upper bound
    z = np.abs(np.log(cond / truth)) / se
    assert (z < 3.0).all(), (cond, truth, z)
    # duration
    dur = rs.bootstrap_duration(cohort, **C, lifetable=lt, breaks=np.r_[0.0, br], n_boot=n_boot, seed=5)
    d_true = _true_duration(_true_interval_excess(tr, np.r_[0.0, br])[0], np.r_[0.0, br])
    r = dur.iloc[0]
    assert r["lower"] <= d_true, (dur, d_true)
    if duration_two_sided:
        assert d_true <= r["upper"], (dur, d_true)
    return est, dur, d_true


def test_recovery_tiny(tiny_cohort, tiny_params):
    """Scale 0.02 (about 1,600 patients): wide intervals, but they must cover the truth.

    "No longer distinguishable from zero" depends on power: with 1,600 patients the excess of years 5-6
    is not detectable, so the estimated duration is shorter than at national scale. Here the duration is
    only checked one-sided (its CI must not lie entirely after the truth); the two-sided check is the
    national-scale test."""
    _check_recovery(tiny_cohort, tiny_params, n_boot=40, min_cover=0.8, duration_two_sided=False)


@pytest.mark.slow
def test_recovery_national(tmp_path_factory):
    """National scale (about 100,000 patients in the cohort): tight intervals around the truth."""
    import yaml

    from hipfrac import cohort, synth
    from hipfrac.params import load

    d = tmp_path_factory.mktemp("national")
    spec = {"run": "national", "synth": {"scale": 1.0, "seed": 2027, "out_dir": str(d / "synthetic")},
            "cohort": {"out_dir": str(d / "cohort")}}
    (d / "national.yaml").write_text(yaml.safe_dump(spec))
    p = load(d / "national.yaml")
    synth.generate(p.synth_dir, seed=p.synth.seed, years=p.synth.years, scale=p.synth.scale,
                   imperfections=p.synth.imperfections, fmt=p.synth.format)
    cohort.build(p)
    _check_recovery(cohort.load(p), p, n_boot=100, min_cover=0.85)
