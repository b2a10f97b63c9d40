"""`--plot FILE`: a sweep drawn as a chart. SVG is written by hand (no
dependency); PNG goes through matplotlib when it is installed."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from paramcalc import units
from paramcalc.errors import UserError

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
W, H, LEFT, RIGHT, TOP, BOTTOM = 760, 440, 80, 170, 40, 60


def _scaled(report) -> tuple[dict[str, list[float]], str]:
    if report.unit == "bytes":
        return {k: [units.gib(v or 0) for v in vs] for k, vs in report.series.items()}, "GiB per GPU"
    return {k: [v or 0 for v in vs] for k, vs in report.series.items()}, report.unit


def write(report, path: str) -> None:
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".svg":
        text = svg(report)
    elif suffix == ".png":
        return _png(report, target)
    else:
        raise UserError(f"cannot draw {target.name}", field="plot", fix="name a .svg or .png file")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write the plot ({e.strerror})", where=str(target)) from None


def svg(report) -> str:
    series, unit = _scaled(report)
    xs = report.values
    top = max(max(v) for v in series.values()) or 1
    x0, x1 = LEFT, W - RIGHT
    y0, y1 = H - BOTTOM, TOP

    def px(i: int) -> float:  # evenly spaced categories: sweeps are usually powers of two
        return x0 + (x1 - x0) * (i / max(1, len(xs) - 1))

    def py(v: float) -> float:
        return y0 - (y0 - y1) * v / (top * 1.05)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
           f'{escape(report.model)}: {report.figure} vs {report.over}</text>',
           f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>',
           f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>',
           f'<text x="{(x0 + x1) / 2}" y="{H - 18}" text-anchor="middle">{escape(report.over)}</text>',
           f'<text x="18" y="{(y0 + y1) / 2}" text-anchor="middle" transform="rotate(-90 18 {(y0 + y1) / 2})">'
           f'{escape(unit)}</text>']
    for k in range(6):
        v = top * 1.05 * k / 5
        out.append(f'<line x1="{x0 - 4}" y1="{py(v):.1f}" x2="{x1}" y2="{py(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 8}" y="{py(v) + 4:.1f}" text-anchor="end">{v:,.3g}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{px(i):.1f}" y="{y0 + 18}" text-anchor="middle">{x:,}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        width = 3 if name in ("total", "wall-clock") else 1.5
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="{width}"/>')
        ly = TOP + 18 * n + 10
        out.append(f'<line x1="{x1 + 15}" y1="{ly}" x2="{x1 + 35}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="{width}"/>')
        out.append(f'<text x="{x1 + 40}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _png(report, target: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("PNG plots need matplotlib", field="plot",
                        fix="pip install matplotlib, or write an .svg file instead") from None
    series, unit = _scaled(report)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in series.items():
        ax.plot([str(x) for x in report.values], values, label=name, linewidth=3 if name == "total" else 1.5)
    ax.set_xlabel(report.over)
    ax.set_ylabel(unit)
    ax.set_title(f"{report.model}: {report.figure} vs {report.over}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(target)
