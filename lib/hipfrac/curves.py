"""Publishable curves (Kaplan-Meier, cumulative incidence, net survival): steps merged for disclosure control.

The rule of issue 13: a curve is published with its steps merged so that every published step holds at
least ``min_events`` events, and numbers at risk only at the at-risk table times.

* :func:`merge_steps` walks a curve's event times and publishes its value only at the time where the events
  since the previous published step reach ``min_events`` (the curve is flat in between: drawn as a step
  function; the tail after the last published step, holding fewer events, is not published);
* the number at risk is given only at ``at_risk_times``; an at-risk time whose number at risk differs from
  the previous published one by less than ``min_events`` is left out (NaN), so that no difference of two
  published numbers at risk (deaths plus censored in between) is small;
* the value of the curve at an at-risk time is the merged step function there (nothing new).

Status variables of follow-up counts (:func:`fu_status`): ``#fu<t>`` (t in days, ``%g``) with the atoms
``dead`` (died on or before day t), ``cens`` (censored before day t) and ``alive`` (alive and followed on
day t), the same wherever the same outcome is counted in the same population
(:func:`hipfrac.survival.mortality_at`, :func:`hipfrac.survival.km_table`, the at-risk numbers of
:func:`hipfrac.survival.km_curves`, observed deaths of relative survival). The Kaplan-Meier number at risk
at t (follow-up >= t) is the atom ``alive`` unless a patient died on day t exactly; then it is counted as
its own variable ``#atrisk<t>`` (not linked to the deaths).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["merge_steps", "fu_status", "fu_var", "fu_labels", "risk_var", "MergedCurve"]


def fu_var(t) -> str:
    """Name of the follow-up status variable at day t ("#fu30", "#fu365.25")."""
    return f"#fu{float(t):g}"


def fu_status(fu: np.ndarray, dead: np.ndarray, t: float) -> dict[str, int]:
    """Counts of the atoms of ``#fu<t>``: dead (died by day t), cens (censored before t), alive (the rest),
    and dead_at (died on day t exactly: these are both dead and at risk at t)."""
    fu = np.asarray(fu, float)
    dead = np.asarray(dead).astype(bool)
    return {"dead": int(((fu <= t) & dead).sum()), "cens": int(((fu < t) & ~dead).sum()),
            "alive": int(((fu > t) | ((fu >= t) & ~dead)).sum()), "dead_at": int(((fu == t) & dead).sum())}


def risk_var(fu: np.ndarray, dead: np.ndarray, t: float) -> tuple[str, str]:
    """(status variable, level) of the Kaplan-Meier number at risk at t (follow-up >= t)."""
    if fu_status(fu, dead, t)["dead_at"]:
        return f"#atrisk{float(t):g}", "yes"
    return fu_var(t), "alive"


def fu_labels(f: pd.DataFrame, tcol: str, fu, dead) -> pd.DataFrame:
    """Hidden label columns naming the follow-up status variables of each row: `_fu` (#fu<t>), and the
    variable and level of the number at risk at t (`_rv`, `_rl`, see risk_var). In place; returns f."""
    tt = f[tcol].to_numpy(float)
    f["_fu"] = [fu_var(t) for t in tt]
    rv = [risk_var(fu, dead, t) for t in tt]
    f["_rv"], f["_rl"] = [a for a, _ in rv], [b for _, b in rv]
    return f


class MergedCurve:
    """Result of :func:`merge_steps`: `times` (0, published steps, at-risk times), `values` (name -> array,
    NaN after the last published step), `n_risk` (NaN except at kept at-risk times), `step` (True at a
    published step), `events` (events merged into each published step, 0 elsewhere)."""

    def __init__(self, times, values, n_risk, step, events):
        self.times, self.values, self.n_risk, self.step, self.events = times, values, n_risk, step, events

    def frame(self) -> pd.DataFrame:
        f = pd.DataFrame({"time": self.times})
        for k, v in self.values.items():
            f[k] = v
        f["n_risk"] = self.n_risk
        return f


def merge_steps(event_times: Sequence[float], events: Sequence[float], values: Mapping[str, Sequence[float]],
                start: Mapping[str, float], *, min_events: int, at_risk_times: Sequence[float],
                n_risk_at, last_time: float | None = None) -> MergedCurve:
    """Merge a curve's steps so that every published step holds at least `min_events` events.

    event_times: increasing times at which the curve jumps; events: events at each (of the counted kind:
        deaths for Kaplan-Meier and net survival, events of the cause for a cumulative incidence);
    values: name -> the curve's value just after each event time (surv, lower, upper, ...);
    start: name -> the value before the first event (e.g. surv 1, cif 0);
    min_events: smallest number of events in a published step (params.disclosure.min_cell); required;
    at_risk_times: the only times at which the number at risk is published; required;
    n_risk_at: function of an array of times -> numbers at risk;
    last_time: no at-risk time after it (the group's last follow-up).
    """
    if min_events is None or int(min_events) < 1:
        raise ValueError("merge_steps: min_events (params.disclosure.min_cell) is required")
    if at_risk_times is None:
        raise ValueError("merge_steps: at_risk_times is required (the at-risk table times)")
    min_events = int(min_events)
    et = np.asarray(event_times, float)
    ev = np.asarray(events, float)
    keep = ev > 0
    et, ev = et[keep], ev[keep]
    vals = {k: np.asarray(v, float)[keep] for k, v in values.items()}
    pub_t, pub_e, pub_i = [], [], []
    acc = 0.0
    for i, (t, e) in enumerate(zip(et, ev)):
        acc += e
        if acc >= min_events:
            pub_t.append(t)
            pub_e.append(acc)
            pub_i.append(i)
            acc = 0.0
    ar = np.asarray(sorted({float(x) for x in at_risk_times}), float)
    if last_time is not None:
        ar = ar[ar <= float(last_time)]
    nr_ar = np.asarray(n_risk_at(ar), float) if len(ar) else np.zeros(0)
    kept = np.full(len(ar), np.nan)
    prev = None
    for j, r in enumerate(nr_ar):
        if prev is None or prev - r >= min_events:
            kept[j] = r
            prev = r
    times = np.asarray(sorted({0.0, *pub_t, *ar.tolist()}), float)
    pub_t_arr = np.asarray(pub_t, float)
    last_pub = pub_t_arr[-1] if len(pub_t_arr) else 0.0
    k = np.searchsorted(pub_t_arr, times, "right") - 1
    out = {}
    for name, v in vals.items():
        pv = v[pub_i] if pub_i else np.zeros(0)
        col = np.where(k >= 0, pv[np.clip(k, 0, None)] if len(pv) else np.nan, float(start[name]))
        out[name] = np.where(times > last_pub, np.nan, col)
    n_risk = np.full(len(times), np.nan)
    if len(ar):
        pos = np.searchsorted(times, ar)
        n_risk[pos] = kept
    step = np.isin(times, pub_t_arr)
    evs = np.zeros(len(times))
    if len(pub_t_arr):
        evs[np.searchsorted(times, pub_t_arr)] = pub_e
    return MergedCurve(times, out, n_risk, step, evs)
