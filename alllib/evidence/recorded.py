"""Recorded tables: evidence behind a profile's choices, measured once with a command and shipped
with the package (alllib/data/<name>.csv), each stamped with date, profile and commit.

- `trial` compares settings through the ordinary runner and **selects on validation**: the table
  says which variant validation prefers; test figures are shown only beside that choice;
- `calibrate` is a trial over the synthetic difficulty.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alllib import io
from alllib.evidence.bench import data_growth, gpu_note, paper_matrix_hours
from alllib.method.dataset import load_manifest
from alllib.method.metrics import evaluate
from alllib.provenance import STAMP_COLUMNS, git_commit, stamp
from alllib.rounding import fmt
from alllib.study.prepare import PACKAGE_ROOT, prepare
from alllib.study.profile import load_profile
from alllib.study.runner import notebook_params, run_matrix


def recorded_path(name: str) -> Path:
    """Where the recorded table `name` (written by `calibrate`, `trial` or `bench --out`) lives:
    alllib/data/<name>.csv, shipped with the package."""
    return Path(__file__).resolve().parents[1] / "data" / f"{name}.csv"


def recorded(name: str) -> pd.DataFrame | None:
    """The recorded table `name`, or None when none was recorded."""
    path = recorded_path(name)
    return pd.read_csv(path) if path.is_file() else None


def recorded_note(table: pd.DataFrame, build_commit: str | None = None) -> str:
    """Where a recorded table comes from, in words: the `stamp` columns, and whether its commit is
    the build's (`build_commit`)."""
    first = table.iloc[0]
    where = f" on {first['cpus']} CPUs (GPU: {first['gpus']})" if "cpus" in table else ""
    text = f"Recorded {first['recorded']} with the `{first['profile']}` profile{where} at commit `{first['commit']}`"
    if build_commit is not None:
        same = str(first["commit"]).removesuffix("-dirty") == build_commit.removesuffix("-dirty")
        text += " (this build's commit)" if same else f" (this build: `{build_commit}`)"
    return text + "."


# What the training chapter shows: recorded table -> heading
CHAPTER_TABLES = {
    "calibration_demo": "Synthetic difficulty (demo profile)",
    "trial_lr_demo": "VGG-16's peak learning rate (demo profile)",
    "bench_training": "Training throughput: the input pipeline against in-memory tensors",
    "bench_gpu": "Training and inference throughput on one GPU (paper profile, random weights)",
    "bench_data_scaling": "The data layer at the real data set's size",
}


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """A recorded table without its provenance columns (they go into the note)."""

    return table.drop(columns=[c for c in STAMP_COLUMNS if c in table])


def note_for(table: pd.DataFrame) -> str:
    """The provenance sentence, and for trials the choice validation makes."""

    text = recorded_note(table, git_commit())
    if "difficulty" in table:
        d = calibration_choice(table)
        best = table[table["difficulty"] == d]
        text += (
            f" The rule (the hardest difficulty whose best backbone reaches a validation BA between "
            f"{CALIBRATION_WINDOW[0]} and {CALIBRATION_WINDOW[1]}) chooses **difficulty {d}** on validation "
            f"(best validation BA {fmt(best['val_BA'].max(), 3)}); its best test BA was "
            f"{fmt(best['test_BA'].max(), 3)}."
        )
    elif "val_BA" in table:
        by = "setting"
        choice = choose_on_validation(table, by)
        best = choice[choice["chosen_on_validation"]].iloc[0]
        text += (
            f" Validation chooses **{best[by]}** (mean validation BA {fmt(best['val_BA_mean'], 3)} over "
            f"{int(best['runs'])} runs, worst {fmt(best['val_BA_worst'], 3)}); its mean test BA was "
            f"{fmt(best['test_BA_mean'], 3)}."
        )
    elif "added MB" in table:
        growth = data_growth(table)
        worst = growth.loc[growth["growth exponent"].idxmax()]
        text += (
            " Each step ran in a fresh process on synthetic trees written by `synthesize --format bmp` (scale 1.0 "
            "is the real set's size); *baseline MB* is the process's peak after its imports, *added MB* what the "
            "step added to it. How each step grows with the number of images (exponent b of seconds ~ images^b, "
            f"1 = linear; the steepest is {worst['step']} at {worst['growth exponent']}):\n\n"
            + growth.to_markdown(index=False)
        )
        full = table[table["step"] == "verify full"].sort_values("images")
        if len(full) >= 2:
            rate = full["tree GB"] / full["seconds"]
            text += (
                f"\n\n*verify full* reads every byte: {fmt(rate.iloc[0], 2)} GB/s on the smallest tree, "
                f"{fmt(rate.iloc[-1], 2)} GB/s on the largest (page cache: {full['page cache'].iloc[-1]}), the "
                "disk's rate "
                "rather than the code's, which hashes each file in 1 MB blocks."
            )
    elif "train_images_per_s" in table:
        text += " " + gpu_note(table)
    elif "pipeline overhead %" in table:
        text += f" Median pipeline overhead over the pairs: **{fmt(table['pipeline overhead %'].median(), 1)} %**."
    return text


CALIBRATION_WINDOW = (0.6, 0.98)  # best backbone clearly above chance and clearly below perfect


def calibration_choice(table: pd.DataFrame, window=CALIBRATION_WINDOW) -> float | None:
    """The synthetic difficulty a calibration table chooses, on validation only: the hardest one
    whose best backbone's validation BA lies inside `window` (None if none does)."""
    best = table.groupby("difficulty")["val_BA"].max()
    inside = best[(best > window[0]) & (best < window[1])]
    return float(inside.index.max()) if len(inside) else None


def choose_on_validation(table: pd.DataFrame, by: str = "setting") -> pd.DataFrame:
    """Per variant (`by`): mean and worst validation BA over its seeds and backbones, and the
    variant validation chooses (highest mean validation BA). Test BA is added only as the column
    that says how the choice held up; it plays no part in choosing."""
    g = table.groupby(by, sort=False)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "val_BA_mean": g["val_BA"].mean(),
            "val_BA_worst": g["val_BA"].min(),
            "test_BA_mean": g["test_BA"].mean(),
        }
    ).reset_index()
    out["chosen_on_validation"] = out["val_BA_mean"] == out["val_BA_mean"].max()
    return out


def trial(
    profile: str, variants, backbones, size: int = 300, seeds=(0,), results_dir=None, out=None, base=(), data_dir=None
) -> pd.DataFrame:
    """Compare settings with the profile's training protocol: for each variant (a list of `key=value`
    overrides, after the common `base` overrides) train `backbones` at `size` px for every seed
    through the ordinary runner (cached like any run) and tabulate validation and test balanced
    accuracy, with each run's per-epoch history (so a claim about how training behaved can be
    checked). Written to `out` (CSV) with the date and code version."""

    rows = []
    for variant in variants:
        variant = list(variant)
        overrides = (
            list(base)
            + variant
            + [f"backbones=[{','.join(backbones)}]", f"runs={{{size}: [{','.join(map(str, seeds))}]}}"]
        )
        study = prepare(profile, overrides, data_dir, results_dir=results_dir)
        study.results.mkdir(parents=True, exist_ok=True)
        with open(study.results / "notebooks.log", "a") as log:
            run_matrix(
                study, notebook_params(study, profile, overrides, data_dir), PACKAGE_ROOT, [], log, study.cfg.jobs
            )
        for run in study.runs():
            p, h = run.predictions, run.history
            val, test = p[p["split"] == "validation"], p[p["split"] == "preliminary_test"]
            rows.append(
                {
                    "setting": " ".join(variant) or "profile as is",
                    "backbone": run.display,
                    "seed": run.seed,
                    "input_px": run.input_px,
                    "clr_max_lr": run.training.clr_max_lr,
                    "epochs": run.epochs_run,
                    "best_epoch": run.best_epoch,
                    "val_BA": evaluate(val["y"], val["p_all"])["BA"],
                    "test_BA": evaluate(test["y"], test["p_all"])["BA"],
                    "train_accuracy_by_epoch": " ".join(f"{fmt(v, 3)}" for v in h["accuracy"]),
                    "val_accuracy_by_epoch": " ".join(f"{fmt(v, 3)}" for v in h["val_accuracy"]),
                }
            )
    table = stamp(pd.DataFrame(rows), profile)
    if out:
        io.write_csv(out, table)
    return table


def calibrate(
    profile: str = "demo",
    difficulties=(0.3, 0.5),
    backbones=("vgg16", "mobilenet"),
    size: int = 300,
    seed: int = 0,
    results_dir=None,
    out=None,
) -> pd.DataFrame:
    """Calibrate the synthetic difficulty with the profile's training settings: a `trial` of
    `backbones` at `size` px for each difficulty, so the book can show what the default was chosen from."""
    table = trial(profile, [[f"difficulty={d}"] for d in difficulties], backbones, size, (seed,), results_dir)
    table.insert(0, "difficulty", table.pop("setting").str.split("=").str[1].astype(float))
    if out:
        io.write_csv(out, table)
    return table


def budget_markdown() -> str:
    """What a reproducer must budget for the paper's run matrix: the data's size (official manifest) and
    the GPU-hours the recorded one-GPU benchmark (alllib/data/bench_gpu.csv) gives for its fastest case and
    packing (runs side by side), at the 200-epoch ceiling and at early stopping's earliest stop."""
    m = load_manifest()
    cfg = load_profile("paper", data_dir="/path/to/C-NMC_Leukemia")
    runs = sum(len(seeds) for seeds in cfg.runs.values()) * len(cfg.backbones)
    text = (
        f"**Budget for the real study:** the data, {len(m):,} images, {fmt(m['bytes'].sum() / 1e9, 1)} GB to download"
    )
    table = recorded("bench_gpu")
    if table is None or table.empty:
        return text + "; no GPU benchmark is recorded, so no GPU-hours are estimated.\n"
    hours = paper_matrix_hours(table, "paper").dropna(subset=["hours"])
    if hours.empty:
        return text + "; the recorded GPU benchmark misses a backbone, so no GPU-hours are estimated.\n"
    best = hours.loc[hours["hours"].idxmin()]
    early = paper_matrix_hours(table, "paper", epochs=cfg.training.patience + 1)
    early = early[(early["backend"] == best["backend"]) & (early["compile"] == best["compile"])]
    early = early[(early["precision"] == best["precision"]) & (early["runs per GPU"] == best["runs per GPU"])]
    early = early["hours"].iloc[0]
    packed = f", {best['runs per GPU']} runs side by side" if best["runs per GPU"] > 1 else ""
    gpu = str(table["gpus"].dropna().iloc[0]) if table["gpus"].notna().any() else "one GPU"
    return text + (
        f"; the paper's {runs} training runs, about **{fmt(best['hours'], 0)} GPU-hours** on one {gpu} at the "
        f"paper's ceiling of {best['epochs per run']} epochs, and {fmt(early, 0)} GPU-hours if early stopping ends "
        f"every run at its earliest ({cfg.training.patience + 1} epochs); measured through Keras 3 on "
        f"{best['backend']} ({best['precision']}, {best['compile']}, batch {cfg.training.batch_size}{packed}), "
        f"recorded {table['recorded'].iloc[0]}. The engineering appendix has the table.\n"
    )
