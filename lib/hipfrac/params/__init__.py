"""Run parameters: one YAML file per run in `params/`, validated on load.

Every key is checked: an unknown key, a wrong type or an out-of-range value stops with a message
naming the file and the key. Relative paths in a params file are relative to the project root.

    >>> from hipfrac.params import load
    >>> p = load("params/smoke.yaml")
    >>> p.run, p.synth.scale
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import StrictBool, ValidationError, model_validator

from .base import Section
from .cohort import CohortParams
from .export import ExportParams
from .prevention import PreventionParams
from .risk import RiskParams
from .sources import SOURCE_NAMES, SourceFile, SourcesParams
from .survival import SurvivalParams
from .synth import SynthParams
from .variation import VariationParams

PROJECT_ROOT = Path(__file__).resolve().parents[3]

__all__ = [
    "PROJECT_ROOT",
    "Params",
    "ParamsError",
    "SOURCE_NAMES",
    "SourceFile",
    "load",
    "resolve_path",
]


class ParamsError(ValueError):
    """A params file is missing, unreadable or invalid."""


class Params(Section):
    """All parameters of one run.

    run: the run id; outputs go to outputs/<run>/. Defaults to the params file's stem.
    real_data: strict disclosure mode for runs on real registry data (fails on any small cell).
    lang: label language of tables and figures ("en" or "no").
    allow_outside_project: data directories from params (synth.out_dir, cohort.out_dir) may lie outside
      the project only when this is true (default false: a path outside, through '..' or a symlink, is an
      error). Never the project root itself. Input files (sources.*.path, recode maps) are read wherever
      they are; hipfrac writes, replaces and deletes only directories it made (hipfrac.safepaths).
    """

    run: str = ""
    description: str = ""
    real_data: bool = False
    lang: Literal["en", "no"] = "en"
    allow_outside_project: StrictBool = False
    synth: SynthParams = SynthParams()
    sources: SourcesParams = SourcesParams()
    cohort: CohortParams = CohortParams()
    export: ExportParams = ExportParams()
    variation: VariationParams = VariationParams()
    survival: SurvivalParams = SurvivalParams()
    risk: RiskParams = RiskParams()
    prevention: PreventionParams = PreventionParams()

    @model_validator(mode="after")
    def _inside_project(self):
        from hipfrac.safepaths import OutsideProjectError, inside_project

        dirs = {"synth.out_dir": self.synth.out_dir, "cohort.out_dir": self.cohort.out_dir}
        problems = []
        for key, value in dirs.items():
            if value:
                try:
                    inside_project(value, PROJECT_ROOT, key, self.allow_outside_project)
                except OutsideProjectError as exc:
                    problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived locations -------------------------------------------------------------------
    @property
    def synth_dir(self) -> Path:
        """Directory of the synthetic extracts and truth.json."""
        return resolve_path(self.synth.out_dir)

    @property
    def cohort_dir(self) -> Path:
        """Directory holding cohort.parquet and its companions for this run."""
        return resolve_path(self.cohort.out_dir or f"data/cohort/{self.run}")

    @property
    def cohort_path(self) -> Path:
        return self.cohort_dir / "cohort.parquet"

    @property
    def output_dir(self) -> Path:
        """outputs/<run>/ (the outputs root can be moved with the HIPFRAC_OUTPUTS environment variable)."""
        return Path(os.environ.get("HIPFRAC_OUTPUTS", PROJECT_ROOT / "outputs")) / self.run

    def source_file(self, name: str) -> SourceFile:
        """The SourceFile entry of one source, with its path filled in (absolute)."""
        if name not in SOURCE_NAMES:
            raise KeyError(f"unknown source {name!r}; sources are {', '.join(SOURCE_NAMES)}")
        sf: SourceFile = getattr(self.sources, name)
        if sf.path:
            path = resolve_path(sf.path)
        else:
            path = self.synth_dir / f"{name}.{self.synth.format}"
        recode = {c: (str(resolve_path(m)) if isinstance(m, str) else m) for c, m in sf.recode.items()}
        return sf.model_copy(update={"path": str(path), "recode": recode})

    @property
    def work_dir(self) -> Path:
        """outputs/.work/<run>/: where notebooks are executed into; `hipfrac publish` replaces
        outputs/<run>/ with a copy of it only when every notebook succeeded and the scan is clean."""
        return Path(os.environ.get("HIPFRAC_OUTPUTS", PROJECT_ROOT / "outputs")) / ".work" / self.run

    @property
    def audit_dir(self) -> Path:
        """outputs/.work/<run>.audit/: the cells of every output of the run, values included, for the
        run-level disclosure audit (private: never published, never scanned as output)."""
        return Path(os.environ.get("HIPFRAC_OUTPUTS", PROJECT_ROOT / "outputs")) / ".work" / f"{self.run}.audit"

    @property
    def interactive_dir(self) -> Path:
        """outputs/.interactive/<run>/: where a notebook run by hand (JupyterLab) writes; never published."""
        return Path(os.environ.get("HIPFRAC_OUTPUTS", PROJECT_ROOT / "outputs")) / ".interactive" / self.run

    def resolved(self) -> dict:
        """All parameters, defaults filled in, as plain JSON-able data (for manifests)."""
        return json.loads(self.model_dump_json())

    def fingerprint(self) -> str:
        """Short hash of the resolved parameters."""
        blob = json.dumps(self.resolved(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def resolve_path(path: str | Path) -> Path:
    """A path from a params file: absolute as is, relative to the project root otherwise."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def _find(path: str | Path) -> Path:
    p = Path(path)
    if p.exists():
        return p
    for cand in (PROJECT_ROOT / p, PROJECT_ROOT / "params" / p, PROJECT_ROOT / "params" / f"{p}.yaml"):
        if cand.exists():
            return cand
    raise ParamsError(f"params file not found: {path} (looked in the working directory and {PROJECT_ROOT})")


def _describe(err: dict) -> str:
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    if not err["loc"]:  # a check across keys: the message names them (the input is the whole file)
        return err["msg"].removeprefix("Value error, ")
    return f"key '{loc}': {err['msg']} (got {err.get('input')!r})"


def _allowed(model: type[Section], loc: tuple) -> list[str]:
    """Allowed keys at the parent of loc, to help with typos."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, Section)):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def load(path: str | Path, **overrides) -> Params:
    """Read and validate a params YAML file.

    path: a file path, or a run name such as "smoke" (looked up in params/).
    overrides: top-level sections or keys to replace (e.g. `real_data=True`), validated too.
    Raises ParamsError naming the file and every offending key.
    """
    file = _find(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{file}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    raw.update(overrides)
    raw.setdefault("run", file.stem)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = _describe(err)
            if err["type"] == "extra_forbidden":
                allowed = _allowed(Params, err["loc"])
                if allowed:
                    msg += f"; allowed here: {', '.join(allowed)}"
            lines.append(f"  - {msg}")
        raise ParamsError(f"{file}: invalid parameters:\n" + "\n".join(lines)) from None
    if not params.run.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"{file}: run id {params.run!r} may hold only letters, digits, '-' and '_'")
    return params
