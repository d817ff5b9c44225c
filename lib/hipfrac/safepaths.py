"""Directories hipfrac may write, replace and delete: only its own.

A directory hipfrac creates for generated data or outputs (data/synthetic/<name>, data/cohort/<run>,
outputs/.work/<run>/<notebook>, outputs/<run>, the supplement, temporary and old copies beside them)
carries the marker file `.hipfrac-owned`. hipfrac deletes a directory, or replaces it by renaming another
over it, only when it carries the marker (or does not exist, or is empty): a params `out_dir` pointing at
an existing folder of someone's work is refused with an error saying what to do, and nothing in it is
touched.

    tmp = safepaths.make_owned(out.parent / ".x.tmp")   # new, marked directory (an old marked one is removed)
    ...write into tmp...
    safepaths.replace(tmp, out)                          # out must be hipfrac's own (or absent / empty)
    safepaths.remove(old)                                # rmtree only if marked

Where directories may be: `inside_project(path, key, allow_outside)` (used by the params validation):
outside the project only when the params key `allow_outside_project` is true.

A directory generated before markers existed has none: hipfrac refuses to replace it and the error tells
how to adopt it (`python -m hipfrac.safepaths adopt DIR`, which checks that the directory looks like
hipfrac's own output) or to delete it by hand.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MARKER = ".hipfrac-owned"
_MARKER_TEXT = "This directory was created by hipfrac, which may replace or delete it.\n"

__all__ = ["MARKER", "NotOwnedError", "OutsideProjectError", "adopt", "check_replaceable", "claim", "ensure_dir",
           "inside_project", "make_owned", "mark", "owned", "remove", "replace"]


class NotOwnedError(RuntimeError):
    """hipfrac was asked to replace or delete a directory it did not create."""


class OutsideProjectError(ValueError):
    """A directory from params lies outside the project and params do not allow it."""


def owned(path: str | Path) -> bool:
    """True when `path` is a directory carrying hipfrac's marker file (not a symlink)."""
    p = Path(path)
    return p.is_dir() and not p.is_symlink() and (p / MARKER).is_file()


def mark(path: str | Path) -> Path:
    """Write the marker into an existing directory (one hipfrac created); returns the directory."""
    p = Path(path)
    (p / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    return p


def _empty(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and not any(p.iterdir())


def _refuse(p: Path, what: str) -> NotOwnedError:
    return NotOwnedError(
        f"{p} exists and was not made by hipfrac (no {MARKER} marker file in it), so hipfrac will not "
        f"{what} it. If it holds your own files, point the params key (e.g. cohort.out_dir, synth.out_dir) "
        f"or HIPFRAC_OUTPUTS elsewhere. If it is hipfrac output from before markers existed, adopt it with "
        f"`python -m hipfrac.safepaths adopt {p}` or delete it yourself.")


def check_replaceable(path: str | Path, what: str = "replace") -> None:
    """Raise NotOwnedError unless `path` is absent, an empty directory, or hipfrac's own directory."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if owned(p) or _empty(p):
        return
    raise _refuse(p, what)


def remove(path: str | Path) -> None:
    """Delete a directory hipfrac made (marker present); nothing to do when absent. An empty directory is
    removed too; anything else raises NotOwnedError and is left untouched."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if owned(p):
        shutil.rmtree(p)
    elif _empty(p):
        p.rmdir()
    else:
        raise _refuse(p, "delete")


def make_owned(path: str | Path) -> Path:
    """A new empty directory with the marker (parents created). An existing one is removed first, which
    is allowed only when it is hipfrac's own (NotOwnedError otherwise)."""
    p = Path(path)
    remove(p)
    p.mkdir(parents=True)
    return mark(p)


def claim(path: str | Path) -> Path:
    """Use `path` as a hipfrac directory to write into in place (e.g. the synthetic registry): created
    with the marker when absent or empty; kept when already hipfrac's own; NotOwnedError otherwise."""
    p = Path(path)
    check_replaceable(p, "write into")
    p.mkdir(parents=True, exist_ok=True)
    if not owned(p):
        mark(p)
    return p


def ensure_dir(path: str | Path) -> Path:
    """mkdir -p; a directory this call creates gets the marker (one that existed is left as it is)."""
    p = Path(path)
    if not p.exists():
        p.mkdir(parents=True, exist_ok=True)
        mark(p)
    return p


def replace(src: str | Path, dst: str | Path) -> Path:
    """Put the marked directory `src` in place of `dst` (renames on the same file system; the previous
    `dst` is deleted afterwards). `dst` must be absent, empty or hipfrac's own: otherwise NotOwnedError
    and neither directory is touched."""
    src, dst = Path(src), Path(dst)
    if not owned(src):
        mark(src)
    check_replaceable(dst)
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        remove(old)
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        remove(old)
    return dst


def inside_project(path: str | Path, root: str | Path, key: str, allow_outside: bool = False) -> Path:
    """The absolute, normalised `path` (relative paths are relative to `root`); OutsideProjectError when it
    is the project root itself or one of its ancestors (always), or lies outside the project (unless
    allow_outside)."""
    root = Path(os.path.realpath(root))
    p = Path(path)
    p = p if p.is_absolute() else root / p
    real = Path(os.path.realpath(p))           # follows symlinks and '..'
    if real == root or real in root.parents:
        raise OutsideProjectError(f"{key}: {path!s} is the project root or contains it; name a directory "
                                  f"of its own (e.g. data/cohort/<run>)")
    if not allow_outside and root not in real.parents:
        raise OutsideProjectError(f"{key}: {path!s} resolves to {real}, outside the project {root}; use a "
                                  f"path inside the project, or set `allow_outside_project: true` in the "
                                  f"params file to allow it explicitly")
    return real


_SIGNATURES = {  # files that only hipfrac's own generated directories hold together
    "synthetic registry": ("settings.json", "truth.json"),
    "cohort": ("cohort.parquet", "fingerprint.json"),
    "notebook outputs": ("outputs.json",),
    "published run": ("manifest.json",),
}


def adopt(path: str | Path) -> str:
    """Mark a directory hipfrac generated before markers existed; refuses one that does not look like
    hipfrac's output (returns the kind recognised)."""
    p = Path(path)
    if owned(p):
        return "already marked"
    if not p.is_dir():
        raise NotOwnedError(f"{p} is not a directory")
    for kind, files in _SIGNATURES.items():
        if all((p / f).exists() for f in files) or (kind == "notebook outputs" and any(p.glob("*/outputs.json"))):
            mark(p)
            return kind
    raise NotOwnedError(f"{p} does not look like hipfrac output (none of: "
                        f"{'; '.join(' + '.join(f) for f in _SIGNATURES.values())}); not marked")


def main(argv: list[str] | None = None) -> int:
    """python -m hipfrac.safepaths adopt DIR [DIR ...]"""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "adopt":
        print("usage: python -m hipfrac.safepaths adopt DIR [DIR ...]", file=sys.stderr)
        return 2
    rc = 0
    for d in argv[1:]:
        try:
            print(f"{d}: {adopt(d)}")
        except NotOwnedError as exc:
            print(f"{d}: {exc}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
