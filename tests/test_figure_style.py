"""Shared figure helpers."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hipfrac.figures import style  # noqa: E402


def test_ci_err_clips_intervals_that_exclude_the_estimate():
    # a 5-replicate bootstrap interval can lie wholly above the estimate
    err = style.ci_err([0.80, 0.50], [0.81, 0.40], [0.90, 0.70])
    np.testing.assert_allclose(err, [[0.0, 0.10], [0.10, 0.20]])
    fig, ax = plt.subplots()
    ax.errorbar([0.80, 0.50], [0, 1], xerr=err, fmt="o")  # matplotlib refuses negative half-widths
    plt.close(fig)
