"""The model card of the ensemble that `predict` applies, in the sections of Mitchell
et al. 2019 (*Model Cards for Model Reporting*): model details, intended use, factors, metrics,
per-class and per-subject performance, data, ethical considerations, caveats. Every number is
computed here from the study's runs; nothing is typed in."""

from __future__ import annotations

from alllib import CLASS_NAMES


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def model_card_markdown(study, n_boot: int | None = None, runs: list[dict] | None = None) -> str:
    """The card as Markdown (the book's page includes it). `runs`: the study's runs, if already loaded."""
    from alllib.method.ensemble import ensemble_predictions
    from alllib.method.metrics import HEADLINE, evaluate
    from alllib.method.preprocessing import input_pixels, split_summary, subject_split
    from alllib.provenance import git_commit
    from alllib.results.analysis import runs_at
    from alllib.results.stats import metric_cis, per_subject_accuracy
    from alllib.use.predict import FINAL_CROP_NOTE, load_ensemble

    cfg = study.cfg
    runs = runs if runs is not None else study.runs()
    ens = load_ensemble(study, runs=runs)
    preds = runs_at(runs, ens.size, ens.seed)
    test, _ = ensemble_predictions(preds, ens.method, ens.source)
    n_boot = n_boot or cfg.stats.bootstrap
    cis = metric_cis(test, n=n_boot)
    m = evaluate(test["y"].to_numpy(int), test["p_all"].to_numpy())
    subjects = per_subject_accuracy(test)
    split = split_summary(subject_split(study.table, study.split_seed(ens.seed)))
    lines = []
    if study.synthetic:
        lines += [
            "**These models were trained on synthetic images and mean nothing clinically.** They exist to run "
            "and check the study's code; with the real C-NMC-2019 data (`DATA_DIR=...`) this card describes "
            "real models.",
            "",
        ]
    seen = "the 450 px image" if ens.size == 450 else "its 300 px centre crop"
    weights = ", ".join(f"{mm.backbone} {mm.weight:.3f}" for mm in ens.members)
    init = "ImageNet weights" if cfg.weights == "imagenet" else f"`{cfg.weights}` (no ImageNet weights)"
    lines += [
        "## Model details",
        "",
        f"- **What:** a weighted ensemble of networks (Mondal et al. 2021, Eq. 1): {ens.weights_source}. "
        f"Members and weights (Cohen's kappa of each on validation for WEN-kappa): {weights}.",
        f"- **Input:** one RGB image of one segmented cell, {seen} at input scale {cfg.input_scale} "
        f"({input_pixels(ens.size, cfg.input_scale)} px tensors); {FINAL_CROP_NOTE}.",
        "- **Output:** p(ALL); label ALL when p(ALL) >= 0.5, else Hem.",
        f"- **Training:** profile `{cfg.name}` ({cfg.description}); initialisation {init}; Adamax with a "
        f"triangular2 cyclic learning rate, early stopping on validation loss (Section 4.2 of the paper; the "
        "method notes list every departure).",
        f"- **Input size chosen on validation:** the ensemble at {ens.size} px had the higher balanced accuracy "
        "on the validation subjects.",
        f"- **Code:** alllib at commit `{git_commit()}`. Use: `python -m alllib predict IMAGES --study "
        f"results/{cfg.name} --out predictions.csv`; export: `python -m alllib export`.",
        "",
        "## Intended use",
        "",
        "- **For research only:** studying and reproducing ensembles of CNNs on C-NMC-2019 single-cell images.",
        "- **Not a medical device. Not for diagnosis**, screening or any decision about a patient.",
        "- Out of scope: images from other stains, microscopes, magnifications or segmentations than C-NMC-2019's; "
        "whole smears; any cell type other than B-lymphoblasts and normal B cells.",
        "",
        "## Factors",
        "",
        "- **Subjects.** Images of one person are alike (stain, illumination, morphology), so every estimate "
        "below treats the subject, not the image, as the unit (subject-bootstrap intervals).",
        "- **Class.** ALL and Hem are imbalanced; the training set is balanced by random oversampling.",
        "- **Acquisition.** Stain and illumination differ between subjects; segmentation leaves fragments of "
        "background in some images (the data chapter measures both).",
        "",
        "## Metrics",
        "",
        f"On the {m['n']} preliminary-test images ({test['subject'].nunique()} subjects the models never saw), "
        f"with 95 % subject-bootstrap intervals ({n_boot} resamples of subjects):",
        "",
        "| metric | value | 95 % CI |",
        "|---|---|---|",
    ]
    for name in HEADLINE:
        point, lo, hi = cis[name]
        lines.append(f"| {name} | {point:.3f} | {lo:.3f} to {hi:.3f} |")
    worst = subjects.iloc[0]
    below = int((subjects["accuracy"] < 0.5).sum())
    lines += [
        "",
        "## Per-class and per-subject performance",
        "",
        "| class | images | recall | precision | F1 |",
        "|---|---|---|---|---|",
        *[
            f"| {CLASS_NAMES[c]} | {m['n_' + c]} | {m['recall_' + c]:.3f} | {m['precision_' + c]:.3f} "
            f"| {m['f1_' + c]:.3f} |"
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
    for r in subjects.head(5).itertuples(index=False):
        lines.append(f"| {r.subject} | {CLASS_NAMES[r.label]} | {r.images} | {r.accuracy:.3f} |")
    data = (
        "SYNTHETIC C-NMC-like images (`alllib.study.synthetic`)" if study.synthetic else "C-NMC-2019 (TCIA, CC BY 3.0)"
    )
    lines += [
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
        "## Ethical considerations",
        "",
        "- The real data are de-identified images of patients published for research (TCIA, CC BY 3.0); use them "
        "under that licence and cite the data set.",
        "- A classifier of single cells is not a diagnosis: ALL is diagnosed by clinicians from many tests. A "
        "confident wrong answer could mislead if the model were used outside research.",
        "- C-NMC-2019 comes from one challenge data set; how the models fare on other laboratories' samples, "
        "stains and patients is unknown.",
        "",
        "## Caveats and recommendations",
        "",
        f"- Confidence intervals count {test['subject'].nunique()} test subjects; per-image counts overstate the "
        "evidence.",
        "- The threshold is 0.5, as in the paper; it was not tuned.",
    ]
    if cfg.weights != "imagenet":
        lines.append(
            "- These models start from random weights (no ImageNet weights offline); their BatchNorm statistics "
            "were re-estimated where the profile says so (see the fine-tuning chapter)."
        )
    if study.synthetic:
        lines.append("- Trained on synthetic images: nothing here says anything about leukaemia.")
    return "\n".join(lines) + "\n"
