"""The supplement in a real browser: serve the built site on 127.0.0.1, drive headless Chromium over
the Chrome DevTools protocol, check that every page loads without console errors and every image
renders, and save a screenshot of each page (into the test's tmp dir).

Needs Debian's `chromium` (`apt-get install -y chromium`; .ci/run installs it). Without a browser
the test is skipped with that message. HIPFRAC_CHROMIUM may name another Chromium/Chrome binary.
"""

import base64
import functools
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hipfrac import supplement

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
         "--hide-scrollbars", "--window-size=1280,1600", "--remote-debugging-port=0"]
IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({src: i.src.slice(0, 120),
  complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))"""


def find_browser():
    for name in (os.environ.get("HIPFRAC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class CDP:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client, pinned in requirements.lock (a Jupyter dependency)

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        import websocket

        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.ws.settimeout(left)
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            finally:
                self.ws.settimeout(60)
            if "method" in msg:
                self.events.append(msg)

    def drain(self, seconds: float) -> None:
        """Collect events arriving within `seconds` (late errors after load)."""
        import websocket

        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.ws.settimeout(left)
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if "method" in msg:
                self.events.append(msg)
        self.ws.settimeout(60)

    def close(self):
        self.ws.close()


def console_errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
    return out


@pytest.fixture
def browser(tmp_path):
    exe = find_browser()
    if not exe:
        pytest.skip("no Chromium found: install it with `apt-get install -y chromium` (Debian/Ubuntu) "
                    "or set HIPFRAC_CHROMIUM to a Chromium/Chrome binary")
    profile = tmp_path / "profile"
    profile.mkdir()
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"{exe} exited with {proc.returncode} before opening its DevTools port")
            if time.monotonic() > deadline:
                pytest.fail(f"{exe} did not open its DevTools port within 60 s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        deadline = time.monotonic() + 30
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert pages, f"no page target in {targets}"
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            cdp.call(f"{domain}.enable")
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def served_site(tmp_path):
    from test_supplement import make_fake_run

    run, params = make_fake_run(tmp_path / "outputs")
    site = supplement.build(params, run_dir=run)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def visit(cdp: CDP, url: str, shot) -> tuple[list[str], list[dict]]:
    cdp.events.clear()
    res = cdp.call("Page.navigate", url=url)
    assert not res.get("errorText"), f"{url}: {res.get('errorText')}"
    cdp.wait_for("Page.loadEventFired")
    cdp.drain(0.5)
    errors = console_errors(cdp.events)
    images = json.loads(cdp.call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)["result"]["value"])
    png = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    shot.write_bytes(png)
    return errors, images


def test_every_page_loads_cleanly_and_every_image_renders(browser, served_site, tmp_path):
    site, base = served_site
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert pages == ["index.html", "notebooks/99_demo.html"]
    n_images = 0
    for page in pages:
        shot = tmp_path / f"screenshot_{page.replace('/', '_')}.png"
        errors, images = visit(browser, f"{base}/{page}", shot)
        assert errors == [], f"{page}: console errors {errors}"
        broken = [i for i in images if not i["complete"] or i["width"] == 0]
        assert broken == [], f"{page}: images that did not render: {broken}"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
        n_images += len(images)
        if page == "index.html":
            assert any("figures/99_demo/funnel.png" in i["src"] for i in images)
        else:
            assert any(i["src"].startswith("data:image/png") for i in images)  # the inline figure
    assert n_images >= 2


def test_the_check_catches_a_broken_page(browser, served_site, tmp_path):
    """The same check fails on a page with a missing image and a script error (it can fail)."""
    site, base = served_site
    (site / "broken.html").write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                                      '<img src="figures/missing.png"><script>undefined_function()</script>'
                                      "</body></html>")
    errors, images = visit(browser, f"{base}/broken.html", tmp_path / "broken.png")
    assert any("undefined_function" in e for e in errors)
    assert any(i["width"] == 0 for i in images)
