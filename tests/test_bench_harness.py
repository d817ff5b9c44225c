"""The benchmark harness measures (it does not judge speed in tests): wall time, peak memory, exit code."""

import sys

from hipfrac import bench


def test_measure_records_peak_memory_of_the_process_tree():
    # a child that holds ~200 MB for a moment: the sampled peak must see it
    code = "import time; b = bytearray(200_000_000); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"
    rec = bench.measure([sys.executable, "-c", code])
    assert rec["returncode"] == 0
    assert rec["peak_gb"] >= 0.18
    assert rec["seconds"] >= 0.5


def test_measure_reports_failure_and_output():
    rec = bench.measure([sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    assert rec["returncode"] == 3 and "hello" in rec["output_tail"]


def test_verdicts_follow_the_issue_targets():
    national = {"cohort": 40.0}
    assert bench._verdict({"scale": 1, "stage": "cohort", "seconds": 59, "peak_gb": 1, "returncode": 0}, national) == "ok"
    assert bench._verdict({"scale": 1, "stage": "cohort", "seconds": 61, "peak_gb": 1, "returncode": 0}, national) == "OVER TARGET"
    assert bench._verdict({"scale": 4, "stage": "cohort", "seconds": 170, "peak_gb": 9, "returncode": 0}, national) == "ok"
    assert bench._verdict({"scale": 4, "stage": "cohort", "seconds": 190, "peak_gb": 9, "returncode": 0}, national) == "OVER TARGET"
    assert bench._verdict({"scale": 1, "stage": "synth", "seconds": 1, "peak_gb": 1, "returncode": 1}, national) == "FAILED"
