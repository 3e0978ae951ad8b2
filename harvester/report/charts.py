"""The report's figures: matplotlib (Agg for raster layers) drawn as SVG text to inline.

Bars and lines stay vectors; the map's cells, which can be many thousands, are one rasterised
layer (a PNG inside the SVG as a data: URI). Text stays text (`svg.fonttype` none: no font
file is embedded or fetched; the browser draws it in its sans-serif). Labels come from the
store (keywords, reasons), and matplotlib's SVG writer escapes them as XML text. Each figure
has its own `svg.hashsalt`, so the ids of two inline figures never clash and a figure is
byte-identical from run to run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # never probe for a display; raster layers are drawn by Agg

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FuncFormatter, NullFormatter

from harvester.report.model import Bar, GeoView, KeywordLine, Timeline

COLOURS = {"done": "#2b8a3e", "skipped": "#e8a33d", "failed": "#c92a2a"}
INK, GRID = "#333333", "#d0d0d0"
WIDTH_IN = 9.0
DAY_S = 86400
SCATTER_CELLS = 5000  # more cells than this are drawn as one image of the grid
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.parse_math": False,
    "image.cmap": "viridis",  # a keyword or reason with "$" is text, not mathtext
}


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as an inline <svg> element (no XML prolog), deterministic for `salt`."""
    buf = io.StringIO()
    with rc_context({**_RC, "svg.hashsalt": f"harvest-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def _figure(height_in: float) -> Figure:
    with rc_context(_RC):
        return Figure(figsize=(WIDTH_IN, height_in), dpi=100, layout="constrained")


def _days(seconds: Sequence[float]) -> list[float]:
    """Unix seconds as matplotlib's dates: days since its epoch, 1970-01-01 UTC."""
    return [t / DAY_S for t in seconds]


def timeline_svg(tl: Timeline) -> str:
    """Photos finished per hour (or day), stacked by outcome; runs as vertical lines."""
    fig = _figure(3.0)
    with rc_context(_RC):
        ax = fig.add_subplot()
        x = _days(tl.starts)
        width = tl.bin_s / DAY_S * 0.9  # in days, matplotlib's date unit
        bottom = [0] * len(x)
        for status, values in (("done", tl.done), ("skipped", tl.skipped), ("failed", tl.failed)):
            ax.bar(
                x,
                values,
                width=width,
                bottom=bottom,
                align="edge",
                label=status,
                color=COLOURS[status],
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for run in tl.runs:
            _mark_run(ax, run.started_at, run.finished_at, run.number, run.outcome)
        ax.set_ylabel(f"photos per {tl.unit}")
        ax.xaxis_date(tz="UTC")
        ax.set_xlabel("UTC")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, ncols=3)
        ax.grid(axis="y", color=GRID, linewidth=0.5)
    return to_svg(fig, "timeline")


def _mark_run(ax: Axes, start: float, end: float | None, number: int, outcome: str | None) -> None:
    colour = "#1c7ed6" if number == 1 else "#7048e8"
    ax.axvline(_days([start])[0], color=colour, linewidth=1, linestyle="--")
    label = "run 1" if number == 1 else f"restart {number - 1}"
    ax.annotate(
        label,
        (_days([start])[0], 1.0),
        xycoords=("data", "axes fraction"),
        rotation=90,
        va="top",
        ha="right",
        fontsize=7,
        color=colour,
    )
    if end is not None and outcome not in (None, "finished"):
        ax.axvline(_days([end])[0], color="#868e96", linewidth=1, linestyle=":")


def bars_svg(bars: Sequence[Bar], salt: str, xlabel: str) -> str:
    """Horizontal bars, largest on top."""
    fig = _figure(0.6 + 0.26 * max(len(bars), 1))
    with rc_context(_RC):
        ax = fig.add_subplot()
        labels = [_short(b.label) for b in reversed(bars)]
        counts = [b.count for b in reversed(bars)]
        drawn = ax.barh(range(len(bars)), counts, color="#1c7ed6")
        ax.set_yticks(range(len(bars)), labels)
        ax.bar_label(drawn, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.margins(x=0.12)
    return to_svg(fig, salt)


def keywords_svg(lines: Sequence[KeywordLine], keep: int = 30) -> str:
    """Per keyword: found against stored, the largest `keep` by found."""
    top = sorted(lines, key=lambda k: (-k.found, k.keyword))[:keep]
    fig = _figure(0.8 + 0.32 * max(len(top), 1))
    with rc_context(_RC):
        ax = fig.add_subplot()
        y = list(range(len(top)))[::-1]
        ax.barh(
            [v + 0.2 for v in y], [k.found for k in top], height=0.4, color="#adb5bd", label="found"
        )
        ax.barh(
            [v - 0.2 for v in y],
            [k.stored for k in top],
            height=0.4,
            color=COLOURS["done"],
            label="stored",
        )
        ax.set_yticks(y, [_short(k.keyword) for k in top])
        ax.set_xlabel("photos")
        ax.legend(loc="lower right", frameon=False)
    return to_svg(fig, "keywords")


def map_svg(geo: GeoView) -> str:
    """Geotagged photos per grid cell on longitude/latitude axes, with a 30° graticule.

    Up to SCATTER_CELLS cells are square markers (visible however few); more are one image of
    the whole grid, which Agg draws in a fraction of the time. Either way one raster layer.
    """
    fig = _figure(4.6)
    with rc_context(_RC):
        ax = fig.add_subplot()
        if geo.count:
            norm = LogNorm(vmin=1, vmax=max(max(geo.count), 2))
            layer = _cells(ax, geo, norm)
            layer.set_rasterized(True)
            bar = fig.colorbar(layer, ax=ax, label=f"photos per {geo.cell_deg:g}° cell", shrink=0.8)
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_aspect("equal")
        ax.set_xticks(range(-180, 181, 30))
        ax.set_yticks(range(-90, 91, 30))
        ax.grid(color=GRID, linewidth=0.5)
        ax.set_axisbelow(False)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
    return to_svg(fig, "map")


def _cells(ax: Axes, geo: GeoView, norm: LogNorm) -> PathCollection | AxesImage:
    if len(geo.count) <= SCATTER_CELLS:
        half = geo.cell_deg / 2
        x, y = [v + half for v in geo.lon], [v + half for v in geo.lat]
        return ax.scatter(x, y, c=list(geo.count), s=4, marker="s", linewidths=0, norm=norm)
    cols, rows = round(360 / geo.cell_deg), round(180 / geo.cell_deg)
    grid = np.full((rows, cols), np.nan)
    ix = np.clip(((np.array(geo.lon) + 180) / geo.cell_deg).astype(int), 0, cols - 1)
    iy = np.clip(((np.array(geo.lat) + 90) / geo.cell_deg).astype(int), 0, rows - 1)
    grid[iy, ix] = geo.count
    extent = (-180.0, 180.0, -90.0, 90.0)
    return ax.imshow(grid, origin="lower", extent=extent, interpolation="nearest", norm=norm)


def _short(label: str, most: int = 40) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"
