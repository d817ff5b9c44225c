"""The HTML supplement: built from a tiny fake run, self-contained, every link resolves, code folded
or hidden by option, zip ready to upload. (The browser check is in test_supplement_browser.py.)"""

import base64
import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from hipfrac import manifest, supplement  # noqa: E402
from hipfrac.params import load  # noqa: E402


def _png_bytes() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [2, 1, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


def make_fake_run(root: Path) -> tuple[Path, object]:
    """outputs/<run> as a real run leaves it: one executed notebook (markdown, code, printed output,
    an inline figure, an HTML table) with its Exporter tables and figure, and the run manifest."""
    from test_export import exported_copy

    params = load("params/smoke.yaml")
    run = root / "smoke"
    nbdir = run / "99_demo"
    exported_copy(nbdir)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hipfrac", "display_name": "Python (hipfrac)", "language": "python"}
    par = nbformat.v4.new_code_cell('params_file = "../params/smoke.yaml"\noutput_dir = None')
    par.metadata["tags"] = ["parameters"]
    code = nbformat.v4.new_code_cell("fig = plot_overview(safe)\nprint('patients:', total)")
    code.execution_count = 2
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="patients: 5,432\n"),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(_png_bytes()).decode(),
                                                     "text/plain": "<Figure>"}),
        nbformat.v4.new_output("execute_result", execution_count=2, data={
            "text/html": "<table><tr><th>hospital</th><th>n</th></tr><tr><td>Ahus</td><td>120</td></tr></table>",
            "text/plain": "hospital n"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo notebook\n**Definition**: surgery within 48 h, $t \\le 48$."),
                par, code]
    nbformat.write(nb, nbdir / "99_demo.ipynb")
    manifest.write(params, "params/smoke.yaml", run_dir=run)
    return run, params


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("supp"))


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key) and not (tag == "a" and key == "href" and a[key].startswith("#")):
                self.refs.append((tag, a[key]))


def _refs(path: Path):
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p.refs


def test_site_is_complete_and_self_contained(fake_run):
    run, params = fake_run
    site = supplement.build(params, run_dir=run)
    index = (site / "index.html").read_text()
    for needle in ("run <strong>smoke</strong>", "notebooks/99_demo.html", "figures/99_demo/funnel.png",
                   "figures/99_demo/funnel.pdf", "tables/99_demo/funnel.csv", "tables/99_demo/99_demo.xlsx",
                   "Surgery within 48 h", "Data provenance", "Git commit", "min_cell: 5", "manifest.json"):
        assert needle in index, needle
    assert '<td class="num">s</td>' in index  # the suppressed cell as published
    pages = sorted(site.rglob("*.html"))
    assert [p.relative_to(site).as_posix() for p in pages] == ["index.html", "notebooks/99_demo.html"]
    for page in pages:
        for _tag, ref in _refs(page):
            assert not re.match(r"^(https?:)?//", ref), f"{page.name} loads {ref} from the network"
            if ref.startswith("data:"):
                continue
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page.name}: broken link {ref}"


def test_code_folded_hidden_or_shown(fake_run):
    run, params = fake_run
    folded = supplement.render_notebook(run / "99_demo" / "99_demo.ipynb", "folded")
    assert folded.count('<details class="hf-code">') == 2 and "plot_overview" in folded
    hidden = supplement.render_notebook(run / "99_demo" / "99_demo.ipynb", "hidden")
    assert "plot_overview" not in hidden and "patients: 5,432" in hidden and "Definition" in hidden
    shown = supplement.render_notebook(run / "99_demo" / "99_demo.ipynb", "shown")
    assert "plot_overview" in shown and "hf-code\">" not in shown
    assert "data:image/png;base64" in shown  # inline figures embedded
    with pytest.raises(ValueError, match="code mode"):
        supplement.render_notebook(run / "99_demo" / "99_demo.ipynb", "bogus")


def test_zip_holds_the_site_and_is_deterministic(fake_run):
    run, params = fake_run
    site = supplement.build(params, run_dir=run)
    z1 = (run / "smoke_supplement.zip").read_bytes()
    with zipfile.ZipFile(run / "smoke_supplement.zip") as z:
        names = set(z.namelist())
    files = {f"smoke_supplement/{p.relative_to(site).as_posix()}" for p in site.rglob("*") if p.is_file()}
    assert names == files and "smoke_supplement/index.html" in names
    supplement.build(params, run_dir=run)
    assert (run / "smoke_supplement.zip").read_bytes() == z1
    assert not list(run.glob(".tmp-*")) and not list(run.glob(".old-*"))


def test_missing_run_is_a_clear_error(tmp_path):
    params = load("params/smoke.yaml")
    with pytest.raises(FileNotFoundError, match="make all"):
        supplement.build(params, run_dir=tmp_path / "nothing")
