"""The benchmark charts (scripts/benchlib.py) keep every label inside the
picture: legends and bar labels are sized to their longest text. Checked on
charts drawn here with long labels and on the published ones in docs/bench."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import benchlib  # noqa: E402
from conftest import SLUICE  # noqa: E402

LONG = "nginx (return 200, 1 worker, worker_connections 30000, keep-alive)"


def overflow(path):
    """Texts of `path` that reach past its left or right edge, by the
    generous character width the charts are laid out with."""
    svg = open(path).read()
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))
    bad = []
    groups = []  # text-anchor of each enclosing <g>, innermost last
    for m in re.finditer(r'<g\b([^>]*)>|</g>|<text ([^>]*)>([^<]*)</text>', svg):
        if m.group(0).startswith("<g"):
            a = re.search(r'text-anchor="(\w+)"', m.group(1))
            groups.append(a.group(1) if a else (groups[-1] if groups else "start"))
            continue
        if m.group(0) == "</g>":
            groups.pop()
            continue
        attrs, text = m.group(2), m.group(3)
        text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        if "rotate" in attrs:
            continue
        x = float(re.search(r'\bx="([-\d.]+)"', attrs).group(1))
        w = benchlib.text_width(text)
        anchor = re.search(r'text-anchor="(\w+)"', attrs)
        anchor = anchor.group(1) if anchor else (groups[-1] if groups else "start")
        left, right = {"start": (x, x + w), "end": (x - w, x),
                       "middle": (x - w / 2, x + w / 2)}[anchor]
        if left < 0 or right > width:
            bad.append((text, left, right, width))
    return bad


def test_line_chart_legend_fits(tmp_path):
    p = str(tmp_path / "lines.svg")
    benchlib.svg_lines(p, "t", ["a", "b"], {LONG: [1, 2], "uvicorn (uvloop, httptools)": [2, 3]}, "ms")
    assert overflow(p) == []


def test_percentile_chart_legend_fits(tmp_path):
    p = str(tmp_path / "pct.svg")
    lat = {k: 1000.0 * (i + 1) for i, (_, k) in enumerate(benchlib.PCTS)}
    benchlib.svg_percentiles(p, "t", {LONG: [{"latency": lat}], "sluice": [{"latency": lat}]})
    assert overflow(p) == []


def test_bar_chart_labels_fit(tmp_path):
    p = str(tmp_path / "bars.svg")
    benchlib.svg_bars(p, "t", {LONG: 123456.0, "x": 5.0}, "req/s")
    assert overflow(p) == []


def test_load_tool_chart_fits(start_gateway, tmp_path):
    """sluice-load's own latency chart (--svg), drawn from a short run."""
    load = os.path.join(os.path.dirname(SLUICE), "load", "sluice-load")
    if not os.path.exists(load):
        pytest.skip("sluice-load not built")
    gw = start_gateway("hello", workers=1)
    svg = str(tmp_path / "lat.svg")
    p = subprocess.run([load, "-q", "-c", "4", "-d", "1s", "--svg", svg, f"http://127.0.0.1:{gw.port}/"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p
    assert overflow(svg) == []


# Charts drawn by benchlib in the published report (sluice-load's own charts
# there come from the run that made the page; test_load_tool_chart_fits
# checks what the tool draws now).
@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "docs", "bench", "*.svg"))
                                        if "<g text-anchor" not in open(p).read()),
                         ids=os.path.basename)
def test_published_chart_fits(path):
    assert overflow(path) == []
