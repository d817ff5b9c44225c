"""Static HTML supplement of a run: `python -m hipfrac supplement --params params/<run>.yaml`.

Builds outputs/<run>/supplement/ (replaced atomically) and outputs/<run>/<run>_supplement.zip:
    index.html                 project, run parameters, data provenance (from manifest.json),
                               every notebook, figure and table with links
    notebooks/<nb>.html        each executed notebook rendered by nbconvert (lab template); code cells
                               folded (<details>, default: params.export.code_folded true), hidden
                               (code_folded false) or shown (--show-code)
    figures/<nb>/<name>.png|pdf, tables/<nb>/<name>.csv|md|tex, <nb>.xlsx, manifest.json
    style.css
The site is self-contained: no script, font or style is loaded from the network (the nbconvert
template's MathJax / require.js / mermaid loaders are removed), so it opens offline and on journal
servers. Only files already written by the Exporter (and scanned) are copied.
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import zipfile
from pathlib import Path

import yaml

from hipfrac import safepaths
from hipfrac.export import FIXED_ZIP_TIME
from hipfrac.manifest import MANIFEST_NAME, PART_NAME

NOTEBOOK_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<link rel="icon" href="data:,">
<style>
details.hf-code > summary { cursor: pointer; color: #0072B2; font-size: 0.85em; margin: 0.2em 0 0.2em 1em; }
.hf-back { font-family: sans-serif; margin: 1em; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<p class="hf-back"><a href="../index.html">&larr; Supplement index</a></p>
{%- endblock body_header -%}
{% block input_group -%}
{%- if resources.hipfrac_fold -%}
<details class="hf-code"><summary>Code</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock input_group %}
"""

CSS = """body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 70em;
  margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; max-width: 30em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.9em; }
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def render_notebook(path: Path, mode: str = "folded") -> str:
    """HTML of one executed notebook; mode: "folded" (code in <details>), "hidden" or "shown"."""
    import nbformat
    from nbconvert import HTMLExporter

    if mode not in ("folded", "hidden", "shown"):
        raise ValueError(f"code mode {mode!r}: use folded, hidden or shown")
    nb = nbformat.read(path, as_version=4)
    exporter = HTMLExporter(template_name="lab", raw_template=NOTEBOOK_TEMPLATE,
                            exclude_input=mode == "hidden", exclude_input_prompt=mode == "hidden")
    body, _ = exporter.from_notebook_node(nb, resources={"hipfrac_fold": mode == "folded"})
    return body


def _md_table_html(md_text: str) -> str:
    """The human-readable Markdown table written by the Exporter, as HTML."""
    from hipfrac.scan import markdown_tables

    frames = markdown_tables(md_text)
    if not frames or frames[0].empty:
        return ""
    df = frames[0].fillna("")
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for v in r:
            v = str(v).replace("\\|", "|")
            num = v[:1].isdigit() or v[:1] in ("\u2212", "<") or v in ("s", "\u2013")
            cells.append(f'<td class="num">{_e(v)}</td>' if num else f"<td>{_e(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = [ln.strip().strip("*").strip() for ln in md_text.splitlines() if ln.startswith("*") and not ln.startswith("**")]
    note_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note_html}"


def _notebook_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "supplement"
                  and ((p / f"{p.name}.ipynb").exists() or (p / PART_NAME).exists()))


def build(params, *, run_dir: Path | None = None, code: str | None = None, zip_path: Path | None = None) -> Path:
    """Build the supplement of params' run; return the supplement directory.

    run_dir: outputs/<run> (default params.output_dir). code: "folded" | "hidden" | "shown"
    (default from params.export.code_folded). zip_path: default outputs/<run>/<run>_supplement.zip.
    """
    run_dir = Path(run_dir) if run_dir else params.output_dir
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no outputs for run {params.run!r} in {run_dir}: run `make all` first")
    code = code or ("folded" if params.export.code_folded else "hidden")
    final = run_dir / "supplement"
    tmp = safepaths.make_owned(run_dir / ".tmp-supplement")   # hipfrac.safepaths: replaced only when its own
    (tmp / "style.css").write_text(CSS, encoding="utf-8")
    man = {}
    if (run_dir / MANIFEST_NAME).exists():
        man = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        shutil.copy2(run_dir / MANIFEST_NAME, tmp / MANIFEST_NAME)

    sections = []
    nb_links = []
    for nbdir in _notebook_dirs(run_dir):
        name = nbdir.name
        part = json.loads((nbdir / PART_NAME).read_text(encoding="utf-8")) if (nbdir / PART_NAME).exists() else {}
        items = []
        executed = nbdir / f"{name}.ipynb"
        if executed.exists():
            (tmp / "notebooks").mkdir(exist_ok=True)
            (tmp / "notebooks" / f"{name}.html").write_text(render_notebook(executed, code), encoding="utf-8")
            nb_links.append(f'<li><a href="notebooks/{_e(name)}.html">{_e(name)}</a></li>')
            items.append(f'<p><a href="notebooks/{_e(name)}.html">Executed notebook</a></p>')
        xlsx = nbdir / f"{name}.xlsx"
        if xlsx.exists():
            (tmp / "tables" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(xlsx, tmp / "tables" / name / xlsx.name)
            items.append(f'<p><a href="tables/{_e(name)}/{_e(xlsx.name)}">All tables of this notebook (XLSX)</a></p>')
        figs = sorted((nbdir / "figures").glob("*.png")) if (nbdir / "figures").exists() else []
        titles = {f["name"]: f.get("title", "") for f in part.get("figures", [])}
        if figs:
            (tmp / "figures" / name).mkdir(parents=True, exist_ok=True)
            items.append("<h3>Figures</h3>")
            for png in figs:
                stem = png.stem
                links = []
                for f in sorted(png.parent.glob(f"{stem}.*")):
                    shutil.copy2(f, tmp / "figures" / name / f.name)
                    if f.suffix != ".png":
                        links.append(f'<a href="figures/{_e(name)}/{_e(f.name)}">{_e(f.name.split(".", 1)[1].upper())}</a>')
                src = f"figures/{_e(name)}/{_e(png.name)}"
                cap = _e(titles.get(stem) or stem)
                items.append(f'<figure><a href="{src}"><img src="{src}" alt="{cap}" loading="eager"></a>'
                             f"<figcaption>{cap} ({', '.join(links) if links else 'PNG'})</figcaption></figure>")
        tables = sorted((nbdir / "tables").glob("*.csv")) if (nbdir / "tables").exists() else []
        ttitles = {t["name"]: t.get("title", "") for t in part.get("tables", [])}
        if tables:
            (tmp / "tables" / name).mkdir(parents=True, exist_ok=True)
            items.append("<h3>Tables</h3>")
            for csv in tables:
                stem = csv.stem
                links = []
                for f in sorted(csv.parent.glob(f"{stem}.*")):
                    shutil.copy2(f, tmp / "tables" / name / f.name)
                    links.append(f'<a href="tables/{_e(name)}/{_e(f.name)}">{_e(f.name.split(".", 1)[1].upper())}</a>')
                md = csv.with_suffix(".md")
                body = _md_table_html(md.read_text(encoding="utf-8")) if md.exists() else ""
                items.append(f"<h4>{_e(ttitles.get(stem) or stem)}</h4><p class=\"note\">{' | '.join(links)}</p>{body}")
        texts = sorted(nbdir.glob("*.md"))
        if texts:
            items.append("<h3>Texts</h3>")
            for t in texts:
                items.append(f"<pre>{_e(t.read_text(encoding='utf-8'))}</pre>")
        sections.append(f'<h2 id="{_e(name)}">{_e(name)}</h2>' + "\n".join(items))

    prov = _provenance_html(man)
    params_yaml = yaml.safe_dump(params.resolved(), sort_keys=False, allow_unicode=True)
    index = f"""<!DOCTYPE html>
<html lang="{'nb' if params.lang == 'no' else 'en'}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>hipfrac supplement: run {_e(params.run)}</title><link rel="stylesheet" href="style.css">
<link rel="icon" href="data:,"></head>
<body>
<h1>Supplementary material: hip fracture treatment and outcomes in Norway</h1>
<p>hipfrac is an open, reproducible collection of analyses of inequality in hip fracture treatment and
outcomes, using the linked Norwegian registries (Hip Fracture Register, Patient Registry, municipal care
registry, Cause of Death Registry, Statistics Norway, Prescription Register). This site holds every table
and figure of run <strong>{_e(params.run)}</strong>{(' (' + _e(params.description.rstrip('.')) + ')') if params.description else ''}.
All outputs passed disclosure control: counts from 1 to {params.export.min_cell - 1} are suppressed
(shown as "s" or left empty), with complementary suppression and the values derived from them.</p>
<h2>Notebooks</h2>
<ul>{''.join(nb_links) or '<li>none</li>'}</ul>
{''.join(sections)}
<h2>Data provenance</h2>
{prov}
<h2>Run parameters</h2>
<pre>{_e(params_yaml)}</pre>
</body></html>
"""
    (tmp / "index.html").write_text(index, encoding="utf-8")
    safepaths.replace(tmp, final)
    zip_path = Path(zip_path) if zip_path else run_dir / f"{params.run}_supplement.zip"
    write_zip(final, zip_path, prefix=f"{params.run}_supplement")
    return final


def _provenance_html(man: dict) -> str:
    if not man:
        return "<p>No manifest.json in this run (run <code>python -m hipfrac manifest</code>).</p>"
    git = man.get("git") or {}
    rows = [("Run", man.get("run")), ("Params fingerprint", man.get("params_fingerprint")),
            ("Git commit", f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}"),
            ("Started", man.get("started")), ("Finished", man.get("finished")),
            ("Python", (man.get("packages") or {}).get("python")),
            ("Platform", (man.get("platform") or {}).get("platform"))]
    head = "<table><tbody>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</tbody></table>"
    inp = "".join(f"<tr><td>{_e(i['path'])}</td><td class=\"num\">{i['size']:,}</td><td><code>{_e(i['sha256'][:16])}</code></td></tr>"
                  for i in man.get("inputs", []))
    pk = ", ".join(f"{_e(k)} {_e(v)}" for k, v in (man.get("packages") or {}).items())
    return (head + "<h3>Input files</h3><table><thead><tr><th>File</th><th>Bytes</th><th>SHA-256 (first 16)</th>"
            f"</tr></thead><tbody>{inp}</tbody></table><p class=\"note\">Packages: {pk}</p>"
            '<p class="note">Full record: <a href="manifest.json">manifest.json</a></p>')


def write_zip(site: Path, zip_path: Path, prefix: str) -> Path:
    """Zip the site (sorted members, fixed times) for upload; return the path."""
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(site.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(f"{prefix}/{p.relative_to(site).as_posix()}", date_time=FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, p.read_bytes())
    tmp.replace(zip_path)
    return zip_path


def cli(args) -> int:
    """python -m hipfrac supplement --params P [--show-code]"""
    from hipfrac.params import load

    params = load(args.params)
    try:
        site = build(params, code="shown" if args.show_code else None)
    except FileNotFoundError as exc:
        print(f"supplement: {exc}", file=sys.stderr)
        return 2
    print(f"supplement: {site / 'index.html'} and {site.parent / (params.run + '_supplement.zip')}")
    return 0
