"""The model card of the ensemble that `predict` applies, in the sections of Mitchell
et al. 2019 (*Model Cards for Model Reporting*): model details, intended use, factors, metrics,
per-class and per-subject performance, data, ethical considerations, caveats. Every number is
computed from the study's runs, and the metrics with their intervals are the ensemble chapter's
(its typed summary); nothing is typed in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alllib import CLASS_NAMES
from alllib.errors import StudyError
from alllib.method.ensemble import ensemble_predictions
from alllib.method.metrics import HEADLINE, THRESHOLD, evaluate
from alllib.method.preprocessing import input_pixels, split_summary, subject_split
from alllib.provenance import git_commit
from alllib.results.stats import per_subject_accuracy
from alllib.rounding import fmt
from alllib.use.predict import FINAL_CROP_NOTE, load_ensemble

if TYPE_CHECKING:  # names used in annotations only
    from alllib.results.summaries import EnsembleSummary
    from alllib.study.runs import RunSet


def _pct(x: float) -> str:
    return f"{fmt(100 * x, 1)} %"


def model_card_markdown(study, summary: EnsembleSummary, runs: RunSet | None = None) -> str:
    """The card as Markdown (the book's page includes it): the ensemble `predict` applies, its metrics
    and intervals from the ensemble chapter's `summary`. `runs`: the study's runs, if already loaded."""
    runs = runs if runs is not None else study.runs()
    ens = load_ensemble(study, runs=runs)
    test, _ = ensemble_predictions(runs.at(ens.size, ens.seed), ens.method, ens.source)
    parts = [
        _synthetic_warning(study),
        _details(study, ens),
        INTENDED_USE,
        FACTORS,
        _metrics(summary, ens, test),
        _per_class_and_subject(test),
        _data(study, ens),
        ETHICS,
        _caveats(study, test),
    ]
    return "\n".join(line for part in parts for line in part) + "\n"


def _synthetic_warning(study) -> list[str]:
    if not study.synthetic:
        return []
    return [
        "**These models were trained on synthetic images and mean nothing clinically.** They exist to run "
        "and check the study's code; with the real C-NMC-2019 data (`DATA_DIR=...`) this card describes "
        "real models.",
        "",
    ]


def _details(study, ens) -> list[str]:
    cfg = study.cfg
    seen = "the 450 px image" if ens.size == 450 else "its 300 px centre crop"
    weights = ", ".join(f"{mm.backbone} {fmt(mm.weight, 3)}" for mm in ens.members)
    init = "ImageNet weights" if cfg.weights == "imagenet" else f"`{cfg.weights}` (no ImageNet weights)"
    return [
        "## Model details",
        "",
        f"- **What:** a weighted ensemble of networks (Mondal et al. 2021, Eq. 1): {ens.weights_source}. "
        f"Members and weights (Cohen's kappa of each on validation for WEN-kappa): {weights}.",
        f"- **Input:** one RGB image of one segmented cell, {seen} at input scale {cfg.input_scale} "
        f"({input_pixels(ens.size, cfg.input_scale)} px tensors); {FINAL_CROP_NOTE}.",
        f"- **Output:** p(ALL); label ALL when p(ALL) >= {THRESHOLD}, else Hem.",
        f"- **Training:** profile `{cfg.name}` ({cfg.description}); initialisation {init}; Adamax with a "
        f"triangular2 cyclic learning rate, early stopping on validation loss (Section 4.2 of the paper; the "
        "method notes list every departure).",
        f"- **Input size chosen on validation:** the ensemble at {ens.size} px had the higher balanced accuracy "
        "on the validation subjects.",
        f"- **Code:** alllib at commit `{git_commit()}`. Use: `python -m alllib predict IMAGES --study "
        f"results/{cfg.name} --out predictions.csv`; export: `python -m alllib export`.",
        "",
    ]


INTENDED_USE = [
    "## Intended use",
    "",
    "- **For research only:** studying and reproducing ensembles of CNNs on C-NMC-2019 single-cell images.",
    "- **Not a medical device. Not for diagnosis**, screening or any decision about a patient.",
    "- Out of scope: images from other stains, microscopes, magnifications or segmentations than C-NMC-2019's; "
    "whole smears; any cell type other than B-lymphoblasts and normal B cells.",
    "",
]

FACTORS = [
    "## Factors",
    "",
    "- **Subjects.** Images of one person are alike (stain, illumination, morphology), so every estimate "
    "below treats the subject, not the image, as the unit (subject-bootstrap intervals).",
    "- **Class.** ALL and Hem are imbalanced; the training set is balanced by random oversampling.",
    "- **Acquisition.** Stain and illumination differ between subjects; segmentation leaves fragments of "
    "background in some images (the data chapter measures both).",
    "",
]


def _metrics(summary: EnsembleSummary, ens, test) -> list[str]:
    """The headline metrics with their subject-bootstrap intervals, as the ensemble chapter computed
    them for this ensemble (WEN-kappa, validation weights, at its size and seed)."""
    held = summary.sizes.get(ens.size)
    if (ens.method, ens.source, ens.seed) != ("wen-kappa", "validation", summary.seed) or held is None:
        raise StudyError(
            f"the ensemble chapter's summary holds WEN-kappa with validation weights at seed {summary.seed} and "
            f"sizes {sorted(summary.sizes)}; the model card describes {ens.weights_source}: execute the ensemble "
            "chapter for it (make book CHAPTER=03_ensemble_ablation)"
        )
    cis = held.leak_free["WEN-kappa"]
    lines = [
        "## Metrics",
        "",
        f"On the {len(test)} preliminary-test images ({test['subject'].nunique()} subjects the models never saw), "
        f"with 95 % subject-bootstrap intervals (the ensemble chapter's, {summary.bootstrap} resamples of subjects):",
        "",
        "| metric | value | 95 % CI |",
        "|---|---|---|",
    ]
    for name in HEADLINE:
        e = cis[name]
        lines.append(f"| {name} | {fmt(e.est, 3)} | {fmt(e.lo, 3)} to {fmt(e.hi, 3)} |")
    return lines


def _per_class_and_subject(test) -> list[str]:
    m = evaluate(test["y"].to_numpy(int), test["p_all"].to_numpy())
    subjects = per_subject_accuracy(test)
    worst = subjects.iloc[0]
    below = int((subjects["accuracy"] < 0.5).sum())
    lines = [
        "",
        "## Per-class and per-subject performance",
        "",
        "| class | images | recall | precision | F1 |",
        "|---|---|---|---|---|",
        *[
            f"| {CLASS_NAMES[c]} | {m['n_' + c]} | {fmt(m['recall_' + c], 3)} | {fmt(m['precision_' + c], 3)} "
            f"| {fmt(m['f1_' + c], 3)} |"
            for c in ("all", "hem")
        ],
        "",
        f"Per subject, accuracy ranges from {_pct(subjects['accuracy'].min())} to {_pct(subjects['accuracy'].max())} "
        f"(median {_pct(subjects['accuracy'].median())}); {below} of {len(subjects)} subjects are classified "
        f"correctly in fewer than half of their images. The worst is subject {worst['subject']} "
        f"({CLASS_NAMES[worst['label']]}, {int(worst['images'])} images, accuracy {_pct(worst['accuracy'])}).",
        "",
        "| subject | class | images | accuracy |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.subject} | {CLASS_NAMES[r.label]} | {r.images} | {fmt(r.accuracy, 3)} |"
        for r in subjects.head(5).itertuples(index=False)
    ]
    return lines


def _data(study, ens) -> list[str]:
    data = (
        "SYNTHETIC C-NMC-like images (`alllib.study.synthetic`)" if study.synthetic else "C-NMC-2019 (TCIA, CC BY 3.0)"
    )
    split = split_summary(subject_split(study.table, study.split_seed(ens.seed)))
    return [
        "",
        "(the five subjects with the lowest accuracy)",
        "",
        "## Training and evaluation data",
        "",
        f"- **Data:** {data}; data fingerprint `{study.data_info['fingerprint']}` ({len(study.table)} images).",
        f"- **Split:** the training folds' subjects split into training and validation subjects (seed "
        f"{study.split_seed(ens.seed)}); the labelled preliminary test set, with subjects of its own, is the test set:",
        "",
        split.to_markdown(index=False),
        "",
        "- Weights, the input size and early stopping used the validation subjects; the test set was used for "
        "nothing but the numbers above.",
        "",
    ]


ETHICS = [
    "## Ethical considerations",
    "",
    "- The real data are de-identified images of patients published for research (TCIA, CC BY 3.0); use them "
    "under that licence and cite the data set.",
    "- A classifier of single cells is not a diagnosis: ALL is diagnosed by clinicians from many tests. A "
    "confident wrong answer could mislead if the model were used outside research.",
    "- C-NMC-2019 comes from one challenge data set; how the models fare on other laboratories' samples, "
    "stains and patients is unknown.",
    "",
]


def _caveats(study, test) -> list[str]:
    lines = [
        "## Caveats and recommendations",
        "",
        f"- Confidence intervals count {test['subject'].nunique()} test subjects; per-image counts overstate the "
        "evidence.",
        f"- The threshold is {THRESHOLD}; the paper names none (the method notes), and it was not tuned.",
    ]
    if study.cfg.weights != "imagenet":
        lines.append(
            "- These models start from random weights (no ImageNet weights offline); their BatchNorm statistics "
            "were re-estimated where the profile says so (see the fine-tuning chapter)."
        )
    if study.synthetic:
        lines.append("- Trained on synthetic images: nothing here says anything about leukaemia.")
    return lines
