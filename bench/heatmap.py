"""The regime map's heatmap (bench/README.md, case MAP): one panel per dtype,
rows m down, hidden widths h across, each cell the fastest peer's time /
bpnet's time, annotated with the ratio and that peer; green where bpnet
leads (> 1), red where it trails (< 1), on a log scale centred on 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LIMIT = 4.0  # the colour scale saturates at 1/4x and 4x


def grid(res, dtype):
    """Ratios (rows x widths) and the fastest peer of each cell, from map_case's result."""
    widths = sorted({h for h, _ in res["cells"]})
    rows = sorted({m for _, m in res["cells"]})
    R = np.array([[res[f"{h}x{m}/{dtype}"]["ratio"] for h in widths] for m in rows])
    who = [[res[f"{h}x{m}/{dtype}"]["fastest"] for h in widths] for m in rows]
    return widths, rows, R, who


def draw(res, dtypes, path, title):
    """Write the heatmap PNG to `path` (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.2 * len(dtypes) + 1.2, 4.6),
                             squeeze=False, layout="constrained")
    norm = LogNorm(vmin=1 / LIMIT, vmax=LIMIT)
    im = None
    for n, (ax, d) in enumerate(zip(axes[0], dtypes)):
        widths, rows, R, who = grid(res, d)
        im = ax.imshow(np.clip(R, 1 / LIMIT, LIMIT), cmap="RdYlGn", norm=norm, aspect="auto")
        ax.set_xticks(range(len(widths)), [str(h) for h in widths])
        ax.set_yticks(range(len(rows)), [f"{m:,}" for m in rows])
        ax.set_xlabel("hidden width h")
        if n == 0:
            ax.set_ylabel("rows m")
        ax.set_title(d)
        for i in range(len(rows)):
            for j in range(len(widths)):
                r = R[i, j]
                mark = "" if r >= 1 else "\n(behind)"
                dark = abs(np.log(r)) > 0.55 * np.log(LIMIT)  # white text on deep colours
                ax.text(j, i, f"{r:.2f}x\n{who[i][j]}{mark}", ha="center", va="center",
                        fontsize=8, fontweight="bold" if r < 1 else "normal",
                        color="white" if dark else "black")
    cb = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9)
    ticks = [1 / LIMIT, 0.5, 1.0, 2.0, LIMIT]
    cb.set_ticks(ticks, labels=[f"{t:g}x" for t in ticks])
    cb.minorticks_off()
    cb.set_label("fastest peer's time / bpnet's (> 1: bpnet faster)")
    fig.suptitle(title, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
