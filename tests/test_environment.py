"""The three dependency lists agree: pyproject (direct), requirements.lock (exact pins), environment.yml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_ALIASES = {"python-duckdb": "duckdb"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "==" in line, f"requirements.lock: not an exact pin: {line!r}"
        name, version = line.split("==", 1)
        pins[_norm(name)] = version
    return pins


def _direct() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [_norm(re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0]) for d in deps]


def _conda() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and "=" in dep:
            name, version = dep.split("=", 1)
            name = CONDA_ALIASES.get(name, name)
            if name != "python":
                out[_norm(name)] = version
    return out


def test_every_direct_dependency_is_pinned_in_the_lock():
    lock = _lock()
    missing = [d for d in _direct() if d not in lock]
    assert not missing, f"direct dependencies without an exact pin in requirements.lock: {missing}"


def test_environment_yml_matches_the_lock():
    lock, conda = _lock(), _conda()
    assert set(conda) == set(_direct()), (
        f"environment.yml and pyproject differ: only in environment.yml {sorted(set(conda) - set(_direct()))}, "
        f"only in pyproject {sorted(set(_direct()) - set(conda))}")
    drift = {n: (v, lock.get(n)) for n, v in conda.items() if lock.get(n) != v}
    assert not drift, f"environment.yml versions differ from requirements.lock (yml, lock): {drift}"


def test_pandas_pinned_below_3_for_lifelines():
    major = int(_lock()["pandas"].split(".")[0])
    assert major < 3, "lifelines requires pandas < 3"
