"""Draw the CA-Stream diagram of the book's introduction into ``stream.svg`` (next to this file).

Run ``python book/figures/stream.py`` after changing the drawing; the SVG is committed so that
building the book needs no plotting. Text is stored as paths, so the page loads no font.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script, not a notebook: draw off-screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

FROZEN, LEARNED, TOKEN = "#d9d9d9", "#f4a259", "#5b8e7d"
STAGES = ["Res-0\n(stem)", "Res-1", "Res-2", "Res-3", "Res-4"]
WIDTHS = [64, 256, 512, 1024, 2048, 2048]


def box(ax, x, y, w, h, text, face, **text_kw):
    """A rounded box centred on (x, y) with a label."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=face, edgecolor="black", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=10, **text_kw)


def arrow(ax, start, end, color="black", **kw):
    """An arrow from start to end."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.2, color=color, **kw))


def draw(path: Path) -> None:
    """Draw the ResNet-50 stream: frozen stages on top, the learned token stream below."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    xs = [1.6 + 1.9 * i for i in range(len(STAGES))]
    top, bottom = 3.0, 1.0
    box(ax, 0.2, top, 0.7, 0.7, "image", "white")
    arrow(ax, (0.55, top), (xs[0] - 0.6, top))
    for i, (x, name) in enumerate(zip(xs, STAGES)):
        box(ax, x, top, 1.2, 0.8, name, FROZEN)
        if i + 1 < len(xs):
            arrow(ax, (x + 0.6, top), (xs[i + 1] - 0.6, top))
        box(ax, x, bottom, 1.0, 0.7, f"CA-{i}", LEARNED, fontweight="bold")
        arrow(ax, (x, top - 0.4), (x, bottom + 0.35))
        ax.text(x + 0.08, (top + bottom) / 2, r"$F_{%d}$" % i, fontsize=11, va="center")
        token_x = x - 0.95
        ax.text(token_x, bottom + 0.15, r"$q_{%d}$" % i, ha="center", fontsize=11, color=TOKEN)
        ax.text(token_x, bottom - 0.3, str(WIDTHS[i]), ha="center", fontsize=8, color=TOKEN)
        arrow(ax, (x - 1.4, bottom), (x - 0.5, bottom), color=TOKEN)
    ax.add_patch(plt.Circle((xs[0] - 1.5, bottom), 0.1, color=TOKEN))
    head_x = xs[-1] + 1.9
    ax.text(xs[-1] + 0.95, bottom + 0.15, r"$q_{5}$", ha="center", fontsize=11, color=TOKEN)
    ax.text(xs[-1] + 0.95, bottom - 0.3, "2048", ha="center", fontsize=8, color=TOKEN)
    arrow(ax, (xs[-1] + 0.5, bottom), (head_x - 0.5, bottom), color=TOKEN)
    box(ax, head_x, bottom, 1.0, 0.7, "fc\n(frozen)", FROZEN)
    arrow(ax, (head_x + 0.5, bottom), (head_x + 1.1, bottom))
    ax.text(head_x + 1.15, bottom, "logits", va="center", fontsize=10)
    box(ax, head_x, top, 1.2, 0.8, "GAP\n(replaced)", "white", color="grey")
    ax.plot([head_x - 0.6, head_x + 0.6], [top - 0.4, top + 0.4], color="#c0392b", linewidth=1.5)
    arrow(ax, (xs[-1] + 0.6, top), (head_x - 0.6, top), linestyle="--", color="grey")
    ax.text(xs[0] - 1.6, bottom - 0.75, "learned token $q_0$", fontsize=9, color=TOKEN)
    ax.text(xs[2], top + 0.75, "pretrained CNN $f$ (frozen)", ha="center", fontsize=11)
    ax.text(xs[2], bottom - 0.75, r"CA: $a = \mathrm{softmax}(F_\ell q_\ell/\sqrt{d_\ell})$,"
            r"  $q_{\ell+1} = W_\ell F_\ell^\top a$", ha="left", fontsize=10)
    ax.set_xlim(-0.3, head_x + 1.8)
    ax.text(xs[0] - 1.6, -0.05, "grey: frozen, orange: learned (one linear layer each), green: token widths", fontsize=8)
    ax.set_ylim(-0.1, 4.0)
    ax.set_aspect("equal")
    ax.axis("off")
    plt.rcParams["svg.fonttype"] = "path"
    fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).with_name("stream.svg"))
