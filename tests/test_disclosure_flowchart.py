"""A flowchart's small exclusions cannot be recovered from the running counts."""

import numpy as np
import pandas as pd

from hipfrac.disclosure import protect_flowchart


def _flow(excl, start=1000):
    n_in, rows = start, []
    for i, e in enumerate(excl):
        rows.append({"step": i + 1, "label": f"reason {i + 1}", "n_in": n_in, "n_excluded": e, "n_out": n_in - e})
        n_in -= e
    return pd.DataFrame(rows)


def _recoverable(pub: pd.DataFrame, orig: pd.DataFrame) -> list[int]:
    """Exclusions that follow from published cells by the flowchart's identities."""
    found = []
    for k in range(len(pub)):
        if not pd.isna(pub.loc[k, "n_excluded"]):
            continue
        a = pub.loc[k, "n_in"] if not pd.isna(pub.loc[k, "n_in"]) else (
            pub.loc[k - 1, "n_out"] if k > 0 and not pd.isna(pub.loc[k - 1, "n_out"]) else np.nan)
        b = pub.loc[k, "n_out"] if not pd.isna(pub.loc[k, "n_out"]) else (
            pub.loc[k + 1, "n_in"] if k + 1 < len(pub) and not pd.isna(pub.loc[k + 1, "n_in"]) else np.nan)
        if not (pd.isna(a) or pd.isna(b)):
            found.append(k)
    # the total of withheld exclusions is start - end - published exclusions: one withheld cell = exposed
    withheld = pub["n_excluded"].isna().sum()
    if withheld == 1:
        found.append(int(pub.index[pub["n_excluded"].isna()][0]))
    return found


def test_small_exclusion_and_its_complement_are_withheld_with_the_running_counts():
    flow = _flow([100, 3, 0, 40, 7])
    pub = protect_flowchart(flow, 5)
    assert pd.isna(pub.loc[1, "n_excluded"])
    assert pd.isna(pub.loc[4, "n_excluded"]), "smallest other non-zero exclusion is the complement"
    assert pub.loc[3, "n_excluded"] == 40 and pub.loc[0, "n_excluded"] == 100
    assert pub.loc[0, "n_in"] == 1000 and pub.loc[4, "n_out"] == flow.loc[4, "n_out"], "start and end stay"
    assert not _recoverable(pub, flow)


def test_two_small_exclusions_summing_to_less_than_threshold_get_a_third():
    pub = protect_flowchart(_flow([2, 50, 1, 30]), 5)
    assert pub["n_excluded"].isna().sum() == 3 and pd.isna(pub.loc[3, "n_excluded"])
    assert not _recoverable(pub, _flow([2, 50, 1, 30]))


def test_no_small_exclusion_leaves_the_flowchart_as_is():
    flow = _flow([100, 0, 40])
    pd.testing.assert_frame_equal(protect_flowchart(flow, 5), flow)


def test_single_nonzero_exclusion_hides_every_later_running_count():
    pub = protect_flowchart(_flow([0, 3, 0]), 5)
    assert pd.isna(pub.loc[1, "n_excluded"]) and pd.isna(pub.loc[1, "n_out"]) and pd.isna(pub.loc[2, "n_out"])
    assert pd.isna(pub.loc[2, "n_in"])


def test_flowchart_figure_draws_withheld_counts():
    import matplotlib

    matplotlib.use("Agg")
    from hipfrac.figures.cohort import flowchart_figure

    pub = protect_flowchart(_flow([100, 3, 0, 40, 7]), 5)
    pub = pub.astype({"n_in": "Int64", "n_excluded": "Int64", "n_out": "Int64"})  # pd.NA, as the Exporter gives
    fig = flowchart_figure(pub)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("withheld" in t for t in texts) and not any("n = 3" in t for t in texts)
