"""The report's figures as PNG bytes (matplotlib, Agg): per-layer error along depth, and the
preprocessing heat-map. PNGs carry no timestamp, so equal data gives equal bytes."""
from __future__ import annotations

import io

import numpy as np

ZERO = 1e-12  # exact matches drawn on the log axis's floor
METADATA = {"Software": None}  # no matplotlib version in the file: bytes depend on data only


def _figure(w: float, h: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, plt.figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=METADATA)
    plt.close(fig)
    return buf.getvalue()


def depth(layers: dict) -> bytes:
    """needed = max|err| / max|ref| per layer pair in execution order (log scale), the allowed
    tolerance per pair (the base tolerance, raised to FLOOR_FACTOR x the fp32 floor where that is
    larger), the fp32 floor itself, and the first divergent pair marked."""
    diffs = layers["diffs"]
    x = np.arange(len(diffs))
    needed = np.array([ZERO if d["needed"] is None else max(d["needed"], ZERO) for d in diffs])
    allowed = np.array([d["allowed"] for d in diffs])
    floor = np.array([max(d["floor"], ZERO) for d in diffs])
    plt, fig = _figure(9, 3.6)
    ax = fig.add_subplot()
    ax.set_yscale("log")
    ax.plot(x, needed, "o-", ms=3, lw=1, color="#1f5fa8", label="max |err| / max |ref|")
    ax.plot(x, floor, ".", ms=3, color="#999999", label="fp32 floor (torch fp32 vs fp64)")
    ax.step(x, allowed, where="mid", color="#c0392b", lw=1, ls="--", label="allowed per pair")
    ax.axhline(layers["tolerance"], color="#c0392b", lw=0.8, alpha=0.5)
    bad = [i for i, d in enumerate(diffs) if not d["passed"]]
    if bad:
        ax.plot(x[bad], needed[bad], "x", color="#c0392b", ms=7, label="above tolerance")
    first = layers["first_divergent_index"]
    if first is not None:
        ax.axvline(first, color="#c0392b", lw=1.2)
        ax.annotate(f"first divergence: {diffs[first]['name']}", (first, needed[first]), xytext=(6, 8),
                    textcoords="offset points", color="#c0392b", fontsize=8)
    ax.set_xlabel("layer pair, in execution order")
    ax.set_ylabel(f"relative error (exact: drawn at {ZERO:g})")
    ax.set_xlim(-0.5, max(len(diffs) - 0.5, 0.5))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    return _png(plt, fig)


def heatmap(photo: np.ndarray, heat: dict, reference: str, name: str) -> bytes:
    """The reference network input, then each variant's max |level difference| over channels on
    the same photograph, one colour scale for all."""
    top = max([int(h.max()) for h in heat.values() if h is not None] + [1])
    plt, fig = _figure(3.2 * (1 + len(heat)), 3.6)
    axes = fig.subplots(1, 1 + len(heat))
    axes[0].imshow(photo)
    axes[0].set_title(f"{name}: {reference} input", fontsize=8)
    image = None
    for ax, (v, h) in zip(axes[1:], heat.items()):
        if h is None:
            ax.text(0.5, 0.5, "other shape", ha="center", va="center")
        else:
            image = ax.imshow(h, cmap="magma", vmin=0, vmax=top)
            ax.set_title(f"{v}: mean {h.mean():.2f}, max {int(h.max())} levels", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=list(axes[1:]), shrink=0.8, label="|difference| (levels)")
    return _png(plt, fig)
