"""Competing risks: Aalen–Johansen cumulative incidence, Fine–Gray and cause-specific Cox regression.

Event coding everywhere: 0 = censored, 1, 2, ... = causes (e.g. 1 = second hip fracture, 2 = death).
Times are in whatever unit the data carry (the cohort uses days); hazard ratios are unit-free.

- `cumulative_incidence` reproduces `cmprsk::cuminc` (estimate and Gray's variance, ties as in the
  Fortran routine `cinc`), adds log(-log) confidence limits, cumulative event counts and the number at
  risk, optionally by group.
- `fine_gray` / `FineGrayFitter` reproduce `cmprsk::crr` (Fine & Gray, JASA 1999): inverse probability of
  censoring weights from the Kaplan–Meier estimate of the censoring distribution evaluated just before
  each time (G(t-)), Breslow handling of tied events, Newton–Raphson, and crr's robust sandwich variance
  (including the term for estimating the censoring distribution). Everything is computed with
  cumulative sums over sorted times: O(n log n + n p^2), fine at 100k rows.
- `cause_specific_cox` fits a lifelines Cox model for one cause, censoring the competing causes.

Validated against cmprsk 2.2 on survival::mgus2 (tests/reference/competing.R, tests/test_competing.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats

from hipfrac import curves, results, sdc

__all__ = [
    "FineGrayFitter",
    "blas_threads",
    "cause_specific_cox",
    "cumulative_incidence",
    "design_matrix",
    "fine_gray",
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b for tall arrays (BLAS; run inside `blas_threads(1)`)."""
    return a.T @ b


_OPENBLAS = None


def _openblas():
    """numpy's bundled OpenBLAS (get/set thread count), or None if not found."""
    global _OPENBLAS
    if _OPENBLAS is None:
        import ctypes
        import glob
        import os

        _OPENBLAS = False
        libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so*"))):
            try:
                lib = ctypes.CDLL(path)
                get, set_ = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
                _OPENBLAS = (get, set_)
                break
            except (OSError, AttributeError):
                continue
    return _OPENBLAS or None


@contextmanager
def blas_threads(n: int = 1):
    """Run numpy's OpenBLAS with `n` threads inside the block (restored afterwards). The fitters'
    products are tall and thin (100k x 30): on a shared, loaded machine OpenBLAS threads contend
    and a single thread is 5-15 times faster; elsewhere the difference is small. No-op when numpy
    does not bundle OpenBLAS."""
    lib = _openblas()
    if lib is None:
        yield
        return
    get, set_ = lib
    old = get()
    set_(n)
    try:
        yield
    finally:
        set_(old)


def _check_columns(data: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in data; available: {sorted(map(str, data.columns))}")


def _event_codes(event: pd.Series, name: str) -> np.ndarray:
    ev = pd.to_numeric(event, errors="coerce")
    if ev.isna().any():
        raise ValueError(f"event column {name!r} has {int(ev.isna().sum())} non-numeric or missing values")
    ev = ev.to_numpy(dtype=float)
    if (ev < 0).any() or (ev != np.round(ev)).any():
        raise ValueError(f"event column {name!r} must hold integers 0 (censored), 1, 2, ...")
    return ev.astype(int)


def design_matrix(data: pd.DataFrame, covariates, *, reference: dict | None = None):
    """Numeric design matrix from columns: numeric columns as they are, text/categorical columns
    expanded to indicators named ``col[level]`` with the first level (sorted, or `reference[col]`) as
    reference. Returns (matrix as float ndarray, list of term names). Rows must be complete."""
    reference = reference or {}
    blocks, names = [], []
    for c in covariates:
        s = data[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            blocks.append(s.to_numpy(dtype=float)[:, None])
            names.append(str(c))
        else:
            levels = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(s.unique())
            levels = [lv for lv in levels if lv in set(s.unique())]
            ref = reference.get(c, levels[0])
            if ref not in levels:
                raise ValueError(f"reference level {ref!r} of {c!r} not among its levels {levels}")
            for lv in levels:
                if lv == ref:
                    continue
                blocks.append((s == lv).to_numpy(dtype=float)[:, None])
                names.append(f"{c}[{lv}]")
    x = np.hstack(blocks) if blocks else np.zeros((len(data), 0))
    return x, names


# --------------------------------------------------------------------------------------------------
# cumulative incidence (Aalen–Johansen) with Gray's variance, as cmprsk::cuminc
# --------------------------------------------------------------------------------------------------
def _cinc(t: np.ndarray, ev: np.ndarray, cause: int):
    """One curve. Returns distinct times u, cif(u), var(u), n at risk at u, cumulative cause events."""
    order = np.argsort(t, kind="mergesort")
    t, ev = t[order], ev[order]
    n = len(t)
    u, first, counts = np.unique(t, return_index=True, return_counts=True)
    rs = (n - first).astype(float)                                   # at risk just before u
    nd1 = np.add.reduceat((ev == cause).astype(float), first)
    nd = np.add.reduceat((ev != 0).astype(float), first)
    nd2 = nd - nd1
    surv_after = np.cumprod((rs - nd) / rs)                          # KM of all causes, S(u)
    fk = np.concatenate([[1.0], surv_after[:-1]])                    # S(u-)
    fkn = surv_after
    f = np.cumsum(fk * nd1 / rs)                                     # CIF after the jump at u
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_fkn = np.where(fkn > 0, 1.0 / np.where(fkn > 0, fkn, 1.0), 0.0)
        # competing events (cmprsk skips them when S(u) = 0)
        t5 = np.where(nd2 > 1, 1 - (nd2 - 1) / np.maximum(rs - 1, 1), 1.0)
        t6 = np.where((nd2 > 0) & (fkn > 0), fk * fk * t5 * nd2 / (rs * rs), 0.0)
        t4 = f * inv_fkn
        a1, a2, a3 = t4 * t4 * t6, inv_fkn * t4 * t6, inv_fkn * inv_fkn * t6
        # events of the cause of interest
        t5 = np.where(nd1 > 1, 1 - (nd1 - 1) / np.maximum(rs - 1, 1), 1.0)
        t6 = np.where(nd1 > 0, fk * fk * t5 * nd1 / (rs * rs), 0.0)
        t4 = 1 + inv_fkn * f
        b1, b2, b3 = t4 * t4 * t6, inv_fkn * t4 * t6, inv_fkn * inv_fkn * t6
    v1, v2, v3 = np.cumsum(a1 + b1), np.cumsum(a2 + b2), np.cumsum(a3 + b3)
    v_at = v1 + f * f * v3 - 2 * f * v2
    # cmprsk updates the variance only at times with an event of the cause; carry it forward
    idx = np.where(nd1 > 0, np.arange(len(u)), -1)
    idx = np.maximum.accumulate(idx)
    var = np.where(idx >= 0, v_at[np.maximum(idx, 0)], 0.0)
    return u, f, var, rs, np.cumsum(nd1)


def cumulative_incidence(data: pd.DataFrame, *, time: str, event: str, times=None, group=None,
                         causes=None, conf_level: float = 0.95, status: str | None = None) -> pd.DataFrame:
    """Aalen–Johansen cumulative incidence of each cause, with Gray's (cmprsk::cuminc) variance.

    data: one row per subject. time: column of follow-up times (>= 0, e.g. days). event: column coded
    0 = censored, 1, 2, ... = causes. times: evaluation times (same unit as `time`); None = every
    distinct observed time. group: column name or list of names to estimate separately by.
    causes: causes to report (default all observed).
    status: the complete-kinds status variable the counts are cells of (hipfrac.sdc; kinds = the causes
    1, 2, ... in order, then censoring; times in the unit of `time`), e.g. ``OUTCOME_STATUS[...]``
    (default ``cr_status(causes observed)``). Use the same variable wherever the same outcome is counted.
    Returns a tidy DataFrame: [group columns], cause, time, cif, var, se, lower, upper, n_risk, events
    — `cif` is the probability of having had the cause by `time` (right-continuous step function),
    `var` Gray's variance (as cmprsk), `lower`/`upper` pointwise limits on the log(-log) scale,
    `n_risk` the number still under observation at `time` (at risk just after it), `events` the
    cumulative number of events of the cause up to `time`. Times after the last follow-up of a group
    give missing estimates (as cmprsk::timepoints).
    """
    groups = [] if group is None else ([group] if isinstance(group, str) else list(group))
    _check_columns(data, [time, event, *groups])
    d = data[[time, event, *groups]]
    bad = d[[time, event]].isna().any(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} rows have missing {time!r} or {event!r}; drop them explicitly first")
    t_all = pd.to_numeric(d[time]).to_numpy(dtype=float)
    if (t_all < 0).any():
        raise ValueError(f"negative times in {time!r}")
    ev_all = _event_codes(d[event], event)
    all_causes = sorted(int(c) for c in np.unique(ev_all) if c != 0)
    causes = all_causes if causes is None else [int(c) for c in causes]
    z = stats.norm.ppf(0.5 + conf_level / 2)
    if groups:
        keys = d[groups].astype(object).drop_duplicates().sort_values(groups).itertuples(index=False, name=None)
        keys = list(keys)
    else:
        keys = [()]
    frames = []
    for key in keys:
        mask = np.ones(len(d), bool)
        for g, k in zip(groups, key):
            mask &= (d[g] == k).to_numpy()
        t, ev = t_all[mask], ev_all[mask]
        for c in causes:
            u, f, var, rs, cum_ev = _cinc(t, ev, c)
            if times is None:
                tt = u
            else:
                tt = np.asarray(sorted(set(np.asarray(times, dtype=float).tolist())), dtype=float)
            pos = np.searchsorted(u, tt, side="right") - 1
            ok = (tt <= u[-1]) if len(u) else np.zeros(len(tt), bool)
            cif = np.where(pos >= 0, f[np.maximum(pos, 0)], 0.0)
            vv = np.where(pos >= 0, var[np.maximum(pos, 0)], 0.0)
            nev = np.where(pos >= 0, cum_ev[np.maximum(pos, 0)], 0.0)
            n_after = np.array([(t > x).sum() for x in tt]) if len(tt) < 2000 else \
                len(t) - np.searchsorted(np.sort(t), tt, side="right")
            cif, vv = np.where(ok, cif, np.nan), np.where(ok, vv, np.nan)
            se = np.sqrt(vv)
            with np.errstate(divide="ignore", invalid="ignore"):
                k = se / (cif * np.log(cif))
                lower = np.where((cif > 0) & (cif < 1), cif ** np.exp(-z * k), np.where(cif == 0, 0.0, cif))
                upper = np.where((cif > 0) & (cif < 1), cif ** np.exp(z * k), np.where(cif == 0, 0.0, cif))
            fr = pd.DataFrame({"cause": c, "time": tt, "cif": cif, "var": vv, "se": se, "lower": lower,
                               "upper": upper, "n_risk": n_after.astype(int), "events": nev.astype(int)})
            # private: events of the cause after t, up to the next time (after the last: to the end)
            fr["_next"] = np.diff(np.r_[fr["events"].to_numpy(), int((ev == c).sum())])
            for g, k in zip(groups, key):
                fr.insert(groups.index(g), g, k)
            frames.append(fr)
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values([*groups, "cause", "time"], kind="mergesort").reset_index(drop=True)
    return _annotate_cif(out, groups, data, ["events", "n_risk", "_next"], status or cr_status(all_causes),
                         all_causes)


#: status variables of new-fracture outcomes with death competing (hipfrac.sdc complete kinds, times in days
#: since the index fracture): one variable per outcome, the same in notebook 03 (hipfrac.risk) and notebook 04
#: (hipfrac.prevention), so that the run-level audit links every count of the outcome
OUTCOME_STATUS = {"second_hip_fracture": "#fx2[fx,dead,cens]", "any_new_fracture": "#newfx[fx,dead,cens]"}


def cr_status(causes) -> str:
    """Default status variable of a competing-risks count: ``#cr[c1,c2,...,cens]`` (cause k -> kind ck)."""
    return "#cr[" + ",".join(f"c{int(c)}" for c in sorted(causes)) + ",cens]"


def cr_kinds(status: str, causes) -> tuple[dict[int, str], str]:
    """(cause -> kind, censoring kind) of a complete-kinds status variable (hipfrac.sdc): its kinds are the
    causes 1, 2, ... in order, then censoring, e.g. ``#fx2[fx,dead,cens]``: 1 = fx, 2 = dead, 0 = cens."""
    kinds = sdc.complete_kinds(status)
    if kinds is None or len(kinds) < 2:
        raise ValueError(f"status variable {status!r} must name its kinds: '#name[cause1,...,censored]'")
    causes = sorted(int(c) for c in causes)
    if causes and max(causes) > len(kinds) - 1:
        raise ValueError(f"status variable {status!r} names {len(kinds) - 1} cause(s); the data have causes {causes}")
    return {k + 1: kinds[k] for k in range(len(kinds) - 1)}, kinds[-1]


def _after(kinds, t: float) -> str:
    return sdc.status_level(*(sdc.interval_atom(k, float(t), np.inf) for k in kinds))


def _annotate_cif(out: pd.DataFrame, groups, data, counts, status: str, all_causes) -> pd.DataFrame:
    """Disclosure metadata (hipfrac.results): one complete-kinds status variable (`status`, times in days of
    `time`): the cumulative events of cause c by t are the atom ``<kind of c>@-inf-t``, the number under
    observation after t every kind in (t, inf]; the engine cuts the intervals at every time any cell uses, so
    the events between two published times are cells (protected when small). A table also carries them as the
    private count _next (events of the cause after t up to the next time, or to the end after the last), so
    that it is protected on its own too (nothing else published). Rows without a
    number at risk (curve steps between at-risk times) count nothing (a variable of their own, value unknown)."""
    cause_kind, cens = cr_kinds(status, all_causes)
    every = [*cause_kind.values(), cens]
    tt = out["time"].to_numpy(float)
    if "events" in counts:
        out["_lv_ev"] = [sdc.interval_atom(cause_kind[int(c)], -np.inf, t) for c, t in zip(out["cause"], tt)]
    has_risk = out["n_risk"].notna().to_numpy()
    out["_rv"] = np.where(has_risk, status, "#cr_no_count")
    out["_rl"] = [_after(every, t) if h else f"t{t:g}" for t, h in zip(tt, has_risk)]
    if "_next" in counts:
        nxt = out.groupby([*groups, "cause"], sort=False)["time"].shift(-1).fillna(np.inf).to_numpy(float)
        out["_lv_next"] = [sdc.interval_atom(cause_kind[int(c)], t, b) for c, t, b in zip(out["cause"], tt, nxt)]
    cnt = {"events": {status: "{_lv_ev}"}, "n_risk": {"{_rv}": "{_rl}"}, "_next": {status: "{_lv_next}"}}
    est = [c for c in ("cif", "var", "se", "lower", "upper") if c in out.columns]
    pub = [c for c in counts if not c.startswith("_")]
    return results.annotate(out, counts={c: cnt[c] for c in counts}, dims={g: g for g in groups},
                            derived={c: pub for c in est}, private=[c for c in counts if c.startswith("_")],
                            labels=[c for c in ("cause", "time", "step", "_lv_ev", "_rv", "_rl", "_lv_next")
                                    if c in out.columns],
                            source=data, kind="figure" if "step" in out.columns else "table")


def cif_curves(data: pd.DataFrame, *, time: str, event: str, group=None, causes=None, min_events: int,
               at_risk_times, conf_level: float = 0.95, status: str | None = None) -> pd.DataFrame:
    """Cumulative incidence curves for plotting, steps merged for disclosure control (hipfrac.curves):
    the CIF of a cause (with its log(-log) CI, as cumulative_incidence) is given at time 0 and where the
    events of the cause since the previous given step reach `min_events` (params export.min_cell); n_risk
    (under observation after t) only at `at_risk_times`. Columns: [group], cause, time, cif, lower, upper,
    n_risk, step. An annotated result (status: as cumulative_incidence; its numbers at risk are the
    table's cells at the same times)."""
    groups = [] if group is None else ([group] if isinstance(group, str) else list(group))
    _check_columns(data, [time, event, *groups])
    d = data[[time, event, *groups]]
    t_all = pd.to_numeric(d[time]).to_numpy(dtype=float)
    ev_all = _event_codes(d[event], event)
    all_causes = sorted(int(c) for c in np.unique(ev_all) if c != 0)
    causes = all_causes if causes is None else [int(c) for c in causes]
    z = stats.norm.ppf(0.5 + conf_level / 2)
    keys = list(d[groups].astype(object).drop_duplicates().sort_values(groups).itertuples(index=False, name=None)) \
        if groups else [()]
    frames = []
    for key in keys:
        mask = np.ones(len(d), bool)
        for g, k in zip(groups, key):
            mask &= (d[g] == k).to_numpy()
        t, ev = t_all[mask], ev_all[mask]
        srt = np.sort(t)
        for c in causes:
            u, f, var, rs, cum_ev = _cinc(t, ev, c)
            nd = np.diff(np.r_[0.0, cum_ev])
            se = np.sqrt(var)
            with np.errstate(divide="ignore", invalid="ignore"):
                k = se / (f * np.log(f))
                lower = np.where((f > 0) & (f < 1), f ** np.exp(-z * k), np.where(f == 0, 0.0, f))
                upper = np.where((f > 0) & (f < 1), f ** np.exp(z * k), np.where(f == 0, 0.0, f))
            mc = curves.merge_steps(u, nd, {"cif": f, "lower": lower, "upper": upper},
                                    {"cif": 0.0, "lower": 0.0, "upper": 0.0}, min_events=min_events,
                                    at_risk_times=at_risk_times, last_time=t.max() if len(t) else 0.0,
                                    n_risk_at=lambda x, srt=srt: len(srt) - np.searchsorted(srt, x, "right"))
            fr = mc.frame()
            fr.insert(0, "cause", c)
            fr["step"] = mc.step
            for g, kk in zip(groups, key):
                fr.insert(groups.index(g), g, kk)
            frames.append(fr)
    out = pd.concat(frames, ignore_index=True)
    return _annotate_cif(out, groups, data, ["n_risk"], status or cr_status(all_causes), all_causes)


# --------------------------------------------------------------------------------------------------
# Fine–Gray subdistribution hazard regression, as cmprsk::crr
# --------------------------------------------------------------------------------------------------
class _FGData:
    """Sorted data and the pieces of the weighted risk sets that do not depend on beta."""

    def __init__(self, t, status, x):
        order = np.argsort(t, kind="mergesort")
        self.t, self.status, self.x = t[order], status[order], x[order]
        self.order = order
        n = len(self.t)
        self.n = n
        u, first, counts = np.unique(self.t, return_index=True, return_counts=True)
        inv = np.repeat(np.arange(len(u)), counts)
        cens = (self.status == 0).astype(float)
        c = np.add.reduceat(cens, first)
        y = (n - first).astype(float)
        g_after = np.cumprod(1 - c / y)                                  # censoring KM, G(u)
        g_left = np.concatenate([[1.0], g_after[:-1]])                   # G(u-)
        self.G = g_left[inv]                                             # G(t_i-) per subject
        self.u, self.first, self.inv = u, first, inv
        self.c_u, self.y_u = c, y                                        # censorings and at risk per time
        self.type1 = self.status == 1
        self.type2 = self.status == 2
        # distinct cause-1 event times, their multiplicity d_m, start index in sorted data, G(tau_m-)
        ev_u = np.add.reduceat(self.type1.astype(float), first)
        m = ev_u > 0
        self.tau, self.d, self.tau_first = u[m], ev_u[m], first[m]
        self.tau_u = np.flatnonzero(m)                                   # position of tau_m among u
        self.any_type2 = bool(self.type2.any())
        self.G_tau = g_left[m]
        self.sum_x_events = self.x[self.type1].sum(axis=0)
        # index of each subject's time among tau: number of tau <= t_i
        self.n_tau_le = np.searchsorted(self.tau, self.t, side="right")
        self.event_m = self.n_tau_le - 1                                 # for type-1 subjects: own tau

    def risk_sums(self, beta, need_s1: bool = True):
        """S0_m, S1_m (D x p) at each distinct cause-1 time, and per-subject exp(x'b). Sums are
        first aggregated per distinct time (np.add.reduceat), then cumulated over the distinct times."""
        eta = self.x @ beta
        e = np.exp(eta)
        first, m_idx = self.first, self.tau_u
        # sums over subjects with t >= tau_m: reverse cumulative sums over distinct times
        g0 = np.add.reduceat(e, first)
        rev0 = np.cumsum(g0[::-1])[::-1]
        s0 = rev0[m_idx]
        s1 = None
        if need_s1:
            g1 = np.add.reduceat(e[:, None] * self.x, first, axis=0)
            s1 = np.cumsum(g1[::-1], axis=0)[::-1][m_idx]
        if self.any_type2:
            # sums over competing-event subjects with t < tau_m, weighted 1/G(t_k-)
            w2 = np.where(self.type2, e / self.G, 0.0)
            f0 = np.concatenate([[0.0], np.cumsum(np.add.reduceat(w2, first))])
            s0 = s0 + self.G_tau * f0[m_idx]
            if need_s1:
                f1 = np.vstack([np.zeros((1, self.x.shape[1])),
                                np.cumsum(np.add.reduceat(w2[:, None] * self.x, first, axis=0), axis=0)])
                s1 = s1 + self.G_tau[:, None] * f1[m_idx]
        return e, eta, s0, s1

    def loglik(self, beta):
        e, eta, s0, _ = self.risk_sums(beta, need_s1=False)
        return float(eta[self.type1].sum() - (self.d * np.log(s0)).sum())

    def _subject_weights(self, e, s0, xbar, need_b: bool = True):
        """a_i = sum_m d_m w_i(tau_m)/S0_m and b_i = sum_m d_m w_i(tau_m) xbar_m / S0_m."""
        r0 = self.d / s0                                    # D
        c0 = np.concatenate([[0.0], np.cumsum(r0)])          # sum over tau <= t: index n_tau_le
        k = self.n_tau_le
        a = e * c0[k]
        if self.any_type2:
            w2 = np.where(self.type2, 1.0 / self.G, 0.0)
            g0 = self.G_tau * r0
            t0 = np.concatenate([np.cumsum(g0[::-1])[::-1], [0.0]])   # sum over tau > t: index n_tau_le
            a = a + e * w2 * t0[k]
        if not need_b:
            return a, None
        r1 = r0[:, None] * xbar                              # D x p
        c1 = np.vstack([np.zeros((1, xbar.shape[1])), np.cumsum(r1, axis=0)])
        b = e[:, None] * c1[k]
        if self.any_type2:
            g1 = self.G_tau[:, None] * r1
            t1 = np.vstack([np.cumsum(g1[::-1], axis=0)[::-1], np.zeros((1, xbar.shape[1]))])
            b = b + (e * w2)[:, None] * t1[k]
        return a, b

    def derivatives(self, beta):
        """log-likelihood, score and information (negative Hessian)."""
        e, eta, s0, s1 = self.risk_sums(beta)
        xbar = s1 / s0[:, None]
        ll = float(eta[self.type1].sum() - (self.d * np.log(s0)).sum())
        score = self.sum_x_events - (self.d[:, None] * xbar).sum(axis=0)
        a, _ = self._subject_weights(e, s0, xbar, need_b=False)
        info = _gram(self.x * a[:, None], self.x) - _gram(xbar * self.d[:, None], xbar)
        return ll, score, info, (e, s0, xbar)

    def sandwich_meat(self, beta, cache):
        """Sum of outer products of crr's influence terms eta_i + psi_i (cmprsk Fortran crrvv)."""
        e, s0, xbar = cache
        a, b = self._subject_weights(e, s0, xbar)
        eta_i = -(a[:, None] * self.x - b)
        ev = self.type1
        eta_i[ev] += self.x[ev] - xbar[self.event_m[ev]]
        # psi: the part from estimating the censoring distribution
        p = self.x.shape[1]
        w2 = np.where(self.type2, e / self.G, 0.0)
        cum0 = np.concatenate([[0.0], np.cumsum(w2)])                       # competing, t < u
        cum1 = np.vstack([np.zeros((1, p)), np.cumsum(w2[:, None] * self.x, axis=0)])
        r0 = self.d * self.G_tau / s0
        r1 = r0[:, None] * xbar
        R0 = np.concatenate([np.cumsum(r0[::-1])[::-1], [0.0]])             # tau >= u
        R1 = np.vstack([np.cumsum(r1[::-1], axis=0)[::-1], np.zeros((1, p))])
        k_tau = np.searchsorted(self.tau, self.u, side="left")             # first tau >= u
        fu = self.first                                                     # first subject with t >= u
        q = cum1[fu] * R0[k_tau][:, None] - cum0[fu][:, None] * R1[k_tau]   # q(u) per distinct time
        step = np.where(self.c_u[:, None] > 0, q * (self.c_u / self.y_u ** 2)[:, None], 0.0)
        cum_step = np.cumsum(step, axis=0)                                   # censoring times <= u
        psi = -cum_step[self.inv]
        cens = self.status == 0
        psi[cens] += q[self.inv[cens]] / self.y_u[self.inv[cens]][:, None]
        infl = eta_i + psi
        return _gram(infl, infl), infl


def _newton(fg: _FGData, p: int, init=None, tol: float = 1e-9, max_iter: int = 50):
    beta = np.zeros(p) if init is None else np.asarray(init, float).copy()
    ll, score, info, cache = fg.derivatives(beta)
    converged = False
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError as exc:
            raise ValueError("Fine-Gray information matrix is singular: collinear or constant covariates?") from exc
        new = beta + step
        ll_new = fg.loglik(new)
        halvings = 0
        while not np.isfinite(ll_new) or ll_new < ll + 1e-4 * float(step @ score):
            step = step / 2
            new = beta + step
            ll_new = fg.loglik(new)
            halvings += 1
            if halvings > 30:
                break
        beta = new
        ll, score, info, cache = fg.derivatives(beta)
        if np.max(np.abs(step)) < tol and np.max(np.abs(score) * np.maximum(np.abs(beta), 1)) < tol * max(abs(ll), 1):
            converged = True
            break
        if np.max(np.abs(score) * np.maximum(np.abs(beta), 1)) < 1e-12 * max(abs(ll), 1):
            converged = True
            break
    return beta, ll, score, info, cache, converged


class FineGrayFitter:
    """Fine & Gray (1999) proportional subdistribution hazards model, as cmprsk::crr.

        fgf = FineGrayFitter().fit(df, duration_col="days", event_col="event", cause=1,
                                   covariates=["age", "male", "asa_group"])
        fgf.summary      # term, coef, se, hr, lower, upper, z, p
        fgf.predict_cumulative_incidence(profiles, times=[365, 730])

    Rows with a missing value in any used column are dropped and counted (`n_dropped`), as
    crr's na.omit. Text columns become indicator terms ``col[level]`` (first sorted level is the
    reference unless `reference={"col": level}`).
    """

    def __init__(self, conf_level: float = 0.95):
        self.conf_level = conf_level

    def fit(self, data: pd.DataFrame, duration_col: str, event_col: str, cause: int = 1,
            covariates=None, reference: dict | None = None, tol: float = 1e-9, max_iter: int = 50):
        covariates = list(covariates) if covariates is not None else \
            [c for c in data.columns if c not in (duration_col, event_col)]
        if not covariates:
            raise ValueError("Fine-Gray needs at least one covariate")
        _check_columns(data, [duration_col, event_col, *covariates])
        d = data[[duration_col, event_col, *covariates]]
        keep = ~d.isna().any(axis=1)
        self.n_dropped = int((~keep).sum())
        d = d[keep]
        ev = _event_codes(d[event_col], event_col)
        if not (ev == cause).any():
            raise ValueError(f"no events of cause {cause} in {event_col!r}")
        t = pd.to_numeric(d[duration_col]).to_numpy(dtype=float)
        if (t < 0).any():
            raise ValueError(f"negative times in {duration_col!r}")
        status = np.where(ev == cause, 1, np.where(ev == 0, 0, 2))
        x, names = design_matrix(d, covariates, reference=reference)
        self._covariates, self._reference, self.terms = covariates, reference, names
        with blas_threads(1):
            fg = _FGData(t, status, x)
            beta, ll, score, info, cache, conv = _newton(fg, x.shape[1], tol=tol, max_iter=max_iter)
            if not conv:
                raise RuntimeError(f"Fine-Gray Newton-Raphson did not converge in {max_iter} iterations "
                                   f"(max |score| {np.max(np.abs(score)):.3g})")
            meat, infl = fg.sandwich_meat(beta, cache)
        h = np.linalg.inv(info)
        self.variance_matrix_ = h @ meat @ h
        self.naive_variance_ = h
        self.params_ = beta
        self.log_likelihood_ = ll
        self.log_likelihood_null_ = fg.loglik(np.zeros_like(beta))
        self.n, self.events, self.competing = len(t), int((status == 1).sum()), int((status == 2).sum())
        self.cause = cause
        # Breslow estimate of the baseline cumulative subdistribution hazard at the cause's times
        _, _, s0, _ = fg.risk_sums(beta)
        self.baseline_cumulative_hazard_ = pd.DataFrame({"time": fg.tau, "cumhaz": np.cumsum(fg.d / s0)})
        se = np.sqrt(np.diag(self.variance_matrix_))
        z = beta / se
        q = stats.norm.ppf(0.5 + self.conf_level / 2)
        self.summary = pd.DataFrame({
            "term": names, "coef": beta, "se": se, "hr": np.exp(beta),
            "lower": np.exp(beta - q * se), "upper": np.exp(beta + q * se),
            "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
        })
        return self

    def predict_cumulative_incidence(self, profiles: pd.DataFrame, times) -> pd.DataFrame:
        """CIF of the cause for covariate profiles: 1 - exp(-exp(x'b) Lambda_1(t)).
        profiles: rows of covariate values (text columns must use levels seen in the fit)."""
        x = np.zeros((len(profiles), len(self.terms)))
        for j, term in enumerate(self.terms):
            if "[" in term and term.endswith("]"):
                col, lv = term[:-1].split("[", 1)
                x[:, j] = (profiles[col].astype(str) == lv).to_numpy(float)
            else:
                x[:, j] = profiles[term].to_numpy(float)
        lp = x @ self.params_
        bh = self.baseline_cumulative_hazard_
        times = np.asarray(times, float)
        pos = np.searchsorted(bh["time"].to_numpy(), times, side="right") - 1
        ch = np.where(pos >= 0, bh["cumhaz"].to_numpy()[np.maximum(pos, 0)], 0.0)
        rows = []
        for i in range(len(profiles)):
            rows.append(pd.DataFrame({"profile": i, "time": times, "cif": 1 - np.exp(-np.exp(lp[i]) * ch)}))
        return pd.concat(rows, ignore_index=True)


def fine_gray(data: pd.DataFrame, *, time: str, event: str, cause: int = 1, covariates,
              reference: dict | None = None, conf_level: float = 0.95) -> pd.DataFrame:
    """Fine–Gray subdistribution hazard ratios for `cause` (cmprsk::crr). Returns a tidy DataFrame
    term, coef, se, hr, lower, upper, p (+ z, n, events, n_dropped); see `FineGrayFitter`."""
    f = FineGrayFitter(conf_level=conf_level).fit(data, time, event, cause=cause, covariates=covariates,
                                                  reference=reference)
    out = f.summary[["term", "coef", "se", "hr", "lower", "upper", "p", "z"]].copy()
    out["n"], out["events"], out["n_dropped"] = f.n, f.events, f.n_dropped
    return out


# --------------------------------------------------------------------------------------------------
# cause-specific Cox (lifelines)
# --------------------------------------------------------------------------------------------------
def cause_specific_cox(data: pd.DataFrame, *, time: str, event: str, cause: int = 1, covariates,
                       reference: dict | None = None, cluster: str | None = None,
                       conf_level: float = 0.95) -> pd.DataFrame:
    """Cause-specific hazard ratios for `cause`: a Cox model (lifelines, Efron ties) in which the
    competing causes are censored at their time. Returns term, coef, se, hr, lower, upper, p, n, events.
    cluster: optional column for cluster-robust (sandwich) standard errors."""
    from lifelines import CoxPHFitter

    cols = [time, event, *covariates] + ([cluster] if cluster else [])
    _check_columns(data, cols)
    d = data[cols].dropna()
    n_dropped = len(data) - len(d)
    x, names = design_matrix(d, covariates, reference=reference)
    df = pd.DataFrame(x, columns=names, index=d.index)
    df["_t"] = pd.to_numeric(d[time]).astype(float)
    df["_e"] = (_event_codes(d[event], event) == cause).astype(int)
    kw = {}
    if cluster:
        df["_cl"] = d[cluster].astype(str).to_numpy()
        kw = {"cluster_col": "_cl", "robust": True}
    cph = CoxPHFitter(alpha=1 - conf_level).fit(df, "_t", "_e", **kw)
    s = cph.summary
    out = pd.DataFrame({
        "term": list(s.index), "coef": s["coef"].to_numpy(), "se": s["se(coef)"].to_numpy(),
        "hr": s["exp(coef)"].to_numpy(),
        "lower": s[[c for c in s.columns if c.startswith("exp(coef) lower")][0]].to_numpy(),
        "upper": s[[c for c in s.columns if c.startswith("exp(coef) upper")][0]].to_numpy(),
        "p": s["p"].to_numpy(),
    })
    out["n"], out["events"], out["n_dropped"] = len(df), int(df["_e"].sum()), n_dropped
    return out
