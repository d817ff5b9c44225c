"""Publish a run: replace outputs/<run>/ with its staging area outputs/.work/<run>/ in one step.

Notebooks execute into the staging area (hipfrac.runner); `make` runs the manifest and the disclosure
scan there, and only when every notebook succeeded and the scan is clean does `publish` copy the staging
area to a temporary directory beside outputs/<run>/ and swap it in with renames. So outputs/<run>/ always
holds one complete, scanned run: a failing notebook or a scan finding leaves the previous run in place.

Publish refuses unless the copy holds exactly the bytes of the last clean scan (hipfrac.digest: the scan
records a digest of every file, publish recomputes it on the copy it is about to swap in). The run's
private audit store (outputs/.work/<run>.audit) and interactive runs (outputs/.interactive) are never
published.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hipfrac import digest, safepaths
from hipfrac.params import load


class PublishError(RuntimeError):
    """The staging area may not be published (not scanned, or changed since)."""


def publish(params) -> Path:
    """Swap the run's staging area into outputs/<run>/; return the published directory."""
    src: Path = params.work_dir
    dst: Path = params.output_dir
    if not src.is_dir():
        raise FileNotFoundError(f"nothing to publish: {src} does not exist (run the notebooks first: make all)")
    tmp = dst.parent / f".publish-{params.run}-{os.getpid()}"
    safepaths.check_replaceable(dst)   # replace only a directory hipfrac made (hipfrac.safepaths)
    safepaths.remove(tmp)
    shutil.copytree(src, tmp, ignore=lambda d, names: [n for n in names if n.startswith(".")])
    try:
        digest.verify(src, tmp)
    except digest.NotScanned as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PublishError(f"not published: {exc}") from None
    safepaths.replace(tmp, dst)
    return dst


def cli(args) -> int:
    """python -m hipfrac publish --params P"""
    try:
        dst = publish(load(args.params))
    except (PublishError, FileNotFoundError, safepaths.NotOwnedError) as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 1
    print(f"published: {dst}")
    return 0
