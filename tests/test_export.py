"""The Exporter: every format, deterministic bytes, disclosure rules, strict mode, labels, style."""

import hashlib
import json
import time
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hipfrac import labels  # noqa: E402
from hipfrac.export import DisclosureError, Exporter  # noqa: E402
from hipfrac.figures import style  # noqa: E402
from hipfrac.params import load  # noqa: E402


def _params(**kw):
    return load("params/smoke.yaml", **kw)


def _funnel():
    df = pd.DataFrame({"hospital": ["Ahus", "Bodø", "Kirkenes", "Molde", "Voss"],
                       "n": [400, 120, 30, 60, 45], "events": [350, 100, 3, 50, 40]})
    df["prop"] = df.events / df.n
    df["lower"], df["upper"] = df.prop - 0.04, df.prop + 0.04
    return df


def _hr():
    return pd.DataFrame({"term": ["male", "asa_group[3]"], "hr": [1.6, 2.1234], "lower": [1.41, 1.8],
                         "upper": [1.82, 2.5], "p": [0.00001, 0.0213]})


def _export_all(d, **kw):
    out = Exporter(_params(**kw), "99_demo", output_dir=d)
    out.table(_funnel(), "funnel", title="Surgery within 48 h", counts=["n", "events"],
              derived={"events": ["prop", "lower", "upper"]})
    out.table(_hr(), "cox", title="Hazard ratios")
    fig, ax = style.subplots("single")
    safe = out.suppress(_funnel(), counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    shown = safe[safe["prop"].notna()]
    ax.scatter(shown["n"].astype(float), shown["prop"], color=style.PALETTE[0])
    ax.set_xlabel(labels.t("n", out.lang))
    out.figure(fig, "funnel", title="Funnel", data=safe)
    plt.close(fig)
    out.text("summary", "Two tables and a figure.")
    out.finish()
    return out


_CACHE = {}


def exported_copy(dest):
    """A copy of one `_export_all` output at dest (exported once per test process: figures are slow)."""
    import shutil
    import tempfile
    from pathlib import Path

    if "dir" not in _CACHE:
        _CACHE["dir"] = Path(tempfile.mkdtemp(prefix="hipfrac-export-")) / "99_demo"
        _export_all(_CACHE["dir"])
    shutil.copytree(_CACHE["dir"], dest)
    return dest


def _hashes(d):
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    _export_all(d)
    return d


def test_every_format_written_and_byte_identical_on_rerun(exported, tmp_path):
    a, b = exported, tmp_path / "b"
    time.sleep(1.1)  # a timestamp leaking into a file would now differ
    _export_all(b)
    ha, hb = _hashes(a), _hashes(b)
    expected = {"99_demo.xlsx", "outputs.json", "summary.md", "figures/funnel.png", "figures/funnel.pdf",
                "figures/funnel.data.csv", "figures/funnel.data.meta.json"} | {f"tables/{t}.{x}" for t in ("funnel", "cox")
                                             for x in ("csv", "meta.json", "md", "tex")}
    assert set(ha) == expected
    differ = sorted(k for k in ha if ha[k] != hb[k])
    assert differ == ["outputs.json"], differ  # only the manifest piece holds timestamps


def test_csv_is_fixed_format_and_suppressed(exported):
    raw = (exported / "tables" / "funnel.csv").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    df = pd.read_csv(exported / "tables" / "funnel.csv")
    kirkenes = df[df.hospital == "Kirkenes"].iloc[0]
    assert kirkenes[["events", "prop", "lower", "upper"]].isna().all() and kirkenes["n"] == 30
    # complement: the next smallest event count (Voss, 40) is withheld with its proportion
    assert df[df.hospital == "Voss"][["events", "prop"]].isna().all(axis=None)
    assert raw.splitlines()[1] == b"Ahus,400,350,0.875,0.835,0.915"  # integers stay integers
    meta = json.loads((exported / "tables" / "funnel.meta.json").read_text())
    assert meta["run"] == "smoke" and meta["suppressed"]["primary"] == 1 and meta["suppressed"]["secondary"] == 1
    assert [2, "events"] in meta["suppressed"]["cells"]


def test_human_formats_percent_hr_ci_footer(exported):
    md = (exported / "tables" / "funnel.md").read_text()
    assert "| Ahus | 400 | 350 | 87.5 | 83.5 | 91.5 |" in md
    assert "| Kirkenes | 30 | s | s | s | s |" in md
    assert "hipfrac run smoke, notebook 99_demo" in md and "s = suppressed" in md
    cox = (exported / "tables" / "cox.md").read_text()
    assert "2.12 (1.80\u20132.50)" in cox and "<0.001" in cox and "0.021" in cox
    tex = (exported / "tables" / "cox.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "2.12 (1.80--2.50)" in tex and "asa\\_group[3]" in tex and "hipfrac run smoke" in tex


def test_xlsx_one_sheet_per_table_numbers_and_fixed_zip_times(exported):
    from openpyxl import load_workbook

    path = exported / "99_demo.xlsx"
    wb = load_workbook(path)
    assert wb.sheetnames == ["funnel", "cox"]
    ws = wb["funnel"]
    assert ws["A1"].value == "Surgery within 48 h" and ws["A2"].value == "Hospital"
    assert ws["B3"].value == 400 and ws["D3"].number_format == "0.0%" and ws["D3"].value == pytest.approx(0.875)
    assert ws["C5"].value == "s"
    assert any("hipfrac run smoke" in str(c.value) for row in ws.iter_rows() for c in row)
    with zipfile.ZipFile(path) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_figure_metadata_has_run_and_no_creation_date(exported):
    from PIL import Image

    png = Image.open(exported / "figures" / "funnel.png")
    assert "hipfrac run smoke" in png.info["Description"]
    assert round(png.info["dpi"][0]) == 300
    pdf = (exported / "figures" / "funnel.pdf").read_bytes()
    assert b"hipfrac run smoke" in pdf and b"/CreationDate" not in pdf
    data = pd.read_csv(exported / "figures" / "funnel.data.csv")
    assert data.loc[data.hospital == "Kirkenes", "events"].isna().all()


def test_norwegian_labels(tmp_path):
    _export_all(tmp_path, lang="no")
    md = (tmp_path / "tables" / "funnel.md").read_text()
    assert "| Sykehus | N | Hendelser | Andel (%) |" in md
    assert "87,5" in md and "hipfrac-kjøring smoke" in md and "s = skjult" in md
    cox = (tmp_path / "tables" / "cox.md").read_text()
    assert "2,12 (1,80\u20132,50)" in cox and "Menn" in cox


def test_person_level_frames_refused_in_every_run(tmp_path):
    cohortlike = pd.DataFrame({"person_id": [f"P{i:07d}" for i in range(30)], "age": [80.5] * 30})
    for real in (False, True):
        out = Exporter(_params(real_data=real), "99_demo", output_dir=tmp_path / str(real))
        with pytest.raises(DisclosureError, match="(?s)table 'people'.*person_id"):
            out.table(cohortlike, "people")
        with pytest.raises(DisclosureError, match="figure 'people'"):
            out.figure(plt.figure(), "people", data=cohortlike)
    assert not list((tmp_path / "True").rglob("people*"))


def test_strict_mode_names_table_and_cell(tmp_path):
    out = Exporter(_params(real_data=True), "99_demo", output_dir=tmp_path)
    df = pd.DataFrame({"hospital": ["Ahus", "Lofoten"], "n": [400, 80], "n_reoperated": [30, 2]})
    # declared counts are suppressed: fine in strict mode
    out.table(df, "declared", counts=["n", "n_reoperated"])
    # an undeclared count column with a small value: error naming table, column, row
    with pytest.raises(DisclosureError) as err:
        out.table(df, "undeclared", counts=["n"])
    msg = str(err.value)
    assert "table 'undeclared'" in msg and "column 'n_reoperated'" in msg and "hospital=Lofoten" in msg
    # a figure drawn from unsuppressed data
    with pytest.raises(DisclosureError, match="(?s)figure 'fig'.*n_reoperated"):
        out.figure(plt.figure(), "fig", data=df)
    plt.close("all")


def test_non_strict_suppresses_and_records(tmp_path):
    out = Exporter(_params(), "99_demo", output_dir=tmp_path)
    df = pd.DataFrame({"hospital": ["Ahus", "Lofoten", "Narvik"], "n": [400, 80, 90], "n_reoperated": [30, 2, 9]})
    with pytest.warns(UserWarning, match="not declared"):
        out.table(df, "undeclared", counts=["n"])
    assert pd.read_csv(tmp_path / "tables" / "undeclared.csv")["n_reoperated"].isna().sum() == 2
    with pytest.warns(UserWarning, match="unsuppressed small"):
        out.figure(plt.figure(), "fig", data=df)
    plt.close("all")
    out.finish()
    part = json.loads((tmp_path / "outputs.json").read_text())
    assert part["tables"][0]["undeclared_counts"] == ["n_reoperated"]
    assert part["figures"][0]["unsuppressed_small_cells"] == 1 and len(part["warnings"]) == 2
    assert part["suppressed_cells"]["primary"] == 1 and part["suppressed_cells"]["secondary"] == 1
    assert {f["path"] for f in part["files"]} >= {"tables/undeclared.csv", "figures/fig.png", "99_demo.xlsx"}


def test_names_checked(tmp_path):
    out = Exporter(_params(), "99_demo", output_dir=tmp_path)
    out.table(_hr(), "cox")
    with pytest.raises(ValueError, match="twice"):
        out.table(_hr(), "cox")
    with pytest.raises(ValueError, match="name"):
        out.table(_hr(), "../escape")


def test_style_target_colours_and_sizes():
    assert style.target_level(0.92, green=0.9, yellow=0.8) == "high"
    assert style.target_level(0.85, green=0.9, yellow=0.8) == "moderate"
    assert style.target_level(0.5, green=0.9, yellow=0.8) == "low"
    assert style.target_level(float("nan"), 0.9, 0.8) is None
    assert style.target_colour(None, 0.9, 0.8) == style.GREY
    assert style.target_level(0.05, green=0.08, yellow=0.12, higher_is_better=False) == "high"
    w, h = style.figsize("single")
    assert w == pytest.approx(85 / 25.4) and h == pytest.approx(0.75 * w)
    assert len(set(style.PALETTE)) == len(style.PALETTE) >= 7


def test_labels_complete_and_fallback():
    for key, entry in labels.table().items():
        assert entry["en"] and entry["no"], key
    assert labels.t("hospital", "no") == "Sykehus" and labels.t("unknown_thing", "no") == "unknown_thing"
    with pytest.raises(ValueError, match="language"):
        labels.t("hospital", "de")


def test_grouped_and_pivoted_frames_are_flattened(tmp_path):
    out = Exporter(_params(), "99_demo", output_dir=tmp_path)
    df = pd.DataFrame({"region": ["N", "N", "S", "S"], "sex": ["female", "male"] * 2, "n": [30, 3, 80, 60]})
    grouped = df.set_index(["region", "sex"])["n"]
    out.table(grouped, "grouped")
    assert pd.read_csv(tmp_path / "tables" / "grouped.csv").columns.tolist() == ["region", "sex", "n"]
    wide = df.pivot_table(index="region", columns="sex", values="n", aggfunc="sum")
    wide.columns = pd.MultiIndex.from_product([["n"], wide.columns])
    out.table(wide, "wide", counts=["n / female", "n / male"])
    w = pd.read_csv(tmp_path / "tables" / "wide.csv")
    assert w.columns.tolist() == ["region", "n / female", "n / male"] and w["n / male"].isna().sum() == 2


def _with_workers(n):
    p = _params()
    return p.model_copy(update={"export": p.export.model_copy(update={"figure_workers": n})})


def _demo_figure(title="Funnel"):
    fig, ax = style.subplots("single")
    ax.scatter([400, 120, 60], [0.875, 0.83, 0.83], color=style.PALETTE[0])
    ax.set_title(title)
    return fig


def test_figures_saved_in_background_are_the_same_bytes_as_inline(tmp_path):
    hashes = []
    for workers in (0, 1):
        out = Exporter(_with_workers(workers), "99_demo", output_dir=tmp_path / str(workers))
        fig = _demo_figure()
        out.figure(fig, "demo", title="Demo")
        fig.axes[0].set_title("changed after export")  # the saved copy was taken at out.figure
        plt.close(fig)
        out.finish()
        hashes.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                       for p in sorted((tmp_path / str(workers) / "figures").iterdir())})
    assert set(hashes[0]) == {"demo.png", "demo.pdf"}
    assert hashes[0] == hashes[1]


def test_a_figure_that_cannot_be_drawn_is_named(tmp_path):
    out = Exporter(_with_workers(1), "99_demo", output_dir=tmp_path / "bg")
    out.figure(_demo_figure(), "fine")
    out.figure(_demo_figure(r"$\notacommand{x}$"), "broken")  # mathtext fails only when drawn
    with pytest.raises(RuntimeError, match="'broken'"):
        out.finish()
    assert (tmp_path / "bg" / "figures" / "fine.png").exists()  # the others are still written
    inline = Exporter(_with_workers(0), "99_demo", output_dir=tmp_path / "inline")
    with pytest.raises(ValueError):
        inline.figure(_demo_figure(r"$\notacommand{x}$"), "broken")


def test_a_figure_that_cannot_be_pickled_is_saved_inline(tmp_path):
    from matplotlib.ticker import FuncFormatter

    out = Exporter(_with_workers(1), "99_demo", output_dir=tmp_path)
    fig = _demo_figure()
    fig.axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    out.figure(fig, "lambda")
    assert (tmp_path / "figures" / "lambda.png").exists()  # written before figure() returned
    out.finish()


def test_a_figure_using_a_function_defined_in_the_notebook_is_saved_inline(tmp_path, monkeypatch):
    """A notebook's own functions live in __main__ and pickle by reference: a worker could not load them,
    so such a figure is saved in the notebook's process (and finish() does not fail)."""
    from matplotlib.ticker import FuncFormatter

    import __main__

    def percent(v, _pos):
        return f"{v:.0%}"

    percent.__module__, percent.__qualname__ = "__main__", "hipfrac_test_percent"
    monkeypatch.setattr(__main__, "hipfrac_test_percent", percent, raising=False)
    out = Exporter(_with_workers(1), "99_demo", output_dir=tmp_path)
    fig = _demo_figure()
    fig.axes[0].yaxis.set_major_formatter(FuncFormatter(percent))
    out.figure(fig, "notebook_function")
    assert (tmp_path / "figures" / "notebook_function.png").exists()  # written before figure() returned
    out.finish()


def test_rows_of_a_protected_frame_publish_only_those_rows(tmp_path):
    out = Exporter(_params(), "99_demo", output_dir=tmp_path)
    safe = out.protect(_funnel(), counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    assert safe["events"].isna().any()
    shown = safe[safe["n"] >= 60]
    out.table(shown, "big_units")
    written = pd.read_csv(tmp_path / "tables" / "big_units.csv")
    assert list(written["hospital"]) == list(shown["hospital"])      # before: the whole protected table
    meta = json.loads((tmp_path / "tables" / "big_units.meta.json").read_text())
    assert meta["rows"] == len(shown)
    edited = safe.assign(events=safe["events"].fillna(0))
    with pytest.raises(ValueError, match="changed"):
        out.table(edited[list(safe.columns)], "edited")
    with pytest.raises(ValueError, match="new columns"):
        out.table(safe.assign(extra=1), "extra")
