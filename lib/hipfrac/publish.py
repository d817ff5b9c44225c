"""Publish a run: replace outputs/<run>/ with its staging area outputs/.work/<run>/ in one step.

Notebooks execute into the staging area (hipfrac.runner); `make` runs the manifest and the disclosure
scan there, and only when every notebook succeeded and the scan is clean does `publish` copy the staging
area to a temporary directory beside outputs/<run>/ and swap it in with renames. So outputs/<run>/ always
holds one complete, scanned run: a failing notebook or a scan finding leaves the previous run in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hipfrac.params import load

SKIP = (".failed", ".tmp-", ".old-")


def publish(params) -> Path:
    """Swap the run's staging area into outputs/<run>/; return the published directory."""
    src: Path = params.work_dir
    dst: Path = params.output_dir
    if not src.is_dir():
        raise FileNotFoundError(f"nothing to publish: {src} does not exist (run the notebooks first: make all)")
    tmp = dst.parent / f".publish-{params.run}-{os.getpid()}"
    old = dst.parent / f".old-{params.run}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=lambda d, names: [n for n in names if n.startswith(SKIP)])
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def cli(args) -> int:
    """python -m hipfrac publish --params P"""
    dst = publish(load(args.params))
    print(f"published: {dst}")
    return 0
