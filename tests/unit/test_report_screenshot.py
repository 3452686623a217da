"""The HTML report rendered by a real browser (Debian's chromium, headless): it loads and shows.

The PNG is kept next to the test's temp dir for a person to look at.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ppminilm.report.render import build_report
from tests.unit.test_report import _summary

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags for a headless start on a machine with no network: no sandbox (root), no GPU, no
#: background networking (closed network: every attempt would be refused and logged).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
#: A rendered page with tables and plots: many distinct pixels, a good share of them dark.
MIN_DARK_SHARE = 0.005
MIN_COLOURS = 200


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    paths = build_report(_summary(), tmp_path / "report")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            Path(paths["html"]).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    # No script or resource errors while loading (the page is self-contained).
    for marker in ("Uncaught", "ERR_FILE_NOT_FOUND", "Failed to load resource"):
        assert marker not in proc.stderr, proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    dark = (pixels.mean(axis=-1) < 0.4).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert dark > MIN_DARK_SHARE and colours > MIN_COLOURS, (dark, colours)
