"""Figures of the book. Each one carries the data label (SYNTHETIC or real, profile, weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from alllib import CLASS_NAMES
from alllib.method import metrics
from alllib.method.models import DISPLAY_ORDER
from alllib.method.preprocessing import center_crop, crop_box
from alllib.method.training import triangular2
from alllib.results import paper
from alllib.rounding import fmt

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.runs import Run, RunSet

CLASS_COLORS = {"ALL": "#b2182b", "Hem": "#2166ac", "all": "#b2182b", "hem": "#2166ac"}

# Text sizes that stay at 9 px or more once the book scales a figure to its column (a 9-inch figure at
# 100 dpi shown 752 px wide keeps 84 % of its size: 10 pt is then about 11 px), in every figure that does
# not set its own; and the colour cycle of seaborn's colour-blind-safe palette
plt.rcParams.update(
    {
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "figure.titlesize": 12,
        "axes.prop_cycle": plt.cycler(color=sns.color_palette("colorblind")),
    }
)


def stamp(fig, label: str):
    """Put the data label on a figure where nobody can miss it, at a size that stays legible when the
    book scales the figure to its column (and keep it for the alt text)."""
    synthetic = "SYNTHETIC" in label
    text = f"{label}: a pipeline test, not a reproduction" if synthetic else label
    box = {"boxstyle": "round,pad=0.3", "facecolor": "#fde0e0" if synthetic else "#eeeeee", "edgecolor": "none"}
    fig.text(
        0.5,
        1.0,
        text,
        ha="center",
        va="bottom",
        fontsize=12,
        color="#8b0000" if synthetic else "#222222",
        weight="bold",
        bbox=box,
    )
    fig.alllib_label = label
    return fig


# Grad-CAM maps in a perceptually uniform colour map, readable without colour vision too (not jet)
MAP_COLOURS = "viridis"
# right and wrong: a mark as well as a colour (Okabe-Ito blue and vermilion, told apart by all)
RIGHT, WRONG = ("✓ right", "#0072b2"), ("✗ wrong", "#d55e00")


def verdict_mark(right: bool) -> str:
    return (RIGHT if right else WRONG)[0]


def verdict_colour(right: bool) -> str:
    return (RIGHT if right else WRONG)[1]


def watermark(ax, label: str) -> None:
    """Across a panel that stands beside the paper's numbers, on synthetic data only: a large diagonal
    "SYNTHETIC: not comparable", so that no crop of the panel reads as a reproduction."""
    if "SYNTHETIC" not in label:
        return
    ax.text(
        0.5,
        0.5,
        "SYNTHETIC:\nnot comparable",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=22,
        color="#8b0000",
        alpha=0.18,
        rotation=25,
        weight="bold",
        zorder=0,
    )


# ---------------------------------------------------------------- captions and alt text

# The output metadata key that carries a figure's caption, alt text and name; the runner turns it into
# MyST-NB's figure and image cell metadata when it executes a notebook for the book (book.postprocess.for_the_book).
FIGURE_META = "alllib/figure"
# A figure wider than this (inches, at 100 dpi) would be shrunk below its fonts' legible size in the text
# column: the book gives it the page's full width (the cell tag full-width of sphinx-book-theme).
WIDE_INCHES = 8.0

# What each figure of the book shows: (the kind of chart, for the alt text; the caption, whose {fields}
# the notebook's facts fill; the paper's figure it answers, whose own caption follows ours).
CAPTIONS: dict[str, tuple[str, str, int | None]] = {
    "image_statistics": (
        "Two histograms",
        "Cell size (share of non-black pixels) and mean intensity of the {images} labelled images, by class.",
        None,
    ),
    "fig2_samples": (
        "Grid of single-cell images",
        "{cells} cells drawn at random from the training folds, then the {fragments} images whose cells reach "
        "furthest outside the central {crop} px window.",
        2,
    ),
    "fig4_crop": (
        "Two rows of single-cell images",
        "The originals at {side} px with the {crop} px crop window dashed (top) and their centre crops (bottom).",
        4,
    ),
    "run_phases": (
        "Stacked horizontal bar chart",
        "Mean wall seconds of one training run per backbone and input size, split into the phases its run.json "
        "records, from the kernel's start to the saved model.",
        None,
    ),
    "class_balance": (
        "Bar chart",
        "Training images per epoch of each class, before and after random oversampling of the minority class.",
        None,
    ),
    "stain": (
        "Scatter plot and box plots",
        "Mean colour of the cell pixels per subject (left), and per image for the largest subjects (right).",
        None,
    ),
    "augmentation": (
        "Grid of single-cell images",
        "Training images after online augmentation ({augment}), at the crop size.",
        None,
    ),
    "fig6_curves": ("Two line charts", "Accuracy and loss per epoch of {run}, training and validation.", 6),
    "curves_grid": (
        "Grid of line charts, two per run",
        "Accuracy and loss per epoch of the {runs} runs of seed {seed}, training and validation.",
        6,
    ),
    "batchnorm": (
        "Grouped bar chart",
        "Validation accuracy at the best epoch with the running BatchNorm statistics and with re-estimated ones, "
        "mean per backbone.",
        None,
    ),
    "validation_strip": (
        "Strip plot",
        "Validation accuracy of every run by backbone, coloured by input size; the dotted line is 0.5.",
        None,
    ),
    "table4_bars": (
        "Grouped bar chart with error bars",
        "Balanced accuracy of every classifier at each input size on the preliminary test set (WEN weights from the "
        "test set, as the paper), with 95 % subject-bootstrap CIs: Table 4 as a chart.",
        None,
    ),
    "fig5_roc": (
        "ROC curves, one panel per input size",
        "ROC curves of the five models and the three WEN (weights from validation, leak-free) at each input size, "
        "with WEN-kappa's curve with the paper's test-set weights dotted beside them; each AUC in the legend.",
        5,
    ),
    "table6_confusion": (
        "Heat maps of confusion matrices",
        "Confusion matrices of {names} at {size} px, counts and row percentages: Table 6 as heat maps. WEN-kappa "
        "is shown with weights from validation (leak-free) and, as the paper computed it, from the test set.",
        None,
    ),
    "per_subject": (
        "Bar chart",
        "Accuracy of WEN-kappa (validation weights) on each of the {subjects} test subjects, worst first, coloured by "
        "class.",
        None,
    ),
    "reliability": (
        "Line chart",
        "Reliability diagram of p(ALL) for {names}, with each one's expected calibration error; the dotted diagonal "
        "is perfect calibration.",
        None,
    ),
    "seed_strip": (
        "Strip plots, one panel per metric",
        "Every seed's value per classifier at {size} px, with the mean and SD over seeds in black: Table 5 as a chart.",
        None,
    ),
    "fig7": (
        "Rows of cell images with heat-map overlays",
        "Hem test images that a backbone misclassifies and WEN-kappa classifies correctly: the image, the "
        "backbone's Grad-CAM and the ensemble's. Chosen by their predictions, as in the paper.",
        7,
    ),
    "fig8": (
        "Rows of cell images with heat-map overlays",
        "ALL test images that a backbone misclassifies and WEN-kappa classifies correctly: the image, the "
        "backbone's Grad-CAM and the ensemble's. Chosen by their predictions, as in the paper.",
        8,
    ),
    "fig9": (
        "Grid of cell images with heat-map overlays",
        "The first {images} ALL test images (not chosen by prediction), and every model's Grad-CAM below each; "
        "p(ALL) marked ✓ right (blue) or ✗ wrong (orange); maps in viridis, dark low to yellow high.",
        9,
    ),
    "concentration": (
        "Box plots, one panel per measure",
        "Share of Grad-CAM energy inside the cell{nucleus} and the map's normalised entropy, per model with usable "
        "maps, on {images} sampled test images.",
        None,
    ),
    "paper_against_ours": (
        "Dot plot with error bars, one panel per metric",
        "Table 4: ours (dots, 95 % subject-bootstrap CIs, WEN weights from the test set as the paper) beside the "
        "paper's values (crosses). The paper's Table 4 has no AUC.",
        None,
    ),
    "fig10": (
        "Horizontal bar chart",
        "Weighted F1-score of the methods the paper compares, as far as its text gives them, the paper's WEN-kappa "
        "(black) and ours with its 95 % CI (green; on synthetic data a hatched outline that places nothing).",
        10,
    ),
    "using_cam": (
        "Grid of cell images with heat-map overlays",
        "Grad-CAM of the ensemble and of each member, for the class the ensemble predicts, on {images} held-out "
        "images; p(ALL) marked ✓ right (blue) or ✗ wrong (orange); maps in viridis, dark low to yellow high.",
        None,
    ),
    "run_curves": ("Two line charts", "Accuracy and loss per epoch of this run, training and validation.", 6),
    "run_lr": (
        "Line chart with a logarithmic y axis",
        "The triangular2 learning rate this run trained with (Eq. 5), over {epochs} epochs.",
        3,
    ),
}


def _first_sentence(text: str) -> str:
    import re

    return re.split(r"(?<=\.)\s+(?=[A-Z])", text.strip(), maxsplit=1)[0]


def caption(name: str, **facts) -> str:
    """The book's caption of figure `name`: "Our Fig. N." where it answers the paper's Fig. N (the only
    figure numbers the book uses: Sphinx's own are off), what it shows, then what the paper's Fig. N showed
    (the first sentence of the paper's own caption). Other figures carry no number."""

    if name not in CAPTIONS:
        raise KeyError(f"no caption for figure {name!r}; known: {', '.join(CAPTIONS)}")
    _, text, number = CAPTIONS[name]
    text = text.format(**facts)
    if number is not None:
        theirs = _first_sentence(paper.figure_caption(number))
        text = f"**Our Fig. {number}.** {text} *The paper's Fig. {number}:* {theirs}"
    return text


def alt_text(fig, kind: str) -> str:
    """What a figure draws, read from the figure itself: its kind, title, each panel's title and axes,
    and the data label (so a screen reader hears SYNTHETIC too)."""
    parts = [kind + "."]
    title = fig.get_suptitle()
    if title:
        parts.append(title + ".")
    panels = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        t, x, y = ax.get_title(), ax.get_xlabel(), ax.get_ylabel()
        axes_ = ", ".join(f"{k}: {v}" for k, v in (("x", x), ("y", y)) if v)
        text = " ".join(w for w in (t.replace("\n", " "), f"({axes_})" if axes_ else "") if w)
        if text:
            panels.append(text)
    shown = list(dict.fromkeys(panels))
    if shown:
        more = f"; and {len(shown) - 8} more" if len(shown) > 8 else ""
        parts.append("Panels: " + "; ".join(shown[:8]) + more + ".")
    if any(ax.get_label() == "<colorbar>" for ax in fig.axes):
        parts.append("A colour bar gives the normalised Grad-CAM value from 0 to 1.")
    label = getattr(fig, "alllib_label", "")
    if label:
        parts.append(f"Data: {label}.")
    return " ".join(parts)


def show(fig, name: str, **facts) -> None:
    """Display a figure with its caption and alt text. In Jupyter it is the PNG; in the book the runner
    makes it a MyST figure (caption under it, alt text on the image, a target named after the figure)."""
    from io import BytesIO

    from IPython.display import Image, display

    meta = {"name": name, "caption": caption(name, **facts), "alt": alt_text(fig, CAPTIONS[name][0])}
    meta["wide"] = bool(fig.get_figwidth() > WIDE_INCHES)
    buf = BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="png"), metadata={FIGURE_META: meta})


def image_grid(images, titles, label: str, ncols: int = 6, size: float = 1.9, suptitle: str = ""):
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(t, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, y=0.98)
    fig.tight_layout()
    return stamp(fig, label)


def crop_figure(images, size: int, label: str):
    """Fig. 4: originals (with the crop window) above their centre crops."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 4.9), squeeze=False)
    for i, img in enumerate(images):
        side = img.shape[0]
        off, size = crop_box(side, size)
        axes[0, i].imshow(img)
        axes[0, i].add_patch(plt.Rectangle((off, off), size, size, fill=False, ec="yellow", lw=1.2, ls="--"))
        axes[0, i].set_title(f"({chr(97 + i)}) {side}x{side}", fontsize=9)
        axes[1, i].imshow(center_crop(img, size))
        axes[1, i].set_title(f"({chr(97 + n + i)}) {size}x{size}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return stamp(fig, label)


def class_balance(before: pd.Series, after: pd.Series, label: str):
    df = pd.DataFrame({"before oversampling": before, "after random oversampling": after}).T
    ax = df.plot.bar(rot=0, color=[CLASS_COLORS.get(c, "gray") for c in df.columns], figsize=(6, 3.4))
    for cont in ax.containers:
        ax.bar_label(cont, fontsize=10)
    ax.set_ylabel("training images per epoch")
    ax.set_title("Class balance of the training split")
    ax.figure.tight_layout()
    return stamp(ax.figure, label)


def run_phases(table: pd.DataFrame, phases: list[str], label: str):
    """Stacked bars: one per backbone and size, a segment per phase (a colour-blind-safe palette with
    a hatch per phase, so the segments differ without colour too)."""
    rows = [f"{b} {s} px" for b, s in zip(table["backbone"], table["size"])]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2.2))
    colours = plt.get_cmap("tab20").colors
    hatches = ["", "//", "..", "xx", "\\\\", "--", "++", "oo", "||", "**", "OO"]
    left = np.zeros(len(rows))
    for i, phase in enumerate(phases):
        values = table[phase].to_numpy(float)
        ax.barh(
            rows,
            values,
            left=left,
            color=colours[i % len(colours)],
            hatch=hatches[i % len(hatches)],
            edgecolor="#333333",
            linewidth=0.3,
            label=phase,
        )
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("seconds per run (mean)")
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=10, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    ax.set_title("Where a training run's time goes", fontsize=10)
    fig.tight_layout()
    return stamp(fig, label)


def learning_curves(history: pd.DataFrame, title: str, label: str, axes=None):
    """Fig. 6: accuracy and loss against epochs, training and validation."""
    own = axes is None
    if own:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, m in zip(axes, ("accuracy", "loss")):
        ax.plot(history["epoch"], history[m], "o-", label="training", ms=3)
        ax.plot(history["epoch"], history[f"val_{m}"], "s-", label="validation", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(f"{title}: {m}", fontsize=11)
    axes[0].legend(fontsize=10)
    for ax in axes:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if own:
        fig.tight_layout()
        return stamp(fig, label)


def curves_grid(runs: RunSet, label: str):
    n = len(runs)
    fig, axes = plt.subplots(n, 2, figsize=(8, 2.0 * n), squeeze=False)
    for row, r in zip(axes, runs):
        learning_curves(r.history, f"{r.display} {r.input_size}px s{r.seed}", label, axes=row)
        for ax in row:
            ax.title.set_fontsize(8)
            ax.xaxis.label.set_visible(False)
    fig.tight_layout()
    return stamp(fig, label)


def lr_trace(schedule, steps: int, steps_per_epoch: int, title: str, label: str):
    s = np.arange(steps)
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(s / steps_per_epoch, schedule(s))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return stamp(fig, label)


def roc_figure(curves: dict, title: str, label: str, ax=None):
    """Fig. 5: ROC curves of single models and ensembles, AUC in the legend."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 7.4))
    for name, (y, p) in curves.items():
        fpr, tpr, auc = metrics.roc(y, p)
        ax.plot(
            fpr,
            tpr,
            lw=2 if name.startswith("WEN") else 1.2,
            ls=":" if name == PAPER_READING else ("-" if name.startswith("WEN") else "--"),
            label=f"{name} (AUC {fmt(auc, 3)})",
        )
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate (Hem called ALL)")
    ax.set_ylabel("true positive rate (ALL found)")
    ax.set_title(title, fontsize=11)
    ax.set_aspect("equal")
    # under the panel, off the curves
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    if own:
        fig.tight_layout()
        return stamp(fig, label)


def confusion_figure(cms: dict, label: str):
    """Table 6 as heat maps: counts with row percentages."""
    fig, axes = plt.subplots(1, len(cms), figsize=(3.8 * len(cms), 3.3), squeeze=False)
    for ax, (name, cm) in zip(axes[0], cms.items()):
        pct = metrics.confusion_percent(cm)
        annot = metrics.confusion_cells(cm, sep="\n")
        sns.heatmap(pct, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=100, cbar=False, ax=ax)
        ax.set_title(name, fontsize=10)
    fig.tight_layout()
    return stamp(fig, label)


def reliability_figure(tables: dict, label: str):
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=0.8)
    for name, (ece, t) in tables.items():
        ax.plot(t["mean_predicted"], t["fraction_all"], "o-", label=f"{name} (ECE {fmt(ece, 3)})")
    ax.set_xlabel("mean predicted p(ALL)")
    ax.set_ylabel("observed fraction ALL")
    ax.set_title("Reliability diagram (preliminary test)", fontsize=10)
    ax.legend(fontsize=10)
    fig.tight_layout()
    return stamp(fig, label)


def metric_bars(frame: pd.DataFrame, metric: str, label: str, hue: str = "input", title: str = ""):
    """Point estimates with their bootstrap CIs (columns metric, metric_lo, metric_hi)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    groups = list(frame[hue].unique())
    names = list(dict.fromkeys(frame["classifier"]))
    width = 0.8 / len(groups)
    for i, g in enumerate(groups):
        d = frame[frame[hue] == g].set_index("classifier").reindex(names)
        x = np.arange(len(names)) + (i - (len(groups) - 1) / 2) * width
        ax.bar(x, d[metric], width, label=str(g), alpha=0.8)
        ax.errorbar(
            x,
            d[metric],
            yerr=[d[metric] - d[f"{metric}_lo"], d[f"{metric}_hi"] - d[metric]],
            fmt="none",
            ecolor="black",
            capsize=2,
            lw=0.8,
        )
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=10)
    low = max(0, np.nanmin(frame[f"{metric}_lo"]) - 0.05)
    ax.set_ylim(low, min(1, np.nanmax(frame[f"{metric}_hi"]) + 0.03))
    ax.set_ylabel(metric + (f" (axis starts at {fmt(low, 2)})" if low > 0 else ""))
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or f"{metric} on the preliminary test set, 95% subject-bootstrap CIs", fontsize=10)
    fig.tight_layout()
    return stamp(fig, label)


def gradcam_rows(rows: list[dict], label: str, title: str):
    """Figs. 7-9: one row per case: image, the single model's map, the ensemble's map.
    rows: dicts with image, single (map), ensemble (map), backbone, true, p_single, p_ensemble, or a note
    saying that no such case exists for that backbone (a short row)."""
    heights = [0.35 if r.get("note") else 1.0 for r in rows] or [0.35]
    fig, axes = plt.subplots(
        len(heights), 3, figsize=(7.2, 2.5 * sum(heights) + 0.6), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax in axes.flat:
        ax.axis("off")
    if not rows:
        axes[0, 1].text(0.5, 0.5, "no case found", ha="center", va="center")
    for ax_row, r in zip(axes, rows):
        if r.get("note"):
            ax_row[1].text(  # the name and its note together, centred on the row: nothing overprints
                0.5,
                0.5,
                f"{r['backbone']}: {r['note']}",
                ha="center",
                va="center",
                fontsize=10,
                wrap=True,
                transform=ax_row[1].transAxes,
            )
            continue
        ax_row[0].imshow(r["image"])
        ax_row[0].set_title(f"{r['backbone']}\ntrue {r['true']}", fontsize=10)
        for ax, key, name, p in (
            (ax_row[1], "single", r["backbone"], r["p_single"]),
            (ax_row[2], "ensemble", "WEN-kappa", r["p_ensemble"]),
        ):
            ax.imshow(r["image"])
            ax.imshow(r[key], cmap=MAP_COLOURS, alpha=0.45, vmin=0, vmax=1)
            pred = "ALL" if metrics.predict_labels(p) else "Hem"
            ax.set_title(
                f"{name}\n{verdict_mark(pred == r['true'])} {pred}, p(ALL)={fmt(p, 2)}",
                fontsize=10,
                color=verdict_colour(pred == r["true"]),
            )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _map_colourbar(fig, axes)
    return stamp(fig, label)


def concentration_figure(frame: pd.DataFrame, label: str):
    measures = [c for c in ("energy_in_cell", "energy_in_nucleus", "entropy") if c in frame]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.8), squeeze=False)
    for ax, m in zip(axes[0], measures):
        sns.boxplot(
            data=frame.dropna(subset=[m]),
            x="model",
            y=m,
            ax=ax,
            fliersize=1.5,
            order=[n for n in dict.fromkeys(frame["model"]) if frame.loc[frame["model"] == n, m].notna().any()],
        )
        ax.tick_params(axis="x", rotation=40, labelsize=10)
        ax.set_xlabel("")
    fig.suptitle("Grad-CAM concentration on the sampled test images (models with usable maps)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # room above for the title and the data label
    return stamp(fig, label)


def gradcam_grid(images, maps: dict, probs: dict, true: list[str], label: str, title: str = ""):
    """Fig. 9: one column per image; the image on top, then one row per model's map (row label:
    the model; each panel's title: p(ALL), marked right or wrong in words and colour)."""
    rows = list(maps)
    n = max(len(images), 1)
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(2.3 * n + 1.2, 2.1 * (len(rows) + 1)), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_ylabel("image", fontsize=9)
    for r, name in enumerate(rows, start=1):
        axes[r, 0].set_ylabel(name, fontsize=9)
    for i in range(len(images)):
        axes[0, i].imshow(images[i])
        axes[0, i].set_title(f"true {true[i]}", fontsize=9)
        for r, name in enumerate(rows, start=1):
            p = probs[name][i]
            axes[r, i].imshow(images[i])
            axes[r, i].imshow(maps[name][i], cmap=MAP_COLOURS, alpha=0.45, vmin=0, vmax=1)
            right = bool(metrics.predict_labels(p)) == (true[i] == CLASS_NAMES["all"])
            axes[r, i].set_title(f"{verdict_mark(right)} p(ALL)={fmt(p, 2)}", fontsize=10, color=verdict_colour(right))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _map_colourbar(fig, axes)
    return stamp(fig, label)


def _map_colourbar(fig, axes):
    """One colourbar for every Grad-CAM overlay of a figure (maps are normalised to [0, 1])."""
    import matplotlib as mpl

    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=MAP_COLOURS)
    fig.colorbar(sm, ax=np.ravel(axes).tolist(), shrink=0.5, pad=0.02, label="Grad-CAM (normalised)")


def per_subject_accuracy(ps: pd.DataFrame, label: str, name: str = "WEN-kappa"):
    """Accuracy per test subject, worst first, coloured by class."""
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.bar(
        ps["subject"] + " (" + ps["label"].map(CLASS_NAMES) + ")",
        ps["accuracy"],
        color=[CLASS_COLORS[lab] for lab in ps["label"]],
    )
    ax.tick_params(axis="x", rotation=90, labelsize=9)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{name} accuracy per test subject", fontsize=10)
    fig.tight_layout()
    return stamp(fig, label)


def batchnorm_bars(bn: pd.DataFrame, label: str):
    """Validation accuracy with the running and the re-estimated BatchNorm statistics, per backbone."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bn.groupby("backbone")[["val acc, running BN", "val acc, re-estimated BN"]].mean().plot.bar(ax=ax, rot=20)
    ax.set_ylabel("validation accuracy (best epoch)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return stamp(fig, label)


def validation_strip(table: pd.DataFrame, label: str):
    """Validation accuracy of every run by backbone, coloured by input size."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.stripplot(data=table, x="backbone", y="val_accuracy", hue="input_size", dodge=True, ax=ax, size=6)
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return stamp(fig, label)


def image_statistics(feats: pd.DataFrame, label: str):
    """Histograms of cell size (share of non-black pixels) and mean intensity, per class."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for lab, g in feats.groupby("label"):
        axes[0].hist(g["foreground"], bins=30, alpha=0.6, label=CLASS_NAMES[lab], color=CLASS_COLORS[lab])
        axes[1].hist(g["mean_intensity"], bins=30, alpha=0.6, color=CLASS_COLORS[lab])
    axes[0].set_xlabel("share of non-black pixels (cell size)")
    axes[1].set_xlabel("mean image intensity")
    axes[0].legend()
    fig.tight_layout()
    return stamp(fig, label)


def stain_by_subject(feats: pd.DataFrame, label: str, largest: int = 12):
    """Mean cell colour per subject (left) and per image for the largest subjects (right)."""
    train = feats[feats["split"] == "train_folds"]
    per_subj = train.groupby(["subject", "label"])[["r", "g", "b"]].mean().reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for lab, g in per_subj.groupby("label"):
        axes[0].scatter(g["r"], g["b"], label=f"{CLASS_NAMES[lab]} subjects", color=CLASS_COLORS[lab], s=18)
    axes[0].set_xlabel("mean red of cell pixels")
    axes[0].set_ylabel("mean blue of cell pixels")
    axes[0].legend(fontsize=10)
    top = train["subject"].value_counts().head(largest).index
    d = feats[feats["subject"].isin(top)]
    sns.boxplot(data=d, x="subject", y="r", hue="label", palette=CLASS_COLORS, ax=axes[1], fliersize=1)
    axes[1].tick_params(axis="x", rotation=60, labelsize=9)
    axes[1].set_ylabel("mean red per image")
    axes[1].set_title(f"the {largest} largest subjects", fontsize=9)
    fig.tight_layout()
    return stamp(fig, label)


def seed_strip(per_seed: pd.DataFrame, metrics_: tuple, label: str):
    """Every seed's value per classifier, with mean and SD, one panel per metric (Table 5)."""
    fig, axes = plt.subplots(1, len(metrics_), figsize=(4.4 * len(metrics_), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics_):
        sns.stripplot(data=per_seed, x="classifier", y=m, hue="kind", ax=ax, size=6)
        sns.pointplot(
            data=per_seed, x="classifier", y=m, ax=ax, color="black", errorbar="sd", markers="_", linestyles="none"
        )
        ax.tick_params(axis="x", rotation=45, labelsize=9)
        ax.set_xlabel("")
    fig.tight_layout()
    return stamp(fig, label)


def run_lr_epochs(run: Run) -> int:
    """Epochs the learning-rate trace shows: the run's, and at least two cycles (4 step sizes)."""
    return max(run.epochs_run, 4 * run.training.clr_step_epochs)


def run_lr_trace(run: Run, label: str):
    """The triangular2 schedule one run trained with, over at least two cycles."""

    tr, steps = run.training, run.steps_per_epoch
    shown = run_lr_epochs(run)

    def sched(s):
        return triangular2(s, tr.clr_base_lr, tr.clr_max_lr, tr.clr_step_epochs * steps)

    return lr_trace(sched, shown * steps, steps, f"triangular2 over {shown} epochs (this run: {run.epochs_run})", label)


PAPER_READING = "WEN-kappa, test weights (as the paper)"


def roc_panels(clf_by_size: dict, label: str, paper_by_size: dict | None = None, names=None):
    """Fig. 5: one ROC panel per input size, the single models and the three WEN with weights from
    validation (`clf_by_size`, leak-free); beside them, dotted and labelled, WEN-kappa with the weights
    the paper measured on the test set (`paper_by_size`)."""

    names = names or DISPLAY_ORDER + ["WEN-auc", "WEN-f1", "WEN-kappa"]
    sizes = list(clf_by_size)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 8.0), squeeze=False)
    for i, (ax, size) in enumerate(zip(axes[0], sizes)):
        curves = {
            (f"{n}, validation weights" if n.startswith("WEN") else n): (p.y, p.p_all)
            for n, p in clf_by_size[size].items()
            if n in names
        }
        if paper_by_size is not None:
            p = paper_by_size[size]["WEN-kappa"]
            curves[PAPER_READING] = (p.y, p.p_all)
        roc_figure(curves, f"({'abcdef'[i]}) {size} x {size} px", label, ax=ax)
    fig.tight_layout()
    return stamp(fig, label)


def paper_against_ours(ens, label: str, metrics_=("WFS", "BA", "AUC")):
    """Ours (Table 4 as the paper computes it: WEN weights from the test set, 95 % subject-bootstrap
    CIs) beside the paper's values, one panel per metric, one row per classifier and input size.
    The paper's Table 4 has no AUC column, so that panel shows ours alone."""

    ref = paper.table("table4_prelim_test").set_index(["input_px", "classifier"])
    names = DISPLAY_ORDER + ["WEN-auc", "WEN-f1", "WEN-kappa"]
    rows = [(size, n) for size in sorted(ens.sizes, reverse=True) for n in names if n in ens.sizes[size].paper_faithful]
    fig, axes = plt.subplots(
        1, len(metrics_), figsize=(4.0 * len(metrics_), 0.32 * len(rows) + 1.6), sharey=True, squeeze=False
    )
    y = np.arange(len(rows))[::-1]
    for ax, m in zip(axes[0], metrics_):
        est = np.array([ens.sizes[s].paper_faithful[n][m].est for s, n in rows])
        lo = np.array([ens.sizes[s].paper_faithful[n][m].lo for s, n in rows])
        hi = np.array([ens.sizes[s].paper_faithful[n][m].hi for s, n in rows])
        ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="#1b7837", ms=4, capsize=2, label="ours, 95 % CI")
        if m in ref:
            theirs = np.array([ref[m].get((s, n), np.nan) for s, n in rows])
            ax.plot(theirs, y, "x", color="black", ms=6, label="paper")
        ax.set_title(m, fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(axis="x", alpha=0.3)
        watermark(ax, label)
    axes[0, 0].set_yticks(y, [f"{n} · {s} px" for s, n in rows], fontsize=10)
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(),
        fontsize=10,
        loc="lower center",
        ncol=2,
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
    )  # under the panels, off the data
    fig.suptitle("Table 4: ours beside the paper (WEN weights from the test set, as the paper)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return stamp(fig, label)


def fig10_bars(frame: pd.DataFrame, label: str):
    """Fig. 10: weighted F1 (%) per method, the published ones from the paper's text (grey; hatched
    where only Table 2's F1 is given), the paper's WEN-kappa (black) and ours with its CI (green)."""
    t = frame[frame["wfs"].notna()].iloc[::-1]
    left_out = list(frame.loc[frame["wfs"].isna(), "label"])
    synthetic = "SYNTHETIC" in label
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(t) + 1.6))
    y = np.arange(len(t))
    ours_color = "#ffffff" if synthetic else "#1b7837"  # on synthetic data ours is an outline: it places nothing
    colors = [
        ours_color if o else "#222222" if lab.startswith("Mondal") else "#999999" for o, lab in zip(t.ours, t.label)
    ]
    hatches = ["//" if kind == "table2" else "xx" if (o and synthetic) else "" for kind, o in zip(t["kind"], t.ours)]
    bars = ax.barh(y, t["wfs"], color=colors, height=0.7)
    for bar, h in zip(bars, hatches):
        bar.set_hatch(h)
        bar.set_edgecolor("#8b0000" if h == "xx" else "white" if h else bar.get_facecolor())
    ours = t["ours"].to_numpy()
    if synthetic:
        ends = t[["wfs", "hi"]].max(axis=1)[ours]  # the bar's end, or its CI's
        for yy, hi in zip(y[ours], ends):  # beside the bar, inside the axes
            ax.text(hi + 1.5, yy, "synthetic: places nothing", va="center", ha="left", fontsize=10, color="#8b0000")
        watermark(ax, label)
    ax.errorbar(
        t["wfs"][ours],
        y[ours],
        xerr=[t["wfs"][ours] - t["lo"][ours], t["hi"][ours] - t["wfs"][ours]],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.set_yticks(y, t["label"], fontsize=10)
    low = max(0, np.floor(np.nanmin(t[["wfs", "lo"]].to_numpy()) / 5) * 5 - 5)
    ax.set_xlim(low, 100)
    xlabel = f"weighted F1-score, % (the axis starts at {fmt(low, 0)}, not at 0)"
    if left_out:
        xlabel += f"\nnot drawn, the paper's text gives no number: {', '.join(left_out)}"
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_title("WFS on the preliminary test set (hatched //: Table 2's F1, not given as WFS)", fontsize=11)
    fig.tight_layout()
    return stamp(fig, label)
