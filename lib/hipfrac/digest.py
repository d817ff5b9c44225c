"""What was scanned is what is published: a digest of exactly the bytes of a run's files.

`hipfrac scan <run dir>` writes, when the scan is clean, ``<run dir>.scan.json`` beside the run directory
(the digest of every file it scanned); `hipfrac publish` copies the staging area, computes the digest of
the copy and publishes only when it equals the recorded one. A file changed, added or removed after the
scan (or a scan that failed, or never ran) stops the publication.

Files and folders whose name starts with "." (.failed/, .tmp-*, .old-*, .ipynb_checkpoints) are neither
scanned nor published.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SUFFIX = ".scan.json"


def is_hidden(rel: Path) -> bool:
    """A path (relative to the run directory) that is neither scanned nor published."""
    return any(part.startswith(".") for part in rel.parts)


def files(root: Path) -> list[Path]:
    """The run's files that are scanned and published, sorted (relative paths)."""
    root = Path(root)
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and not is_hidden(p.relative_to(root)))


def run_digest(root: Path) -> tuple[str, int]:
    """(sha256 over every file's relative path and content, number of files)."""
    root = Path(root)
    h = hashlib.sha256()
    names = files(root)
    for rel in names:
        f = hashlib.sha256()
        with open(root / rel, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                f.update(chunk)
        h.update(rel.as_posix().encode("utf-8") + b"\0" + f.hexdigest().encode() + b"\n")
    return h.hexdigest(), len(names)


def record_path(root: Path) -> Path:
    root = Path(root)
    return root.parent / f"{root.name}{SUFFIX}"


def record(root: Path, min_cell: int) -> Path:
    """Record the digest of a run directory whose scan was clean."""
    digest, n = run_digest(root)
    p = record_path(root)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps({"digest": digest, "files": n, "min_cell": int(min_cell)}, indent=1) + "\n",
                   encoding="utf-8")
    tmp.replace(p)
    return p


def forget(root: Path) -> None:
    """Remove a recorded digest (a scan with findings)."""
    record_path(root).unlink(missing_ok=True)


class NotScanned(RuntimeError):
    """The bytes to publish are not the bytes a clean scan saw."""


def verify(scanned_root: Path, copy: Path) -> None:
    """Raise NotScanned unless `copy` holds exactly the files of the clean scan of `scanned_root`."""
    p = record_path(scanned_root)
    if not p.exists():
        raise NotScanned(f"{scanned_root} has no clean disclosure scan ({p.name} is missing): run "
                         f"`python -m hipfrac scan {scanned_root}` (make does) and fix its findings first")
    rec = json.loads(p.read_text(encoding="utf-8"))
    digest, n = run_digest(copy)
    if digest != rec.get("digest"):
        raise NotScanned(f"{scanned_root} changed after its disclosure scan ({n} files now, {rec.get('files')} "
                         f"scanned): scan it again before publishing")
