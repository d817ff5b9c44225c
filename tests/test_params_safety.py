"""Params never execute anything (issue 13): attacks by a params file (or a catalogue entry) on the code
that reads it. Each attack here succeeded on the code before the fix (see the commit message):

- a model term of `prevention.model_terms` running a shell command through the formula parser;
- `cohort.pathological_codes` pasting SQL into the cohort build that copied every person id and death
  date to a file;
- an indicator expression (`age.to_csv(...)`) writing a person-level column to a file;
- `cohort.out_dir` / `synth.out_dir` pointing at an existing folder of someone's work, which the cohort
  build deleted (and the generator overwrote);
- output and data directories outside the project;
- YAML tags constructing Python objects;
- and, as a guard for the future, a scan of the package source (ast) for eval / exec / shell calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cohort_extracts import base_frames
from hipfrac import cohort, indicators, prevention, synth
from hipfrac.params import PROJECT_ROOT, Params, ParamsError, load

LIB = PROJECT_ROOT / "lib" / "hipfrac"


def _spec(tmp_path: Path, **sections) -> dict:
    spec = {"run": "attack", "synth": {"out_dir": str(tmp_path / "extracts"), "format": "csv"},
            "cohort": {"out_dir": str(tmp_path / "cohort"), "period_start": "2013-01-01",
                       "period_end": "2023-12-31", "end_of_followup": "2024-12-31"}}
    if "allow_outside_project" in Params.model_fields:   # the tests run in a temporary directory
        spec["allow_outside_project"] = True
    for k, v in sections.items():
        if isinstance(v, dict):
            spec.setdefault(k, {}).update(v)
        else:
            spec[k] = v
    return spec


def _write(tmp_path: Path, spec: dict, name: str = "attack.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return p


def _extracts(tmp_path: Path) -> None:
    ext = tmp_path / "extracts"
    ext.mkdir(parents=True, exist_ok=True)
    for name, df in base_frames().items():
        df.to_csv(ext / f"{name}.csv", sep=";", index=False)


def _refused(path: Path, key: str) -> str:
    with pytest.raises(ParamsError) as err:
        load(path)
    msg = str(err.value)
    assert key in msg, msg
    return msg


# ---- model terms ------------------------------------------------------------------------------------
def _treated_cohort(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    age = rng.uniform(60, 100, n)
    p = 1 / (1 + np.exp(-(-0.5 + 0.8 * (sex == "female") + 0.02 * (age - 80))))
    return pd.DataFrame({"sex": sex, "age": age, "age_band": np.where(age < 80, "<80", "80+"),
                         "charlson": rng.integers(0, 5, n), "followup_days": rng.uniform(400, 3000, n),
                         "osteo_med_12m": (rng.random(n) < p).astype(int),
                         "res_region": rng.choice(["Helse Nord", "Helse Vest"], n)})


def _shell_terms(flag: Path) -> list[list[str]]:
    run = f"__import__('os').system('id > {flag}')"
    return [["C(sex)", f"I({run})"], ["C(sex)", run], ["C(sex)", f"C({run})"],
            [f"C(sex, Treatment({run}))"], ["age:" + run], [f"np.log(age) + {run}"]]


def test_model_terms_from_params_cannot_run_a_shell(tmp_path):
    flag = tmp_path / "pwned"
    for terms in _shell_terms(flag):
        _refused(_write(tmp_path, _spec(tmp_path, prevention={"model_terms": terms})), "prevention.model_terms")
        assert not flag.exists()


def test_treatment_model_never_evaluates_term_text(tmp_path):
    """Even terms that bypass params validation (model_copy, a notebook passing its own list) are parsed,
    never evaluated: a term that is not a column or a whitelisted transform is a clear error."""
    flag = tmp_path / "pwned"
    d = _treated_cohort()
    for terms in _shell_terms(flag):
        with pytest.raises(ValueError, match="term"):
            prevention.treatment_model(d, "12m", terms)
        assert not flag.exists(), terms
    with pytest.raises(ValueError, match="not a column"):
        prevention.treatment_model(d, "12m", ["C(sex)", "C(no_such_column)"])


def test_whitelisted_terms_still_fit(tmp_path):
    d = _treated_cohort()
    m = prevention.treatment_model(d, "12m", ["C(sex)", "age", "log(age)", "spline(charlson, 3)",
                                              "C(sex):age", "C(res_region)"]).set_index("term")
    assert "C(sex)[T.male]" in m.index and "age" in m.index and "C(sex)[T.male]:age" in m.index
    assert any(t.startswith("bs(charlson, df=3)") for t in m.index) and "log(age)" in m.index
    main = prevention.treatment_model(d, "12m", ["C(sex)", "age"]).set_index("term")
    assert main.loc["C(sex)[T.male]", "upper"] < 1      # simulated: women are treated more often
    # the default terms of the params load and fit
    p = load(_write(tmp_path, _spec(tmp_path)))
    d2 = d.assign(cognitive="no", residence="home", charlson_group="0", osteo_med_before=0)
    prevention.treatment_model(d2, "12m", [t for t in p.prevention.model_terms if t != "osteo_med_before"])


# ---- SQL from params -----------------------------------------------------------------------------------
SQL = ("M844)') AS patho FROM t_npr_episodes; "
       "COPY (SELECT d.person_id, d.death_date FROM t_death_registry d) TO '{out}' (HEADER); "
       "SELECT NULL AS person_id, NULL AS episode_id, NULL AS hospital, NULL::DATE AS admission_date, "
       "NULL::DATE AS discharge_date, false AS operated, false AS patho --")


def test_pathological_codes_cannot_carry_sql(tmp_path):
    leak = tmp_path / "deaths.csv"
    codes = ["M907", SQL.format(out=leak)]
    _refused(_write(tmp_path, _spec(tmp_path, cohort={"pathological_codes": codes})), "cohort.pathological_codes")
    # and the cohort build itself takes the codes as data, whatever the params object holds
    _extracts(tmp_path)
    p = load(_write(tmp_path, _spec(tmp_path)))
    bad = p.model_copy(update={"cohort": p.cohort.model_copy(update={"pathological_codes": tuple(codes)})})
    with pytest.raises(ValueError, match="pathological_codes"):
        cohort.build(bad, verbose=False)
    assert not leak.exists()


@pytest.mark.parametrize("section, key, value", [
    ("cohort", "duckdb_memory_limit", "3GB'; COPY t TO '/tmp/x"),
    ("cohort", "charlson_weights", {"mi' OR 1=1 --": 1}),
    ("sources", "npr_episodes", {"delimiter": "';COPY t TO '/tmp/x';--"}),
    ("sources", "npr_episodes", {"date_format": "%d'); COPY t TO '/tmp/x' --"}),
    ("sources", "npr_episodes", {"rename": {"x": "a\"; DROP TABLE t; --"}}),
    ("sources", "npr_episodes", {"recode": {"hospital\"; --": {"1": "2"}}}),
    ("survival", "casemix", ["age", "__import__('os').system('id')"]),
    ("variation", "adjustment", ["age", "age.to_csv('/tmp/x')"]),
    ("prevention", "casemix", ["sex); DROP"]),
    ("prevention", "units", ["hospital; rm -rf /"]),
    ("prevention", "re_unit", "hospital'"),
])
def test_other_text_keys_are_checked_on_load(tmp_path, section, key, value):
    _refused(_write(tmp_path, _spec(tmp_path, **{section: {key: value}})), f"{section}.{key}")


def test_defaults_and_shipped_params_load():
    for f in sorted((PROJECT_ROOT / "params").glob("*.yaml")):
        load(f)


# ---- indicator expressions -------------------------------------------------------------------------------
def test_indicator_expression_cannot_write_a_file(tmp_path):
    leak = tmp_path / "ages.csv"
    entry = {"title": {"en": "x", "no": "x"}, "type": "process", "direction": "higher", "green": None,
             "yellow": None, "source": "x", "min_n": 0,
             "eligible": f"age.to_csv('{leak}') is None", "numerator": "age >= 0"}
    cat = tmp_path / "catalogue.yaml"
    cat.write_text(yaml.safe_dump({"indicators": {"leak": entry}}), encoding="utf-8")
    with pytest.raises(indicators.CatalogueError, match="leak"):
        ind = indicators.load_catalogue(cat)["leak"]
        indicators.masks(pd.DataFrame({"age": [80.0, 90.0]}), ind)
    assert not leak.exists()


def test_indicator_expressions_evaluate_as_before():
    """The safe evaluator gives what pandas' eval gave on every catalogue expression (missing values
    included)."""
    d = pd.DataFrame({
        "op_id": ["a", None, "c", "d", None, "f"],
        "fracture_type": ["fn_displaced", "troch_a1", None, "subtroch", "troch_a3", "fn_displaced"],
        "age": [75.0, 65.0, 90.0, np.nan, 71.0, 70.0],
        "arthroplasty": pd.array([1, 0, None, 1, 1, 0], dtype="Int64"),
        "source": ["both", "npr_only", "nhfr_only", "both", "npr_only", "both"],
        "operation_type": ["shs", "nail", None, "shs", "hemi", "shs"],
        "dead_30d": [0, 1, 0, 0, 1, 0]})
    exprs = ["op_id.notna()", "op_id.notna() and fracture_type == 'fn_displaced' and age > 70",
             "op_id.notna() and fracture_type in ['subtroch', 'troch_a3']", "arthroplasty == 1 and age > 70",
             "source in ['both', 'nhfr_only', 'npr_only']", "source != 'npr_only'", "operation_type == 'shs'",
             "dead_30d == 0", "age >= 0", "not (age < 72) or op_id.isna()", "arthroplasty != 1"]
    for e in exprs:
        want = d.eval(e, engine="python")   # the reference: pandas' own evaluation, on inert test text
        got = indicators._mask(d, e, "test")
        pd.testing.assert_series_equal(got.astype("boolean").fillna(False).astype(bool),
                                       pd.Series(want, index=d.index).astype("boolean").fillna(False).astype(bool),
                                       check_names=False, obj=e)
    # the shipped catalogue still loads and every entry evaluates on this frame's columns
    assert indicators.load_catalogue()


@pytest.mark.parametrize("text", ["age.to_csv('/tmp/x')", "__import__('os').system('id')", "age.__class__",
                                  "(lambda: 1)()", "[x for x in age]", "age.apply(print)", "@age",
                                  "age if age else age", "{'a': 1}", "f'{age}'"])
def test_expression_language_refuses_code(text):
    from hipfrac import expr

    with pytest.raises(expr.ExprError):
        expr.evaluate(pd.DataFrame({"age": [1.0]}), text)


def test_completeness_condition_is_not_pandas_query(tmp_path):
    from hipfrac import coverage

    leak = tmp_path / "x.csv"
    d = pd.DataFrame({"hospital": ["A", "A"], "asa": [1, None], "arthroplasty": [1, 0]})
    with pytest.raises(ValueError):
        coverage.completeness(d, by="hospital", variables={"asa": f"asa.to_csv('{leak}') is None"})
    assert not leak.exists()
    ok = coverage.completeness(d, by="hospital", variables={"asa": "arthroplasty == 1"})
    assert ok["n"].tolist() == [1] and ok["n_missing"].tolist() == [0]


# ---- directories ---------------------------------------------------------------------------------------
def _someones_work(tmp_path: Path) -> Path:
    work = tmp_path / "thesis"
    work.mkdir()
    (work / "chapter1.docx").write_text("three years of work", encoding="utf-8")
    return work


def test_cohort_out_dir_at_someones_folder_is_not_deleted(tmp_path):
    _extracts(tmp_path)
    work = _someones_work(tmp_path)
    p = load(_write(tmp_path, _spec(tmp_path, cohort={"out_dir": str(work)})))
    with pytest.raises(RuntimeError, match="not made by hipfrac") as err:
        cohort.build(p, verbose=False)
    assert str(work) in str(err.value) and ".hipfrac-owned" in str(err.value)
    assert (work / "chapter1.docx").read_text(encoding="utf-8") == "three years of work"
    assert sorted(x.name for x in work.iterdir()) == ["chapter1.docx"]
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".thesis")]   # no tmp/old left over


def test_cohort_build_marks_and_replaces_its_own_directory(tmp_path):
    _extracts(tmp_path)
    p = load(_write(tmp_path, _spec(tmp_path)))
    cohort.build(p, verbose=False)
    assert (p.cohort_dir / ".hipfrac-owned").exists()
    cohort.build(p, force=True, verbose=False)      # its own directory: replaced
    assert (p.cohort_dir / ".hipfrac-owned").exists() and p.cohort_path.exists()


def test_synth_out_dir_at_someones_folder_is_not_overwritten(tmp_path):
    work = _someones_work(tmp_path)
    (work / "truth.json").write_text("my own file", encoding="utf-8")
    with pytest.raises(RuntimeError, match="not made by hipfrac"):
        synth.generate(work, scale=0.001, seed=1)
    assert (work / "truth.json").read_text(encoding="utf-8") == "my own file"
    synth.remove(work)
    assert (work / "chapter1.docx").exists()


def test_safepaths_replace_only_owned(tmp_path):
    from hipfrac import safepaths

    work = _someones_work(tmp_path)
    new = safepaths.make_owned(tmp_path / ".new")
    (new / "a.csv").write_text("1")
    with pytest.raises(safepaths.NotOwnedError):
        safepaths.replace(new, work)
    with pytest.raises(safepaths.NotOwnedError):
        safepaths.remove(work)
    assert (work / "chapter1.docx").exists() and (new / "a.csv").exists()
    dst = tmp_path / "run"
    safepaths.replace(new, dst)                       # nothing there yet
    assert (dst / "a.csv").exists() and safepaths.owned(dst)
    again = safepaths.make_owned(tmp_path / ".again")
    safepaths.replace(again, dst)                     # its own: replaced
    assert not (dst / "a.csv").exists() and safepaths.owned(dst)
    safepaths.remove(dst)
    assert not dst.exists()
    safepaths.remove(tmp_path / "never-there")         # nothing to remove: fine
    empty = tmp_path / "empty"
    empty.mkdir()
    safepaths.replace(safepaths.make_owned(tmp_path / ".x"), empty)   # an empty folder holds no work


@pytest.mark.parametrize("section, key", [("cohort", "out_dir"), ("synth", "out_dir")])
@pytest.mark.parametrize("where", ["/tmp/hipfrac-elsewhere", "../outside", "data/../../outside", "/", "."])
def test_directories_outside_the_project_are_refused(tmp_path, section, key, where):
    spec = _spec(tmp_path, synth={"out_dir": "data/synthetic/attack"}, cohort={"out_dir": "data/cohort/attack"})
    spec[section][key] = where
    spec.pop("allow_outside_project", None)
    msg = _refused(_write(tmp_path, spec), f"{section}.{key}")
    assert ("allow_outside_project" in msg) if where not in ("/", ".") else ("project root" in msg)


def test_outside_paths_need_the_explicit_key(tmp_path):
    spec = _spec(tmp_path)
    spec["allow_outside_project"] = True
    p = load(_write(tmp_path, spec))
    assert p.cohort_dir == tmp_path / "cohort"
    spec["allow_outside_project"] = "yes please"
    _refused(_write(tmp_path, spec), "allow_outside_project")
    inside = load(_write(tmp_path, {"run": "x", "cohort": {"out_dir": "data/cohort/x2"}}))
    assert inside.cohort_dir == PROJECT_ROOT / "data" / "cohort" / "x2"


# ---- YAML ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "run: !!python/object/apply:os.system ['id']\n",
    "cohort: !!python/object/new:dict {}\n",
    "description: !!python/name:os.system\n",
    "synth: &a {out_dir: x}\nextra: !!binary aGk=\n",
])
def test_yaml_tags_are_refused(tmp_path, text):
    p = tmp_path / "tags.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError):
        load(p)


def test_catalogue_yaml_tags_are_refused(tmp_path):
    p = tmp_path / "cat.yaml"
    p.write_text("indicators: !!python/object/apply:os.system ['id']\n", encoding="utf-8")
    with pytest.raises(indicators.CatalogueError):
        indicators.load_catalogue(p)


# ---- the package source ----------------------------------------------------------------------------------
def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            yield node, name, f


def test_no_eval_exec_or_shell_in_the_package():
    bad = []
    for path in sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, name, f in _calls(tree):
            where = f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
            if isinstance(f, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{where} {name}()")
            if isinstance(f, ast.Attribute) and name in ("eval", "query", "unsafe_load", "full_load"):
                bad.append(f"{where} .{name}()")    # DataFrame.eval / .query evaluate text as Python
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os" \
                    and (name in ("system", "popen") or name.startswith(("spawn", "exec"))):
                bad.append(f"{where} os.{name}()")
            if isinstance(f, ast.Attribute) and name == "load" and isinstance(f.value, ast.Name) \
                    and f.value.id == "yaml":
                loader = [k for k in node.keywords if k.arg == "Loader"]
                if not loader:
                    bad.append(f"{where} yaml.load without a safe Loader")
            for k in node.keywords:
                if k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                    bad.append(f"{where} shell=")
    assert not bad, "\n".join(bad)


def test_subprocess_commands_are_lists():
    """Every subprocess call in the package passes an argument list (no command string for a shell)."""
    bad = []
    for path in sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, name, f in _calls(tree):
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "subprocess" \
                    and name in ("run", "Popen", "call", "check_call", "check_output") and node.args:
                if isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    bad.append(f"{path.name}:{node.lineno}")
    assert not bad, bad
