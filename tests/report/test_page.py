"""The report's page in a real browser: headless Chromium opens index.html, every image loads,
every link resolves, and a screenshot of the page is kept.

The store follows the quickstart's plan (sweeps/quickstart.yaml: both tasks, all ten settings,
two seeds) with synthetic rows (bench/synthetic_grid.py), some cells diverged and some missing,
so the page has bands, findings and the list of failed or missing cells. Skips, saying why, when
no Chromium is installed (Debian: ``apt-get install chromium``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from mcu_ray.report import build_report
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
from synthetic_grid import write_synthetic_sweep  # noqa: E402  (bench/: the benchmark's store, quickstart-sized)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 3000)  # screenshot size in CSS pixels: the top of the page, down to the first figures
# Run once the page has loaded (every image loaded or failed): what each <img> got, into the DOM.
IMAGE_CHECK = """<script>window.addEventListener("load", function () {
  var found = Array.from(document.images).map(function (i) {
    return [i.getAttribute("src"), i.complete, i.naturalWidth];
  });
  var out = document.createElement("pre"); out.id = "image-check"; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});</script>"""


def find_browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH (Debian: apt-get install chromium)")


def run_browser(browser: str, *args: str) -> str:
    """Headless Chromium's stdout. --no-sandbox: CI runs as root in a container, where the sandbox cannot start."""
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def loaded_images(browser: str, index: Path) -> list:
    """[src, complete, naturalWidth] of every <img> of ``index`` once Chromium has loaded it: the page
    is copied beside itself (same folder, so the same relative paths) with IMAGE_CHECK added."""
    check = index.with_name("browser_check.html")
    check.write_text(index.read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom = run_browser(browser, "--virtual-time-budget=20000", "--dump-dom", check.as_uri())
    check.unlink()
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script did not run; the DOM ends with {dom[-500:]!r}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


class Links(HTMLParser):
    """Every href and src of a page, and every element id."""

    def __init__(self):
        super().__init__()
        self.targets, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.targets += [attrs[a] for a in ("href", "src") if attrs.get(a)]
        if "id" in attrs:
            self.ids.add(attrs["id"])


def unresolved(index: Path) -> list[str]:
    """The links and sources of ``index`` that lead nowhere: a file not in the folder, an #anchor
    with no element of that id. A page of a moved report folder must not point outside it."""
    page = Links()
    page.feed(index.read_text(encoding="utf-8"))
    missing = []
    for target in page.targets:
        if target.startswith("#"):
            if target[1:] not in page.ids:
                missing.append(target)
        elif re.match(r"^[a-z]+:", target) or target.startswith("/") or not (index.parent / target).is_file():
            missing.append(target)
    return missing


@pytest.fixture(scope="module")
def quickstart_report(tmp_path_factory) -> Path:
    """index.html of the quickstart-shaped synthetic sweep: two seeds, every 13th cell diverged, every 17th missing."""
    root = tmp_path_factory.mktemp("page")
    counts = write_synthetic_sweep(str(REPO / "sweeps" / "quickstart.yaml"), str(root / "store"), seeds=(0, 1),
                                   failed_every=13, missing_every=17)
    return Path(build_report(str(root / "store"), counts["sweep"], str(root / "report")))


def test_every_image_loads_and_every_link_resolves(quickstart_report):
    browser = find_browser()
    images = loaded_images(browser, quickstart_report)
    text = quickstart_report.read_text(encoding="utf-8")
    assert len(images) == text.count("<img ") > 0
    assert [src for src, complete, width in images if not (complete and width > 0)] == []
    for src, _, width in images:  # the browser's decoded width is the PNG's own
        assert width == mpimg.imread(quickstart_report.parent / src).shape[1], src
    assert unresolved(quickstart_report) == []
    assert text.count("(<a href=") == len(images)  # every figure links its PDF, and those resolve too


def test_the_check_sees_a_missing_image_and_a_broken_link(quickstart_report, tmp_path):
    """The same checks on a copy with one figure deleted: they must fail there."""
    browser = find_browser()
    copy = tmp_path / "report"
    shutil.copytree(quickstart_report.parent, copy)
    (copy / "digits_Met.png").unlink()
    (copy / "tofu_barriers.pdf").unlink()
    broken = [src for src, complete, width in loaded_images(browser, copy / "index.html") if width == 0]
    assert broken == ["digits_Met.png"]
    assert unresolved(copy / "index.html") == ["digits_Met.png", "tofu_barriers.pdf"]


def test_screenshot_of_the_page(quickstart_report):
    """A screenshot of the top of the page, kept beside it (screenshot.png; look at it)."""
    browser = find_browser()
    shot = quickstart_report.with_name("screenshot.png")
    run_browser(browser, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", quickstart_report.as_uri())
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert np.std(pixels[..., :3]) > 0.05  # text, tables and figures, not a blank page
    print(f"screenshot: {shot}", file=sys.stderr)
    if os.environ.get("MCU_PAGE_SCREENSHOT"):  # keep it where a person or CI artifact step will look
        shutil.copy(shot, os.environ["MCU_PAGE_SCREENSHOT"])
