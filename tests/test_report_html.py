"""The self-contained HTML report: built offline, and drawn for real in headless Chromium."""
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

import foundry
from foundry import viz
from foundry.data import load_arrays
from foundry.models.student import FoundryStudent, student_config_for
from foundry.report import cloud_views, write_html_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    teacher = foundry.create_model("tiny").eval()
    student = FoundryStudent(student_config_for("foundry-tiny", teacher, teacher="tiny")).eval()
    arrays = load_arrays("kicadpart", "test", num_points=256)
    pick = [int(np.flatnonzero(arrays["labels"] == c)[0]) for c in np.unique(arrays["labels"])[:3]]
    cp = {int(k): v for k, v in arrays["category_parts"].items()}
    view = cloud_views(student, teacher, arrays["points"][pick], [f"shape {i}" for i in pick],
                       parts=arrays["parts"][pick], categories=arrays["labels"][pick], category_parts=cp)
    png = viz.bar_chart(["a", "b"], [1.0, 2.0], [0.0, 0.0], out / "bars.png", ylabel="ms", title="bars")
    blocks = [{"markdown": "## Scores\n\n| model | acc |\n|---|---|\n| teacher | 90.0 |\n| `s16` | 89.5 |"},
              {"view": view, "caption": "Three KiCadPart shapes."}, {"image": png, "caption": "A PNG figure."}]
    return write_html_report(out / "report.html", "Test report", blocks), view


def test_page_holds_everything_it_shows(report):
    path, view = report
    text = path.read_text()
    assert [p["name"] for p in view["panels"]] == ["student: SuperToken", "student: token error (1 - cos)",
                                                   "parts: ground truth"]
    assert "<table>" in text and "<code>s16</code>" in text and "data:image/png;base64," in text
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)  # nothing fetched at view time
    assert "Plotly" in text and path.stat().st_size < 15 * 2**20


def test_chromium_draws_the_3d_views(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    path, _ = report
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    status = re.search(r'<p id="foundry-render-status" data-drawn="(\d+)" data-expected="(\d+)"', dom)
    assert status, dom[:2000]
    assert int(status.group(1)) == int(status.group(2)) == 1, re.search(r'foundry-render-status[^<]*', dom).group(0)
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1300,760", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120)
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    coloured = (img.max(-1) - img.min(-1)) > 0.25  # saturated pixels: the drawn points (the page is greyscale)
    assert img.shape[:2] == (760, 1300) and coloured.sum() > 300, coloured.sum()
