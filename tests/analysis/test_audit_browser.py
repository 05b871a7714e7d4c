"""The audit's HTML report as a person sees it: rendered by a real browser (headless Chromium,
installed by .ci/run), not blank, every picture decoded, the ranking table shown."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,1600")
# appended to a copy of the report: after loading, writes what the page shows into the DOM
CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const table = document.getElementById("ranking");
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = `images ${decoded}/${images.length} table ${table ? table.rows.length : 0}` +
    ` height ${table ? Math.round(table.getBoundingClientRect().height) : 0}`;
  document.body.appendChild(out);
});</script>"""

pytestmark = [pytest.mark.slow,  # a real browser: seconds per test (CONTRIBUTING.md)
              pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (.ci/run "
                                 "installs Debian's chromium); the report is not rendered")]


@pytest.fixture(scope="module")
def report(tmp_path_factory, image_folder_module):
    """An audit's HTML report (shipped HOG and LBP decoders, 12 small photos, offline)."""
    out = tmp_path_factory.mktemp("audit")
    capsys = _NoCapture()
    code, _, err = run_cli(capsys, "audit", "-f", "hog,lbp", "--data", image_folder_module,
                           "--image-size", 32, "--show", 4, "--bootstrap", 100, "-o", out,
                           "--reid-feature", "torchvision.resnet18.avgpool", "--reid-param",
                           "pretrained=false", "--perceptual-weights", "none")
    assert code == 0, err
    return out / "audit.html"


def _browse(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_browser_decodes_every_image_and_shows_the_table(report, tmp_path):
    page = tmp_path / "checked.html"
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    done = _browse(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    match = re.search(r'id="check">images (\d+)/(\d+) table (\d+) height (\d+)<', done.stdout)
    assert match, f"the check did not run; browser said: {done.stderr[-500:]}"
    decoded, total, rows, height = map(int, match.groups())
    assert total == 2 * 4 * 2 + 1  # photo + reconstruction, 4 pairs, 2 decoders, the chart
    assert decoded == total
    assert rows == 1 + 2 + 1 and height > 50  # header, one row per decoder, chance


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "report.png"
    done = _browse(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), done.stderr[-500:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1600, 1200)
    ink = (pixels.min(axis=2) < 200).mean()  # text, table lines, pictures
    assert ink > 0.05, f"only {ink:.1%} of the screenshot is not near-white"
    colours = len(np.unique(pixels.reshape(-1, 3).astype(np.uint8), axis=0))
    assert colours > 2000  # photographs, not only text
    shutil.copy(shot, report.parent / "screenshot.png")


@pytest.fixture(scope="module")
def image_folder_module(tmp_path_factory):
    from helpers import write_images

    folder = tmp_path_factory.mktemp("photos") / "images"
    write_images(folder, 12, size=(64, 56))
    return folder


class _NoCapture:
    """``run_cli``'s capsys for a module fixture: output is not captured (not needed)."""

    def readouterr(self):
        class Out:
            out = err = ""
        return Out()
