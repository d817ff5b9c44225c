"""Annotated results of notebook 00's overview tables: the cohort flowchart and the extract summaries.

    from hipfrac import overview
    flow = overview.flowchart(companion("flowchart"))          # counts of fracture events per step
    out.table(flow, "flowchart"); out.figure("flowchart", cohortfig.flowchart_figure, flow, title=...)
    out.table(overview.extracts(companion("extracts")), "extracts")
    out.table(overview.validation_report(companion("validation_report")), "validation_report")

Disclosure metadata (hipfrac.results):

* **flowchart** - universe ``fracture_events`` (hip fracture events found in the extracts). One status
  variable ``#flow`` whose atoms are the exclusion steps (``step<k>``) and ``kept`` (the index fractures):
  n_excluded of step k is ``step<k>``, n_in is every atom from step k on, n_out every atom after it. So the
  audit knows that remaining = previous - excluded along the whole chain (n_out of a step is the same cell
  as n_in of the next): a small exclusion is withheld with a complement and the running counts that would
  reveal it, and the table's meta lists the withheld cells.
* **extracts** - universe ``records:<source>`` (rows of each delivered file: two files never add up); status
  ``#validation``: n_read = every row, n_dropped = ``dropped``, n_kept = ``kept``.
* **validation_report** - the same universe; per problem its own status variable
  ``#problem:<column>:<problem>`` (a row can have several problems), count = ``found``.
"""

from __future__ import annotations

import pandas as pd

from hipfrac import results

__all__ = ["EXTRACT_UNIVERSE", "FLOW_UNIVERSE", "extracts", "flowchart", "validation_report"]

FLOW_UNIVERSE = "fracture_events"
EXTRACT_UNIVERSE = "records:{source}"  # one universe per delivered file: records of two files never add up
KEPT = "kept"


def flowchart(flow: pd.DataFrame) -> pd.DataFrame:
    """The cohort's flowchart (companion "flowchart": step, label, n_in, n_excluded, n_out) as an annotated
    result (status variable #flow, see the module doc). Raises ValueError if the chain does not add up
    (n_in - n_excluded != n_out, or n_out of a step != n_in of the next)."""
    f = flow.reset_index(drop=True)[["step", "label", "n_in", "n_excluded", "n_out"]].copy()
    for c in ("n_in", "n_excluded", "n_out"):
        f[c] = pd.to_numeric(f[c]).astype("int64")
    if (f["n_in"] - f["n_excluded"] != f["n_out"]).any() or (f["n_out"].iloc[:-1].to_numpy()
                                                              != f["n_in"].iloc[1:].to_numpy()).any():
        raise ValueError("flowchart: the steps do not add up (n_in - n_excluded = n_out = next n_in)")
    atoms = [f"step{s}" for s in f["step"]]
    f["_in"] = ["|".join(atoms[k:] + [KEPT]) for k in range(len(f))]
    f["_ex"] = atoms
    f["_out"] = ["|".join(atoms[k + 1:] + [KEPT]) for k in range(len(f))]
    return results.annotate(f, counts={"n_in": {"#flow": "{_in}"}, "n_excluded": {"#flow": "{_ex}"},
                                       "n_out": {"#flow": "{_out}"}},
                            labels=["step", "label", "_in", "_ex", "_out"], universe=FLOW_UNIVERSE,
                            population_conds=[])


def extracts(ext: pd.DataFrame) -> pd.DataFrame:
    """Rows read, dropped by validation and kept per registry extract (companion "extracts") as an
    annotated result: source, format, n_read, n_dropped, n_kept (universe records:extracts)."""
    e = ext[["source", "format", "n_read", "n_dropped", "n_kept"]].reset_index(drop=True).copy()
    return results.annotate(e, counts={"n_read": {}, "n_dropped": {"#validation": "dropped"},
                                       "n_kept": {"#validation": "kept"}},
                            labels=["source", "format"], universe=EXTRACT_UNIVERSE, population_conds=[])


def validation_report(report: pd.DataFrame) -> pd.DataFrame:
    """Problems found by the validation of the extracts (companion "validation_report") as an annotated
    result: source, column, problem, severity, action, count (rows with the problem)."""
    r = report[["source", "column", "problem", "severity", "action", "count"]].reset_index(drop=True).copy()
    r["count"] = pd.to_numeric(r["count"]).astype("int64")
    return results.annotate(r, counts={"count": {"#problem:{column}:{problem}": "found"}},
                            labels=["source", "column", "problem", "severity", "action"],
                            universe=EXTRACT_UNIVERSE, population_conds=[])
