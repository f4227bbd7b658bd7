"""Sentences of the book, generated from the typed summaries and tables the library produced:
nothing here reads a notebook's variables, and every number is computed."""

from __future__ import annotations

import re
import statistics
from typing import TYPE_CHECKING

from alllib.method import metrics
from alllib.method.models import DISPLAY_ORDER, get_backbone, initialisation
from alllib.results import paper
from alllib.results.stats import CI_LEVEL, p_text
from alllib.rounding import fmt, pct, rounded

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.profile import Profile
    from alllib.study.runs import Run, RunSet

ALPHA = 0.05
CI = f"{fmt(100 * CI_LEVEL, 0)} %"  # the level of every interval, as sentences write it
LEVEL = f"{fmt(100 * ALPHA, 0)} %"  # the significance level, as sentences write it


def _ci(e) -> str:
    return f"{fmt(e.est, 3)} [{fmt(e.lo, 3)}, {fmt(e.hi, 3)}]"


def comparison_sentence(size: int, s, n_tests: int) -> str:
    """The ensemble against the best single model on validation, the subject as the unit; its two
    tests belong to the headline's family of `n_tests` (BA and AUC at every input size)."""
    c, t = s.comparison, s.leak_free
    best = s.best_single
    d_ba, d_auc = c.dBA.est * 100, c.dAUC.est * 100
    sig_ba, sig_auc = c.p_BA_holm < ALPHA, c.p_AUC_holm < ALPHA
    return (
        f"**{size} px:** the best single model on validation was **{best}** (test BA {_ci(t[best]['BA'])}, "
        f"AUC {_ci(t[best]['AUC'])}). WEN-kappa with leak-free (validation) weights reached BA "
        f"{_ci(t['WEN-kappa']['BA'])} and AUC {_ci(t['WEN-kappa']['AUC'])}: {by(d_ba)} in BA ({CI} CI "
        f"{fmt(c.dBA.lo * 100, 1, sign=True)} to {fmt(c.dBA.hi * 100, 1, sign=True)}) and {by(d_auc)} in AUC "
        f"({fmt(c.dAUC.lo * 100, 1, sign=True)} to "
        f"{fmt(c.dAUC.hi * 100, 1, sign=True)}). With the subject as the unit ({c.subjects} test subjects, "
        f"{c.images} images; "
        f"subject sign-flip permutation test, Holm-adjusted over the {n_tests} tests of this claim: BA and AUC at "
        f"each input size) the BA difference is "
        f"{'' if sig_ba else 'not '}significant at the {LEVEL} level (p = {p_text(c.p_BA_holm)}) and the AUC "
        f"difference {'is' if sig_auc else 'is not'} (p = {p_text(c.p_AUC_holm)}). Treating the images as "
        f"independent would give "
        f"McNemar p = {p_text(c.p_McNemar_per_image)} and DeLong p = {p_text(c.p_DeLong_per_image)}; "
        + (
            "those per-image tests overstate the evidence here and are not used for any claim."
            if c.p_McNemar_per_image < c.p_BA_permutation or c.p_DeLong_per_image < c.p_AUC_permutation
            else "those per-image tests treat images as independent and are not used for any claim."
        )
    )


def by(d: float, digits: int = 1, up: str = "higher", down: str = "lower", unit: str = "points") -> str:
    """A difference in points as words: '3.1 points higher', '0.4 points lower', or 'equal' when it
    rounds to zero at `digits`."""
    if round(abs(d), digits) == 0:
        return "equal"
    return f"{abs(d):.{digits}f} {unit} {up if d > 0 else down}"


def counted(n: int, noun: str) -> str:
    """'1 seed', '5 seeds', '0 seeds': a count with its noun in the number it takes."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def weight_gap_sentence(gap_pp: float, size: int) -> str:
    """What measuring WEN-kappa's weights on the test labels, as the paper does, changes in its test BA
    (`gap_pp`: BA with test weights minus BA with validation weights, in points)."""
    digits = 2
    change = by(gap_pp, digits)
    if abs(gap_pp) < 1e-9:
        what = "leaves WEN-kappa's BA unchanged"
    elif change == "equal":
        what = f"changes WEN-kappa's BA by less than {fmt(10.0**-digits, digits)} points"
    else:
        what = f"makes WEN-kappa's BA {change}"
    return f"Measuring the weights on the test labels, as the paper does, {what} at {size} px."


SUMMARY_SECTIONS = (
    "The answer",
    "The ensemble against its baselines",
    "The crop against the full image",
    "Variance over seeds",
    "Grad-CAM",
    "Calibration",
)


def summary_sections(ens, var, cam, study) -> dict[str, str]:
    """The results summary, one section per finding (SUMMARY_SECTIONS), each from a typed summary; a
    section the build has nothing for says why."""
    answer = [
        f"**Test set:** {ens.test_images} preliminary-test images of "
        f"{ens.test_subjects} subjects (data fingerprint `{study.data_info['fingerprint']}`), seed {ens.seed}; "
        "every p-value below takes the subject as its unit and is Holm-adjusted within its family of tests. The "
        f"{CI} intervals are each comparison's own and are not adjusted, so an interval can exclude zero where the "
        f"adjusted p is above {LEVEL}."
    ]
    for size in sorted(ens.sizes, reverse=True):
        s = ens.sizes[size]
        answer.append(comparison_sentence(size, s, 2 * len(ens.sizes)))
        gap = s.weight_gap_BA_pp.get("WEN-kappa")
        if gap is not None:
            answer.append(weight_gap_sentence(gap, size))
    t5 = {r["classifier"]: r for r in var.table}
    trained = counted(len(var.seeds), "seed")
    seeds = f"The variance chapter trained {trained} at {var.size} px, so there is no spread to give."
    if "WEN-kappa" in t5 and t5["WEN-kappa"]["runs"] > 1:
        r = t5["WEN-kappa"]
        singles = {k: v for k, v in t5.items() if v["kind"] == "single"}
        best = max(singles, key=lambda k: singles[k]["A_BA"]) if singles else None
        seeds = (
            f"**Over {r['runs']} seeds** at {var.size} px ({var.split} subject split, WEN weights from the "
            f"{var.weights_from} split) WEN-kappa averaged BA {fmt(r['A_BA'], 3)} (SD {fmt(r['SD_BA_pp'], 2)} points, "
            f"variance {fmt(r['V_BA'], 2)} %², as the paper's V_), WFS {fmt(r['A_WFS'], 3)}, ACC {fmt(r['A_ACC'], 3)}."
        )
        if best is not None:
            b = singles[best]
            seeds += (
                f" The single backbone with the highest mean test BA, {best} (picked on test, which favours it), "
                f"averaged BA {fmt(b['A_BA'], 3)}: over the seeds the ensemble is "
                f"{'above' if r['A_BA'] > b['A_BA'] else 'not above'} it (the answer above is seed {ens.seed} alone)."
            )
    out = {
        "The answer": summary_table(ens) + "\n\n" + "\n\n".join(answer),
        "The ensemble against its baselines": weighting_sentence(ens) + "\n\n" + mixture_sentence(ens),
        "The crop against the full image": crop_sentence(ens, var)
        if ens.crop is not None
        else "This build trained one input size, so the crop is not compared with the full image.",
        "Variance over seeds": seeds,
        "Grad-CAM": gradcam_summary_sentence(cam),
        "Calibration": calibration_sentence(ens) if ens.ece else "This build measured no calibration.",
    }
    return {k: out[k] for k in SUMMARY_SECTIONS}


def gradcam_summary_sentence(cam) -> str:
    """The Grad-CAM finding: against how many single models with usable maps the ensemble's maps are more
    (or less) concentrated in the cell, with the subject as the unit."""
    with_maps = [m for m in cam.models if m not in cam.models_without_maps]
    more, less = cam.more_concentrated_than, cam.less_concentrated_than
    text = (
        f"**Grad-CAM** ({cam.images} test images drawn without looking at predictions, stratified by class and "
        f"subject, {cam.subjects} subjects; paired Wilcoxon test on subject means, Holm-adjusted over the "
        f"{len(with_maps)} models): "
    )
    if more:
        text += (
            f"the ensemble's maps put significantly more energy inside the cell than {len(more)} of the "
            f"{len(with_maps)} single models with usable maps ({', '.join(more)})"
        )
    else:
        text += (
            f"the ensemble's maps put significantly more energy inside the cell than no single model with usable "
            f"maps (of {len(with_maps)})"
        )
    text += f", and significantly less than {len(less)} ({', '.join(less)})." if less else "."
    if cam.models_without_maps:
        text += (
            f" {', '.join(cam.models_without_maps)} produced no usable map (flat at this tensor size) and "
            "is not counted."
        )
    return text


def headline(ens, var, cam, study) -> str:
    """The results summary as one text (each section under its heading)."""
    return "\n\n".join(f"### {k}\n\n{v}" for k, v in summary_sections(ens, var, cam, study).items())


def calibration_sentence(ens) -> str:
    """The ECE of the best single model and WEN-kappa with CIs; one is called the less well calibrated
    only when the subject-level paired test says so."""
    text = (
        f"**Calibration** (expected calibration error of p(ALL) on the test set, {ens.ece_bins} equal-width bins "
        f"on p(ALL), {CI} subject-bootstrap CIs): " + ", ".join(f"{n} {_ci(e)}" for n, e in ens.ece.items()) + "."
    )
    d = ens.ece_difference
    if d is not None:
        worse = d.second if d.dECE.est > 0 else d.first
        clear = d.p_permutation < ALPHA and not (d.dECE.lo <= 0 <= d.dECE.hi)  # the test and the CI agree
        text += f" {d.second} minus {d.first}: {_ci(d.dECE)} (subject sign-flip p = {p_text(d.p_permutation)}): " + (
            f"{worse} is the less well calibrated."
            if clear
            else "neither is distinguishable from the other at the subject level (the test and the CI must both "
            "say so)."
        )
    return text


def v_reading_sentence(reading: dict, synthetic: bool) -> str:
    """Which reading of the paper's ``V_`` (a variance in %², or a standard deviation in points) our runs come
    nearer to, with the ratios themselves: a ratio far from one is no match whichever reading is nearer."""
    closer = reading["closer"]
    ratios = {k: v for k, v in reading.items() if k != "closer"}
    text = (
        "Median ratio of ours to the paper's V_: "
        + ", ".join(f"our {k} {fmt(v, 2)}" for k, v in ratios.items())
        + f" (the paper's own value would give a ratio of one). The {closer} is the nearer reading"
    )
    ratio = ratios.get(closer)
    if ratio is not None and not 0.5 <= ratio <= 2:
        text += f", yet still {fmt(ratio, 1)} times the paper's: neither reading matches its magnitude"
    return text + (" (synthetic data and CPU-sized training: a weak check)." if synthetic else ".")


def temperatures_sentence(temperatures: dict[str, float]) -> str:
    """Temperature scaling's one temperature per member, each fitted on validation."""
    return (
        "Temperature scaling fits one temperature per member on its validation predictions (WEN-kappa then "
        "combines the rescaled members with its validation weights): "
        + ", ".join(f"{n} T = {fmt(t, 2)}" for n, t in temperatures.items())
        + "."
    )


def verdict_sentences(tally: dict, place: dict | None, synthetic: bool) -> str:
    """One line per table: how many of the paper's numbers fall inside, above and below our intervals;
    where the single run sits in its seeds' spread; and, on synthetic data, that this places nothing."""
    lines = []
    for table, c in tally.items():
        n = sum(c.values())
        line = f"**{table}:** of the paper's {n} numbers that the study computes, {c['inside']} fall inside our "
        line += f"interval, {c['above']} above it and {c['below']} below it"
        line += f" ({c['no interval']} have no interval: one seed)." if c["no interval"] else "."
        lines.append(line)
    if place is not None:
        m, size = place["metric"], place["size"]

        def against(run, mean):
            gap = by(100 * (run - mean), up="above", down="below")
            return "equal to" if gap == "equal" else gap

        lines.append(
            f"**One run against the spread of seeds** (WEN-kappa, {m}, {size} px): our Table 4 run scores "
            f"{fmt(place['ours_run'], 3)}, {against(place['ours_run'], place['ours_mean'])} our mean over "
            f"{place['seeds']} seeds ({fmt(place['ours_mean'], 3)}, SD {fmt(100 * place['ours_sd'], 2)} "
            "points). The paper's "
            f"Table 4 run scores {fmt(place['paper_run'], 3)}, {against(place['paper_run'], place['paper_mean'])} its "
            f"Table 5 mean ({fmt(place['paper_mean'], 3)}, SD {fmt(100 * place['paper_sd'], 2)} points, reading "
            "its V_ as a "
            "variance in %²)."
        )
    if synthetic:
        lines.append(
            "These are synthetic data: the comparison places nothing. It shows the machinery a run on the real data "
            "fills in."
        )
    return "\n\n".join(lines)


def points(e) -> str:
    """A difference (an Estimate of proportions) in percentage points with its 95 % CI."""
    lo, hi = fmt(100 * e.lo, 1, sign=True), fmt(100 * e.hi, 1, sign=True)
    return f"{fmt(100 * e.est, 1, sign=True)} points ({CI} CI {lo} to {hi})"


def _family_test(tests, comparison: str):
    return next((t for t in tests if t.comparison == comparison), None)


def _verdict(t) -> str:
    """Whether the ensemble is significantly better, significantly worse or neither, by either metric."""
    better = any(getattr(t, f"d{m}").est > 0 and getattr(t, f"p_{m}_holm") < ALPHA for m in ("BA", "AUC"))
    worse = any(getattr(t, f"d{m}").est < 0 and getattr(t, f"p_{m}_holm") < ALPHA for m in ("BA", "AUC"))
    return "better" if better and not worse else ("worse" if worse and not better else "neither")


def family_clause(t, n_tests: int) -> str:
    return (
        f"BA {points(t.dBA)}, AUC {points(t.dAUC)}; {t.subjects} test subjects, subject sign-flip p = "
        f"{p_text(t.p_BA_holm)} (BA) and {p_text(t.p_AUC_holm)} (AUC), Holm-adjusted over the family's {n_tests} tests"
    )


def weighting_sentence(ens) -> str:
    """Does the weighting add anything over equal weights? WEN-kappa against the soft vote of the same
    models at the crop size (one test family with the other baselines), and the gain at every seed."""
    b = ens.baselines
    t = _family_test(b.tests, "WEN-kappa vs Soft vote (equal weights)")
    n_tests = 2 * len(b.tests)
    text = (
        f"**Does the weighting matter?** At {b.size} px (seed {b.seed}), WEN-kappa with validation weights minus "
        f"the soft vote of the same models (equal weights): {family_clause(t, n_tests)}."
    )
    gains = b.gain_per_seed
    if len(gains) > 1:
        spread = []
        for m in ("BA", "AUC"):
            g = [row[f"d{m}_pp"] for row in gains]
            sd, low, high = statistics.stdev(g), min(g), max(g)
            spread.append(
                f"{fmt(statistics.mean(g), 2, sign=True)} {m} points (SD {fmt(sd, 2)}, from "
                f"{fmt(low, 2, sign=True)} to {fmt(high, 2, sign=True)})"
            )
        text += f" Over the {len(gains)} seeds at {b.size} px the gain averaged {spread[0]} and {spread[1]}."
    else:
        text += f" The study trained one seed at {b.size} px, so the gain has no seed-to-seed spread here."
    verdict = _verdict(t)
    text += {
        "better": " The paper's claim that the weighting beats plain averaging holds on this build.",
        "worse": " On this build equal weights do significantly better: the paper's claim does not hold.",
        "neither": " On this build the weighting is not significantly different from plain averaging: the "
        "paper's claim is not supported.",
    }[verdict]
    return text


def mixture_sentence(ens) -> str:
    """Does a mixture of architectures beat copies of the best one (its seed ensemble)?"""
    b = ens.baselines
    t = next((t for t in b.tests if " x " in t.reference and t.reference.endswith(" seeds")), None)
    if t is None:
        return (
            f"**A mixture against copies of one backbone:** the study trained one seed at {b.size} px, so there "
            "is no seed ensemble of the best backbone to compare with."
        )
    verdict = {"better": "beats", "worse": "is beaten by", "neither": "is not significantly different from"}[
        _verdict(t)
    ]
    return (
        f"**A mixture against copies of one backbone:** WEN-kappa minus {t.reference} (the mean p(ALL) of the "
        f"backbone validation picks, over its seeds): {family_clause(t, 2 * len(b.tests))}. The mixture of "
        f"architectures {verdict} the seed ensemble of the best one."
    )


def crop_sentence(ens, var) -> str:
    """The 300 px crop against the 450 px image for the same seed, and what the seed spread says about it."""
    c = ens.crop
    t = _family_test(c.tests, "WEN-kappa 300 px vs WEN-kappa 450 px")
    verdict = {"better": "beats", "worse": "is beaten by", "neither": "is not significantly different from"}[
        _verdict(t)
    ]
    text = (
        f"**The crop against the full image** (seed {c.seed}, the same test images): WEN-kappa at 300 px minus at "
        f"450 px: {family_clause(t, 2 * len(c.tests))} (WEN-kappa and each backbone, 300 against 450 px). The crop "
        f"{verdict} the full image here. This rests on {counted(c.seeds_at.get(450, 0), 'seed')} at 450 px and "
        f"{c.seeds_at.get(300, 0)} at 300 px."
    )
    row = next((r for r in var.table if r["classifier"] == "WEN-kappa"), None)
    if c.seeds_at.get(450, 0) == 1 and row is not None and row["runs"] > 1:
        sd = row["SD_BA_pp"]
        gap = abs(100 * t.dBA.est)
        text += (
            f" Across the {row['runs']} seeds at 300 px, WEN-kappa's BA has an SD of {fmt(sd, 2)} points: a one-seed "
            f"difference smaller than about {fmt(2 * sd, 1)} points (twice that SD) cannot be told from seed-to-seed "
            f"variation, and the difference found, {fmt(gap, 1)} points, is "
            f"{'larger than' if gap > 2 * sd else 'within'} "
            "that."
        )
    return text


def _ci2(e) -> str:
    """An estimate with its CI on a second, smaller line (two_lines)."""
    return two_lines(_ci(e))


def summary_table(ens) -> str:
    """Table 4's key rows, ours beside the paper's: each single model and WEN-kappa with the paper's
    weights (from the test set), and WEN-kappa with ours (from validation), which the paper has not."""

    ref = paper.table("table4_prelim_test").set_index(["input_px", "classifier"])
    lines = [
        "| input | classifier (WEN weights from) | WFS ours | WFS paper | BA ours | BA paper | AUC ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sorted(ens.sizes, reverse=True):
        s = ens.sizes[size]
        rows = [(n, s.paper_faithful[n], n) for n in DISPLAY_ORDER if n in s.paper_faithful]
        rows += [("WEN-kappa (test set, as the paper)", s.paper_faithful["WEN-kappa"], "WEN-kappa")]
        rows += [("WEN-kappa (validation)", s.leak_free["WEN-kappa"], None)]
        for label, e, key in rows:
            theirs = [_num(ref[m].get((size, key), float("nan"))) if key else "–" for m in ("WFS", "BA")]
            lines.append(
                f"| {size} px | {label} | {_ci2(e['WFS'])} | {theirs[0]} | {_ci2(e['BA'])} | {theirs[1]} | "
                f"{_ci2(e['AUC'])} |"
            )
    return (
        f"**{ens.label}.** Table 4's key rows beside the paper's, with {CI} subject-bootstrap CIs. The paper "
        "measures WEN's weights on the test set; we show WEN-kappa with those weights (as the paper) and with "
        "weights from the validation split (the leak-free numbers of the sentences below). The paper's Table 4 "
        "has no AUC. Every classifier and metric is in the ensemble chapter.\n\n" + "\n".join(lines)
    )


def error_concentration_sentence(e: dict, name: str = "WEN-kappa") -> str:
    """Where the errors fall: described, and tested against a null that keeps each subject's size and
    class (`stats.error_concentration`); concentration is claimed only when that test rejects."""
    if not e["errors"]:
        return f"{name} made no error on the test set."
    found = e["p_permutation"] < ALPHA
    return (
        f"{name} made {int(e['errors'])} errors on {int(e['subjects'])} test subjects; "
        f"{int(e['subjects_with_errors'])} subjects have at least one, and the worst {int(e['worst_subjects'])} "
        f"({pct(e['share'], 0)} of the subjects, ranked by error count, which favours the largest) hold "
        f"{pct(e['share_in_worst'], 0)} of them. Against a permutation null that keeps each subject's size and class "
        f"(the errors of a class shuffled over its images, {int(e['permutations'])} permutations), the per-subject "
        f"error rates are "
        + (
            f"more dispersed than chance gives (p = {p_text(e['p_permutation'])}): errors concentrate in some people."
            if found
            else f"not more dispersed than chance gives (p = {p_text(e['p_permutation'])}): no concentration in "
            "particular people is shown."
        )
    )


def per_backbone_settings(cfg: Profile) -> list[str]:
    """The profile's per-backbone departures, one "Backbone: setting value, ..." item per backbone."""
    return [
        f"{get_backbone(b).display}: "
        + ", ".join(f"{k} {v:g}" for k, v in settings.model_dump(exclude_none=True).items())
        for b, settings in cfg.training.per_backbone.items()
    ]


def departures(cfg: Profile) -> str:
    """One line: how this profile departs from the paper's protocol (empty for the paper profile)."""

    out = []
    if cfg.data.source == "synthetic":
        out.append("synthetic data")
    if cfg.weights != "imagenet":
        out.append("random initialisation instead of ImageNet weights")
    epochs = sorted({cfg.training_for(b).epochs for b in cfg.backbones})
    most = int(paper.hyperparameters()["max_epochs"])
    if epochs != [most]:
        out.append(f"{'/'.join(map(str, epochs))} epochs instead of up to {most}")
    if cfg.input_scale != 1:
        out.append(f"tensors scaled by {cfg.input_scale} after cropping")
    if cfg.training.max_train_images:
        out.append(f"{cfg.training.max_train_images} training images per run")
    if cfg.training.recalibrate_batchnorm:
        out.append("BatchNorm statistics re-estimated after each epoch")
    out += per_backbone_settings(cfg)
    if cfg.training.run_eagerly:
        out.append("eager execution")
    return "; ".join(out)


# ---------------------------------------------------------------- per-run and chapter sentences


def concentration_tests_table(tests):
    """The Grad-CAM concentration tests as the chapter shows them: each measure in words, the p-values as
    the book prints them ("< 0.001"), medians to 3 places (the chapter's JSON summary keeps them whole)."""
    from alllib.results.gradcam import MEASURE_NAMES

    t = tests.copy()
    t["measure"] = t["measure"].map(lambda m: MEASURE_NAMES.get(m, m))
    for c in ("Wilcoxon p", "Holm p"):
        if c in t:
            t[c] = t[c].map(lambda p: "–" if p != p else p_text(p))
    return rounded(t, 3)


def run_header(run: Run) -> str:
    tr = run.training  # as the run recorded it
    return (
        f"## {run.display}, {run.input_size} px ({run.input_px} px tensors), seed {run.seed}\n\n"
        f"Run `{run.run_id}` of the `{run.profile}` profile, from **{initialisation(run.weights)}**; "
        f"subject split of seed {run.seed if run.split_seed is None else run.split_seed}; "
        f"{run.train_images} training images ({run.train_images_oversampled} per epoch after oversampling), "
        f"{run.steps_per_epoch} steps per epoch, batch size {tr.batch_size}; "
        + (
            "BatchNorm statistics re-estimated after each epoch."
            if run.batchnorm_recalibrated
            else "BatchNorm statistics as training left them (not re-estimated)."
        )
    )


def run_curve_facts(run: Run) -> str:
    tr = run.training  # as the run recorded it
    if run.epochs_run < tr.epochs:
        stopping = "ended the run"
    elif tr.patience >= tr.epochs:
        stopping = f"did not trigger, and could not: its patience ({tr.patience}) is not below the epoch limit"
    else:
        stopping = "did not trigger"
    return (
        f"{run.epochs_run} epochs run (at most {tr.epochs}), best epoch {run.best_epoch} (lowest validation "
        f"loss, whose weights early stopping restored); early stopping {stopping}. "
        f"{fmt(run.images_per_second, 1)} training images/s, {fmt(run.train_seconds, 0)} s training."
    )


def schedule_facts(run: Run) -> str:

    tr, steps = run.training, run.steps_per_epoch
    return (
        f"Step size {tr.clr_step_epochs} x {steps} iterations per epoch (the paper: "
        f"{paper.hyperparameters()['clr_step_size']}), so one cycle lasts {2 * tr.clr_step_epochs} epochs; this run "
        f"trained {run.epochs_run} epochs, peak rate {tr.clr_max_lr:g}."
    )


def run_evaluation(run: Run):
    import pandas as pd

    pred = run.predictions
    rows = {s.replace("_", " "): metrics.evaluate(g.y, g.p_all) for s, g in pred.groupby("split")}  # "preliminary test"
    test = pred[pred["split"] == "preliminary_test"]
    confusion = metrics.confusion_cells(metrics.confusion(test.y, test.p_all))
    confusion.columns.name = "predicted (count, % of the true class)"
    return pd.DataFrame(rows).T[metrics.HEADLINE + ["n"]], confusion


def runs_facts(runs: RunSet, cfg: Profile) -> str:
    minutes = sum(r.train_seconds for r in runs) / 60
    text = f"{len(runs)} runs, {fmt(minutes, 1)} min of training in all. Weights: **{cfg.weights}**."
    per = per_backbone_settings(cfg)
    if per:
        text += (
            " This profile departs from its common training settings for some backbones (see the method notes): "
            + "; ".join(per)
            + ". Each run's `peak_lr` and `max_epochs` above are the settings it trained with."
        )
    if cfg.training.recalibrate_batchnorm:
        text += (
            " BatchNorm moving statistics are re-estimated on training images after each epoch (see the method notes)."
        )
    if any(r.training.run_eagerly for r in runs):
        text += (
            " Training and prediction steps ran eagerly, op by op, without graph tracing: for a run of a few steps "
            "tracing costs more than the steps (see `alllib.method.training`)."
        )
    return text


def run_links(runs: RunSet) -> str:
    """A list of every run's page (MyST doc links: Sphinx resolves them, and says so when one breaks)."""
    return "\n".join(f"- {{doc}}`{run_title(r)} </book/_generated/runs/{r.run_id}>`" for r in runs)


def auc_gain_sentence(gain: dict) -> str:

    return (
        "AUC gain of the 300 px crop over the 450 px image, in points: "
        + ", ".join(f"{k} {fmt(v, 2, sign=True)}" for k, v in gain.items())
        + f". Paper: {paper.hyperparameters()['auc_gain_300_vs_450_pct']}."
    )


def subset_sentence(sub) -> str:
    full = sub[sub["size"] == sub["size"].max()]
    return (
        f"Validation prefers **{sub.models.iloc[0]}** (validation BA {fmt(sub.val_BA.iloc[0], 3)}, test BA "
        f"{fmt(sub.test_BA.iloc[0], 3)}); all {full['size'].iloc[0]} models: test BA {fmt(full.test_BA.iloc[0], 3)}."
    )


def gradcam_sentence(cam, tensor_px: int) -> str:
    with_maps = [m for m in cam.models if m not in cam.models_without_maps]
    text = (
        f"With the subject as the unit ({cam.subjects} subjects, Holm-adjusted), the ensemble's maps put significantly "
        f"more energy inside the cell than **{len(cam.more_concentrated_than)} of the {len(with_maps)}** single models "
        f"with usable maps"
        + (f" ({', '.join(cam.more_concentrated_than)})" if cam.more_concentrated_than else "")
        + (
            f", and significantly less than {', '.join(cam.less_concentrated_than)}"
            if cam.less_concentrated_than
            else ""
        )
        + ". The paper's claim "
        + (
            "holds"
            if with_maps and len(cam.more_concentrated_than) == len(with_maps)
            else "does not hold across the board"
        )
        + " on this data."
    )
    if cam.models_without_maps:
        text += f" No usable map (flat): {', '.join(cam.models_without_maps)}."
    if tensor_px < 150:
        text += (
            f" At {tensor_px} px tensors the last convolutional layers are only a few pixels wide, so maps are"
            " coarse by construction."
        )
    return text


def split_sentence(split: str) -> str:
    if split == "fixed":
        return (
            "subject split `fixed`: one split for every seed, as the paper's Table 3, so the spread covers "
            "initialisation, oversampling, augmentation and order."
        )
    return "subject split `per_seed`: a new subject split per seed, so the spread covers the split as well."


def gradcam_setup_sentence(ch) -> str:
    s = ch.summary
    weights = ", ".join(f"{n} {fmt(w, 3)}" for n, w in ch.weights.items())
    return (
        f"{s.images} sampled test images of {s.subjects} subjects (seed {s.sample_seed}, stratified by class and "
        f"subject, drawn without looking at predictions), {s.method}, {len(ch.names)} models at {ch.size} px "
        f"({ch.images.shape[1]} px tensors); WEN-kappa weights: {weights}."
    )


def inference_sentence(steps, reference: str) -> str:
    """What temperature scaling and TTA did to WEN-kappa and to the reference model, from the table."""
    t = steps.set_index(["variant", "classifier"])
    base = "as trained"
    parts = []
    for variant in [v for v in dict.fromkeys(steps["variant"]) if v != base]:
        for name in ("WEN-kappa", reference):
            a, b = t.loc[(base, name)], t.loc[(variant, name)]
            parts.append(
                f"{variant}: {name} BA {fmt(a['BA'], 3)} → {fmt(b['BA'], 3)}, ECE {fmt(a['ECE'], 3)} → "
                f"{fmt(b['ECE'], 3)}"
            )
    return "; ".join(parts) + "." if parts else "The profile enables neither step."


def key_results(ens, synthetic: bool) -> str:
    """The landing page's first screen: WEN-kappa at the paper's headline size, WFS, BA and AUC with their
    CIs, ours with validation weights and with test-set weights (as the paper) beside the abstract's numbers,
    each column naming where its weights come from; on synthetic data the box says first that it is no
    reproduction."""

    size = paper.HEADLINE_SIZE if paper.HEADLINE_SIZE in ens.sizes else max(ens.sizes)
    s = ens.sizes[size]
    theirs = paper.abstract_numbers()
    rows = ["| | ours: weights from validation | ours: weights from test, as the paper | paper |", "|---|---|---|---|"]
    for m in ("WFS", "BA", "AUC"):
        rows.append(
            f"| **{m}** | {_ci2(s.leak_free['WEN-kappa'][m])} | {_ci2(s.paper_faithful['WEN-kappa'][m])} | "
            f"{fmt(theirs[m], 3)} |"
        )
    label = ens.label.split(" | ")[0]
    where = f"**{label}: a test of the pipeline, not a reproduction.**" if synthetic else f"**{label}.**"
    pick = paper.best_single(size)
    why = (
        f"the paper's best, {pick}, was the best on its test set, and we pick on validation"
        if s.best_single != pick
        else "as in the paper"
    )
    c = s.comparison
    gap = by(100 * c.dBA.est, up="above", down="below", unit="BA points")
    verdict = (
        f"WEN-kappa (validation weights) is {'equal in BA to' if gap == 'equal' else gap} the best single model on "
        f"validation, {s.best_single} ({why}); subject-level p = {p_text(c.p_BA_holm)} "
        f"({'significant' if c.p_BA_holm < ALPHA else 'not significant'}), one run (seed {ens.seed})."
    )
    caption = f"Key results: WEN-kappa, {size} px, preliminary test set ({ens.test_subjects} subjects)"
    if size != paper.HEADLINE_SIZE:
        caption += f" (the paper's are at {paper.HEADLINE_SIZE} px; this build trained no {paper.HEADLINE_SIZE} px run)"
    return (
        f":::{{admonition}} {caption}\n:class: key-results\n:name: {KEY_RESULTS_ID}\n\n{where}\n\n"
        + "\n".join(rows)
        + f"\n\n{metrics.spelled()}; {CI} subject-bootstrap CIs. {verdict}\n:::\n"
    )


KEY_RESULTS_ID = "key-results"  # the box's HTML id (alllib.book.browser checks it lies in the first screen)


def landing(ens) -> str:
    """The landing page's answer under the key results: at each size the best single model on validation
    and WEN-kappa with validation weights, then WEN-kappa with test-set weights beside the paper's value
    (the paper's numbers stand beside the rows that weight as it did, and beside single models)."""

    ref = paper.table("table4_prelim_test").set_index(["input_px", "classifier"])
    lines = [
        f"| input | classifier | BA ours [{CI} CI] | BA paper (test-set weights) | AUC ours [{CI} CI] |",
        "|---|---|---|---|---|",
    ]
    for size in sorted(ens.sizes, reverse=True):
        s = ens.sizes[size]
        rows = [
            (f"{s.best_single} (best single on validation)", s.leak_free[s.best_single], s.best_single),
            ("WEN-kappa (validation weights)", s.leak_free["WEN-kappa"], None),
            ("WEN-kappa (test-set weights, as the paper)", s.paper_faithful["WEN-kappa"], "WEN-kappa"),
        ]
        for label, e, key in rows:
            p_ba = _num(ref["BA"].get((size, key), float("nan"))) if key else "–"
            lines.append(f"| {size} px | {label} | {_ci2(e['BA'])} | {p_ba} | {_ci2(e['AUC'])} |")
    verdicts = []
    for size in sorted(ens.sizes, reverse=True):
        c = ens.sizes[size].comparison
        gap = by(100 * c.dBA.est, up="above", down="below", unit="BA points")
        verdicts.append(
            f"at {size} px WEN-kappa is {'equal in BA to' if gap == 'equal' else gap} {c.reference} "
            f"({'significant' if c.p_BA_holm < ALPHA else 'not significant'}, subject-level p = "
            f"{p_text(c.p_BA_holm)}, {c.subjects} subjects, Holm over BA and AUC at "
            f"{counted(len(ens.sizes), 'input size')})"
        )
    return (
        f"On **{ens.label}**, seed {ens.seed} (one run per size; the variance chapter gives the spread over seeds): "
        + "; ".join(verdicts)
        + ". The paper's numbers use weights measured on the test set; ours use the validation split, and the "
        "test-weighted rows show what the paper's choice gives here. The results summary says more.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _num(v: float) -> str:
    return "n/a" if v != v else f"{fmt(v, 3)}"


def runs_table_markdown(runs: RunSet) -> str:
    """The appendix's table of every run, its backbone linked to its page, and a link to its run.json (which
    book.write_generated_pages copies into the book's downloads)."""

    lines = [
        "| backbone (its page) | input | seed | epochs | validation BA | test BA | training time | summary |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (-r.input_size, r.seed, DISPLAY_ORDER.index(r.display))):
        p = r.predictions
        ba = {s: metrics.evaluate(g["y"], g["p_all"])["BA"] for s, g in p.groupby("split")}
        lines.append(
            f"| {{doc}}`{r.display} </book/_generated/runs/{r.run_id}>` | {r.input_size} px | {r.seed} | "
            f"{r.epochs_run} | {fmt(ba.get('validation', float('nan')), 3)} | "
            f"{fmt(ba.get('preliminary_test', float('nan')), 3)} | {fmt(r.train_seconds / 60, 1)} min | "
            f"{{download}}`run.json </book/_generated/{DOWNLOADS}/runs/{r.run_id}.json>` |"
        )
    return "\n".join(lines) + "\n"


def run_title(run: Run) -> str:
    return f"{run.display} · {run.input_size} px · seed {run.seed}"


# ---------------------------------------------------------------- tables and files offered for download

# Output metadata of a file a notebook offers for download (show_table: a table as CSV; offer: a summary
# as JSON): {"file": name, "text": content, "what": what the link gives}. book.postprocess.for_the_book writes them.
DOWNLOAD_META = "alllib/download"
DOWNLOADS = "downloads"  # the folder under book/_generated/ that holds them: one folder per page (and runs/)


# "estimate [lo, hi]" (a CI) or "estimate (paper, difference)" in a cell: the bracket goes on a second line
_CI_CELL = re.compile(r"(-?\d+\.\d+) ([\[(][-+]?\d+\.\d+, [-+]?\d+\.\d+[\])])")


def two_lines(text: str) -> str:
    """Each "estimate [lo, hi]" or "estimate (paper, difference)" in `text` (HTML or a Markdown table
    cell) with its bracket on a second, smaller line (class `ci`, book/_static/alllib.css)."""
    return _CI_CELL.sub(r'\1<br><span class="ci">\2</span>', text)


WIDE_COLUMNS = 6  # a table with more columns than this takes the page's full width (book.postprocess.for_the_book)

# The data label every table of a chapter carries in its caption, above its header, so that no crop of
# the table loses it: notebook.setup sets it once per kernel from the study (`data_label`).
_DATA_LABEL = {"text": ""}
# columns that hold counts: whole numbers print as integers there (a transposed frame makes them floats)
COUNT_WORDS = ("n", "images", "subjects", "errors", "runs", "epochs", "seed", "seeds", "count", "tp", "fn", "tn", "fp")


def data_label(text: str) -> None:
    """The label (`Study.label()`) the tables shown from now on carry in their caption."""
    _DATA_LABEL["text"] = text


def _counts_as_integers(frame):
    """`frame` with every count column (COUNT_WORDS) whose values are all whole numbers as integers."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        name = str(col[-1] if isinstance(col, tuple) else col).lower()
        words = set(re.split(r"[\s_()]+", name))
        if not words & set(COUNT_WORDS) or not pd.api.types.is_float_dtype(out[col]):
            continue
        values = out[col].dropna()
        if len(values) and (values == values.round()).all():
            out[col] = out[col].astype("Int64")
    return out


def _break_after_underscores(html: str) -> str:
    """A header such as `images_per_second` may break after its underscores (`<wbr>`), so a table fits its
    column without breaking a word inside (the book's CSS keeps header words whole)."""
    return re.sub(r"(<th(?:\s[^>]*)?>)([^<]*)(</th>)", lambda m: m[1] + m[2].replace("_", "_<wbr>") + m[3], html)


def table_html(frame, label: str = "") -> str:
    """A results table as the book shows it: no pandas position index (0, 1, ...; an index that names
    rows stays), counts as integers, each CI on a second line, and the data label as its caption."""
    import pandas as pd

    frame = _counts_as_integers(frame)
    # pandas' own 0, 1, ... (a named index, even one that holds 0, 1, ..., such as seeds, names its rows)
    positional = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
    html = two_lines(frame.to_html(index=not positional, na_rep="–", border=0))
    html = _break_after_underscores(html)
    if label:
        kind = "synthetic" if "SYNTHETIC" in label else "real"
        html = re.sub(r"(<table[^>]*>)", rf'\1<caption class="data-label data-{kind}">{label}</caption>', html, count=1)
    return f'<div class="alllib-scroll">{html}</div>'  # on a phone it may scroll sideways, and says so


def show_table(frame, name: str, digits=None):
    """Display a results table (`table_html`: the data label as its caption, each "estimate [lo, hi]" cell
    with its CI on a second, smaller line, and "estimate (paper, difference)" alike); the book offers the
    table as `<name>.csv` beside it (book.postprocess.for_the_book reads the CSV carried in the output's
    metadata, so the download is the table shown). `digits`: places for its numbers, under the book's one
    rounding rule (`alllib.rounding.rounded`: a number or a mapping of column to places)."""
    from IPython.display import display

    if digits is not None:
        frame = rounded(frame, digits)
    html = table_html(frame, _DATA_LABEL["text"])
    meta = {DOWNLOAD_META: {"file": f"{name}.csv", "text": frame.to_csv(), "what": "this table as CSV"}}
    meta[DOWNLOAD_META]["wide"] = frame.shape[1] > WIDE_COLUMNS
    display({"text/html": html, "text/plain": frame.to_string()}, raw=True, metadata=meta)


def offer(path, what: str):
    """Offer a file of the run (a chapter's JSON summary) for download, with a line saying what it is."""
    from pathlib import Path

    from IPython.display import Markdown, display

    path = Path(path)
    meta = {DOWNLOAD_META: {"file": path.name, "text": path.read_text(), "what": what, "replace": True}}
    display(Markdown(f"`{path.name}`: {what}."), metadata=meta)  # in the book: the download link instead
