"""`dreamtext gallery`: a static page comparing runs, with every file it needs beside it.

SITE/index.html shows, for each run, its prompt or input images, turntable, named views, mesh (in
the bundled WebGL viewer, static/glb-viewer.js) and metrics, and a table comparing the runs'
metrics. The runs' files are copied to SITE/runs/NAME/ and the scripts to SITE/assets/, and the
page's Content-Security-Policy allows its own folder only, so it never reaches the network. Serve
SITE with any file server (`python3 -m http.server -d SITE`); browsers do not let a file:// page
load the GLB files.
"""

from __future__ import annotations

import html
import math
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from ..errors import DreamtextError
from ..utils.io import atomic_write_text
from .runs import RunSummary, summarize_run

MARKER_FILE = ".dreamtext-gallery"
STATIC_FILES = ("glb-viewer.js", "gallery.js", "gallery.css")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


def _slug(name: str, taken: set[str]) -> str:
    """A folder name for a run: its workspace's name in safe characters, made unique."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    slug, number = base, 2
    while slug in taken:
        slug, number = f"{base}-{number}", number + 1
    taken.add(slug)
    return slug


def _prepare_output(out: Path) -> None:
    """Create SITE, or clear an earlier gallery there; never delete a folder this command did not write."""
    if out.exists() and not out.is_dir():
        raise DreamtextError(f"--out {out} is a file; choose a folder for the gallery")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER_FILE).is_file():
            raise DreamtextError(f"--out {out} is a non-empty folder that holds no gallery; choose an empty or new folder")
        for name in ("runs", "assets"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text("written by dreamtext gallery; the command replaces this folder's runs/ and assets/\n")


class _RunFiles:
    """Copies one run's files into SITE/runs/SLUG and gives their URLs relative to index.html."""

    def __init__(self, site: Path, slug: str):
        self.site = site
        self.folder = site / "runs" / slug

    def add(self, source: Path | None, name: str) -> str | None:
        if source is None:
            return None
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return quote(target.relative_to(self.site).as_posix())


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _format(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _shorten(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scalar_metrics(metrics: dict | None) -> dict[str, object]:
    """The metrics a table can show: numbers, flags and short strings (lists like `files` are left out)."""
    shown = {}
    for key, value in (metrics or {}).items():
        if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 80):
            shown[key] = value
    return shown


def _figure(url: str, caption: str, alt: str) -> str:
    return f'<figure><img src="{url}" alt="{_text(alt)}" loading="lazy"><figcaption>{_text(caption)}</figcaption></figure>'


def _run_section(index: int, run: RunSummary, files: _RunFiles) -> str:
    parts = [f'<article class="run" id="run-{index}">',
             f"<h2>{index}. {_text(run.title)}</h2>",
             f'<div class="meta"><span class="badge">{_text(run.method)}</span> {_text(run.root)}</div>']
    if run.inputs:
        heading = "input image" if len(run.inputs) == 1 and run.method != "fit" else "input views"
        figures = [_figure(files.add(path, f"input/{i}{path.suffix.lower()}"), path.name, f"input {i}") for i, path in enumerate(run.inputs)]
        parts += [f"<h3>{heading}</h3>", f'<div class="strip">{"".join(figures)}</div>']
    elif run.prompt:
        parts += ["<h3>prompt</h3>", f"<p>{_text(run.prompt)}</p>"]

    parts.append("<h3>turntable: colour | normals | depth</h3>")
    mp4, gif = files.add(run.turntable_mp4, "turntable.mp4"), files.add(run.turntable_gif, "turntable.gif")
    if mp4:
        gif_attribute = f' data-gif="{gif}"' if gif else ""
        parts.append(f'<video class="turntable" src="{mp4}"{gif_attribute} autoplay muted loop playsinline controls '
                     f'preload="auto" aria-label="turntable of run {index}"></video>')
    elif gif:
        parts.append(f'<img class="turntable" src="{gif}" alt="turntable of run {index}">')
    else:
        parts.append('<p class="missing">no turntable yet</p>')

    if run.views:
        figures = [_figure(files.add(path, f"views/{name}.png"), name, f"{name} view") for name, path in run.views.items()]
        parts += ["<h3>named views</h3>", f'<div class="strip">{"".join(figures)}</div>']

    parts.append("<h3>mesh</h3>")
    mesh = files.add(run.mesh, "mesh.glb")
    if mesh:
        parts.append(f'<canvas class="glb-viewer" data-src="{mesh}" aria-label="3D view of the mesh of run {index}"></canvas>'
                     f'<div class="glb-status"></div><div class="meta"><a href="{mesh}" download>mesh.glb</a></div>')
    else:
        parts.append('<p class="missing">no mesh exported yet</p>')

    if run.metrics is not None:
        metrics_url = files.add(run.root / "metrics.json", "metrics.json")
        rows = "".join(f'<tr><th>{_text(k)}</th><td class="number">{_text(_format(v))}</td></tr>' for k, v in _scalar_metrics(run.metrics).items())
        parts += [f'<h3>metrics (<a href="{metrics_url}">json</a>)</h3>', f"<table>{rows}</table>"]
    if run.validation is not None:
        url = files.add(run.validation, "validation.png")
        parts += ["<h3>final validation</h3>", f'<img class="turntable" src="{url}" alt="final validation render of run {index}">']
    parts.append("</article>")
    return "\n".join(parts)


def _comparison(runs: Sequence[RunSummary]) -> str:
    """One row per metric, one column per run; empty when no run has metrics."""
    tables = [_scalar_metrics(run.metrics) for run in runs]
    keys = sorted({key for table in tables for key in table})
    if not keys:
        return ""
    header = "".join(f'<th title="{_text(run.title)}"><a href="#run-{i}">{i}. {_text(_shorten(run.title))}</a></th>'
                     for i, run in enumerate(runs, start=1))
    rows = []
    for key in keys:
        cells = "".join(f'<td class="number">{_text(_format(table[key])) if key in table else ""}</td>' for table in tables)
        rows.append(f"<tr><th>{_text(key)}</th>{cells}</tr>")
    return f'<div class="compare"><h3>metrics</h3><table><tr><th>metric</th>{header}</tr>{"".join(rows)}</table></div>'


def _page(title: str, runs: Sequence[RunSummary], sections: Sequence[str]) -> str:
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<link rel="icon" href="data:,">',
        f"<title>{_text(title)}</title>",
        '<link rel="stylesheet" href="assets/gallery.css">',
        "</head><body>",
        f"<h1>{_text(title)}</h1>",
        f'<p class="lead">{len(runs)} run{"s" if len(runs) != 1 else ""} · made by dreamtext gallery</p>',
        _comparison(runs),
        '<div class="runs">', *sections, "</div>",
        '<script src="assets/gallery.js"></script>',
        '<script src="assets/glb-viewer.js"></script>',
        "</body></html>",
        "",
    ])


def build_gallery(workspaces: Sequence[str | Path], out: str | Path, title: str = "dreamtext results") -> Path:
    """Write the gallery of `workspaces` into `out`; returns the path of its index.html.

    Every workspace is read before anything is written, so a bad one leaves `out` untouched.
    """
    if not workspaces:
        raise DreamtextError("no workspaces given; pass the folders of one or more dreamtext runs")
    runs = [summarize_run(workspace) for workspace in workspaces]
    site = Path(out)
    _prepare_output(site)
    taken: set[str] = set()
    sections = [_run_section(i, run, _RunFiles(site, _slug(run.root.resolve().name, taken))) for i, run in enumerate(runs, start=1)]
    assets = site / "assets"
    assets.mkdir(exist_ok=True)
    static = resources.files(__package__) / "static"
    for name in STATIC_FILES:
        (assets / name).write_bytes((static / name).read_bytes())
    return atomic_write_text(site / "index.html", _page(title, runs, sections))
