"""The lesson's website, checked as a learner meets it: built, served, and opened in a browser.

Marked ``site``. Builds the site with ``mkdocs build --strict`` (mkdocs.yml; the `docs` extra),
which runs the six episode notebooks unless build/site-notebooks/ holds a run of the same cells and
code (then the build takes seconds). Every local link and image of every page must point at a file
of the site. Then each page with a figure (the six episodes, the hyperparameter comparisons) is
opened in headless Chromium over http://localhost: every ``<img>`` must have loaded (naturalWidth >
0), and the page must ask nothing of the network. A screenshot of each is kept in the test's folder
and copied to build/site-screenshots/ to look at.

Skipped when MkDocs, its plugins or Debian's ``chromium`` (``apt-get install chromium``) are absent.
"""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the site needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("mkdocs_jupyter", reason="the site needs the docs extra: pip install -e '.[docs]'")
from mkdocs.commands.build import build  # noqa: E402
from mkdocs.config import load_config  # noqa: E402

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EPISODES = [f"notebooks/episode-0{number}/" for number in range(1, 7)]
FIGURES = {"notebooks/episode-01/": 2, "notebooks/episode-02/": 4, "notebooks/episode-03/": 2,
           "notebooks/episode-04/": 2, "notebooks/episode-05/": 8, "notebooks/episode-06/": 1,
           "hyperparameters/": 11}  # fmt: skip # as tests/test_notebooks.py counts them, and the guide's own
CHECK_PAGE = "/__check__.html"

# Served beside the site, so that it may look into the page it frames (same origin): once the page
# has loaded (its images too), it writes what a learner got into <pre id="report">.
CHECK_HTML = """<!doctype html><html><body style="margin:0">
<iframe id="page" style="border:0;width:100%;height:100vh"></iframe><pre id="report"></pre>
<script>
const frame = document.getElementById("page");
frame.onload = () => {
  const page = frame.contentDocument;
  document.getElementById("report").textContent = JSON.stringify({
    title: page.title,
    images: Array.from(page.images, image => [image.getAttribute("src").slice(0, 80), image.naturalWidth]),
    outputs: page.querySelectorAll(".jp-OutputArea-output").length,
    elsewhere: frame.contentWindow.performance.getEntriesByType("resource").map(entry => entry.name)
      .filter(name => !name.startsWith(location.origin)),
  });
};
frame.src = new URLSearchParams(location.search).get("page");
</script></body></html>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site") / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site_dir), strict=True))  # Abort on any warning
    return site_dir


@pytest.fixture(scope="module")
def server(site):
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith(CHECK_PAGE):
                body = CHECK_HTML.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                super().do_GET()

        def log_message(self, *args):  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class LocalLinks(HTMLParser):
    """The href and src of every element, as written in the page."""

    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.targets += [value for name, value in attrs if name in ("href", "src") and value]


def page_file(site: Path, url_path: str) -> Path:
    path = site / unquote(url_path).lstrip("/")
    return path / "index.html" if url_path.endswith("/") or path.is_dir() else path


def test_the_build_is_clean_and_every_page_is_there(site):
    for page in ["", *EPISODES, "keras-to-pytorch/", "hyperparameters/", "errors/"]:
        assert page_file(site, "/" + page).is_file(), page
    episode_one = page_file(site, "/notebooks/episode-01/").read_text()
    # the line fit printed (Keras's "32/32 - 4s - 136ms/step - accuracy: ..."): the notebook ran before it was rendered
    assert re.search(r"accuracy: \d\.\d{4} - loss: \d", episode_one)
    assert "../../README.md" not in episode_one and "<code>README.md</code>" in episode_one  # as a code reference


def test_every_local_link_and_image_points_at_a_file_of_the_site(site):
    broken = []
    for page in sorted(site.rglob("*.html")):
        page_url = "/" + page.relative_to(site).as_posix()
        parser = LocalLinks()
        parser.feed(page.read_text())
        for target in parser.targets:
            if re.match(r"[a-z][a-z0-9+.-]*:|#|//", target):  # the web, data: URIs, mailto:, anchors
                continue
            url_path = urlsplit(urljoin(page_url, target)).path
            if not page_file(site, url_path).exists():
                broken.append(f"{page_url}: {target}")
    assert not broken, broken


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no chromium: apt-get install chromium (Debian's)")
@pytest.mark.parametrize("page", [*EPISODES, "hyperparameters/"])
def test_page_opens_in_a_browser_with_every_figure(page, server, tmp_path):
    screenshot = tmp_path / (page.strip("/").replace("/", "-") + ".png")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--virtual-time-budget=10000",
               f"--screenshot={screenshot}", "--dump-dom",
               f"{server}{CHECK_PAGE.lstrip('/')}?page=/{page}"]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path).stdout
    found = re.search(r'<pre id="report">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), f"the check page wrote no report; chromium printed:\n{dom[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))

    saved = ROOT / "build" / "site-screenshots"
    saved.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, saved / screenshot.name)

    assert report["title"].endswith("cnn-torch"), report["title"]
    assert len(report["images"]) >= FIGURES[page], report["images"]
    assert all(width > 0 for _, width in report["images"]), [src for src, width in report["images"] if width == 0]
    assert report["elsewhere"] == [], "the page asks the network for these; it should work offline"
    if page in EPISODES:
        assert report["outputs"] > 0  # the cells' outputs are on the page
