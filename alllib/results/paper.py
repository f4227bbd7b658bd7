"""The paper's numbers (Mondal et al. 2021), shipped as package data copied from shared/paper/.
tests/test_paper_data.py keeps the copies identical to the source."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from alllib.method.metrics import ECE_BINS, THRESHOLD
from alllib.method.models import BACKBONES


def table(name: str, **read_csv) -> pd.DataFrame:
    """name: table3_dataset | table4_prelim_test | table5_five_runs_300px | table6_confusion_300px | hyperparameters
    (copies of shared/paper), or, read from the paper's text (tests/test_paper_data.py checks them against it):
    table7_hyperparameters | fig10_wfs | figure_captions"""
    with resources.files("alllib").joinpath(f"data/paper/{name}.csv").open() as fh:
        return pd.read_csv(fh, **read_csv)


def figure_caption(number: int) -> str:
    """The paper's own caption of its Fig. `number`, verbatim."""
    t = table("figure_captions").set_index("figure")["caption"]
    return t[number]


def hyperparameters() -> dict:
    return dict(zip(*table("hyperparameters")[["name", "value"]].T.values))


HEADLINE_SIZE = 300  # the abstract's numbers are WEN-kappa's on the 300 px crop


def abstract_numbers() -> dict[str, float]:
    """The abstract's headline: WEN-kappa at 300 px, weights from the test set (WFS and BA from Table 4,
    AUC from the abstract; Table 4 has no AUC)."""
    row = table("table4_prelim_test").set_index(["input_px", "classifier"]).loc[(HEADLINE_SIZE, "WEN-kappa")]
    return {"WFS": float(row["WFS"]), "BA": float(row["BA"]), "AUC": float(hyperparameters()["wen_kappa_auc_300px"])}


def best_single(size: int) -> str:
    """The single model with the highest BA in the paper's Table 4 at `size` (picked on its test set)."""
    t = table("table4_prelim_test")
    t = t[(t["input_px"] == size) & (t["kind"] == "single")]
    return str(t.loc[t["BA"].idxmax(), "classifier"])


# ---------------------------------------------------------------- what the paper says, and where it is silent

# Every setting of the paper profile is either taken from the paper (FAITHFUL: key -> the paper's
# words and section) or a choice the paper leaves open or ambiguous (SILENT_OR_AMBIGUOUS: one row
# per choice, with the profile keys that set it). Quotes are verbatim from the paper's text;
# tests/test_paper_data.py checks them against ../shared/paper/ and checks that the two lists
# cover every key of the paper profile.
FAITHFUL = {
    "training.epochs": ("4.2", "The number of epochs is set to 200"),
    "training.patience": ("4.2", "applying with early stopping technique having the patience of 20"),
    "training.batch_size": ("4.2", "The batch size is fixed to 8 for training phases"),
    "training.beta_1": ("4.2", "The values of  $\\beta_1$  and  $\\beta_2$ are set to 0.9 and 0.999"),
    "training.beta_2": ("4.2", "The values of  $\\beta_1$  and  $\\beta_2$ are set to 0.9 and 0.999"),
    "training.clr_base_lr": ("4.2", "cycle the learning rate between two boundaries, such as 0.0000001 and 0.002"),
    "training.clr_max_lr": ("4.2", "cycle the learning rate between two boundaries, such as 0.0000001 and 0.002"),
    "training.clr_step_epochs": ("4.2", "the step size is set to as Eq. (5)"),
    "backbones": ("4.2", "to train all five different CNN models"),
    "runs": ("5", "training every model five times and testing them on the test images size of 300 × 300 pixels"),
    "input_scale": ("4.1.2", "all the images have been cropped centrally to a size of  $300 \\times 300$  pixels"),
    "weights": ("3", "Five different pre-trained CNN models"),
    "data.source": ("4.1.1", "The utilized dataset was released in the medical imaging challenge, named C-NMC-2019"),
    "data.root": ("4.1.1", "The utilized dataset was released in the medical imaging challenge, named C-NMC-2019"),
    "augment.flips": ("4.1.2", "such as horizontal and vertical flipping, rotation, zooming, and shifting"),
}

# Settings that describe the build, not the method (the profile's name, its one-line description,
# how many runs share a CPU).
BOOKKEEPING = (  # where and how runs execute, none in a run's key (executor.sbatch, empty here, has no leaves)
    "name",
    "description",
    "jobs",
    "executor.kind",
    "executor.runs_per_gpu",
    "executor.runs_per_job",
    "executor.partition",
    "executor.gpus_per_job",
    "executor.cpus_per_job",
    "executor.mem_gb",
    "executor.time_min",
    "executor.array_parallelism",
    "executor.poll_seconds",
    "executor.requeues",
)

SILENT_OR_AMBIGUOUS = [
    {
        "topic": "Model head",
        "section": "4.1.3",
        "paper": "The VGG-16 ends with three fully connected layers followed by a 2-node SoftMax layer",
        "ours": "Every backbone, VGG-16 included, ends in global average pooling and Dense(2, softmax), "
        "with no dropout and all layers trainable. We differ from the paper's VGG-16 head "
        "(three fully connected layers), to give the five backbones one head and Grad-CAM one layer to read.",
        "keys": [],
    },
    {
        "topic": "Augmentation ranges",
        "section": "4.1.2",
        "paper": "such as horizontal and vertical flipping, rotation, zooming, and shifting",
        "ours": "Rotation uniform in ±180°, zoom in 1 ± 0.1, shift in ± 10 % of the side, random horizontal and "
        "vertical flips; one projective transform per image, bilinear interpolation, black (constant 0) fill.",
        "keys": ["augment.rotation_deg", "augment.zoom", "augment.shift"],
    },
    {
        "topic": "Early stopping",
        "section": "4.2",
        "paper": "applying with early stopping technique having the patience of 20",
        "ours": "Monitors the validation loss and restores the best epoch's weights. With the demo's 4 or 12 epochs "
        "(and the smoke's 2) and a patience of 20 it can never trigger: every CPU run trains its epoch limit "
        "and keeps its best epoch.",
        "keys": [],
    },
    {
        "topic": "Learning rate",
        "section": "4.2",
        "paper": "The Adamax optimizer [75] is employed with an initial learning rate of 0.0002",
        "ours": "The triangular2 schedule sets the rate from the first step (from 1e-7), so the initial 2e-4 never "
        "takes effect; it is recorded with every run.",
        "keys": ["training.learning_rate"],
    },
    {
        "topic": "Oversampling",
        "section": "1",
        "paper": "In our approach, online random oversampling is applied to rebalance the dataset",
        "ours": "The minority class is resampled with replacement to the majority count once per run (seeded); the "
        "oversampled list is reshuffled every epoch. Not redrawn per epoch.",
        "keys": [],
    },
    {
        "topic": "WEN weights",
        "section": "5",
        "paper": "considering ALL recognition results on the test set",
        "ours": "The paper's weights (test set) are shown as what the paper did; every claim uses weights from the "
        "validation split. A weight below 0 (kappa of a model worse than chance) is clipped to 0.",
        "keys": [],
    },
    {
        "topic": "Determinism",
        "section": "—",
        "paper": "",
        "ours": "The CPU profiles enable TensorFlow's op determinism (same seed, same floats); the paper profile "
        "does not (GPU kernels are faster without it). Mixed precision, XLA and several steps per graph call are "
        "off in every shipped profile; the faster paths' section of these notes says what each changes.",
        "keys": [
            "training.deterministic",
            "training.run_eagerly",
            "training.xla",
            "training.mixed_precision",
            "training.steps_per_execution",
        ],
    },
    {
        "topic": "Subject split",
        "section": "4.1.1",
        "paper": "the training dataset is split into training and validation sets",
        "ours": "Subject-disjoint, 15 of 47 ALL and 7 of 26 Hem subjects to validation as in Table 3, drawn with a "
        "seed. `split: fixed` trains every seed on the first seed's split (the paper has one Table 3); "
        "`per_seed` draws one per seed. The CPU profiles' per-run draw of training images "
        "(`max_train_images`) still follows each run's seed.",
        "keys": ["split"],
    },
    {
        "topic": "Decision threshold",
        "section": "—",
        "paper": "",
        "ours": f"A cell is called ALL when p(ALL) ≥ {THRESHOLD} (the arg-max of the two softmax outputs); "
        "no threshold is tuned.",
        "keys": [],
    },
    {
        "topic": "Test-time steps (beyond the paper)",
        "section": "—",
        "paper": "",
        "ours": "Test-time augmentation (the mean p(ALL) over each image's rotations and flips, its dihedral views; "
        "it fits nothing) and temperature scaling (one temperature per member, fitted on validation only) are "
        "shown beside Table 4 as options.",
        "keys": ["inference.tta", "inference.temperature_scaling"],
    },
    {
        "topic": "Uncertainty and Grad-CAM (beyond the paper)",
        "section": "5",
        "paper": "with the class activation map overlaying (Grad-CAM)",
        "ours": "Subject-bootstrap CIs and subject-level paired tests; Grad-CAM at the registry's last convolutional "
        "layer, tested on a sample drawn by class and subject without looking at predictions.",
        "keys": [
            "stats.bootstrap",
            "stats.permutations",
            "gradcam.method",
            "gradcam.images",
            "gradcam.examples_per_class",
        ],
    },
    {
        "topic": "Input preprocessing of each backbone",
        "section": "4.1.3",
        "paper": "",
        "ours": "Each backbone gets the input preprocessing of its keras.applications ImageNet weights (caffe: BGR "
        "minus the ImageNet mean; tf: scaled to [-1, 1]; torch: scaled to [0, 1] and standardised), inside the "
        "model: " + ", ".join(f"{b.display} {b.preprocessing}" for b in BACKBONES.values()) + ".",
        "keys": [],
    },
    {
        "topic": "BatchNorm during fine-tuning",
        "section": "4.2",
        "paper": "",
        "ours": "The paper profile fine-tunes every layer, BatchNorm included: its layers run in training mode in "
        "`fit` (batch statistics, running statistics updated with Keras' momentum). The CPU profiles also "
        "re-estimate the running statistics after each epoch (the section above).",
        "keys": [],
    },
    {
        "topic": "The F1 of WEN-f1",
        "section": "4.1.3",
        "paper": "The weights are estimated from ensemble candidates' corresponding metrics, such as F1-score, area "
        "under the curve (AUC), and kappa values",
        "ours": "WEN-f1 weighs each model by its weighted F1-score (WFS, Eq. 8: the classes' F1-scores weighted by "
        "their support), the F1 the paper reports.",
        "keys": [],
    },
    {
        "topic": "Iterations of the cyclic schedule",
        "section": "4.2",
        "paper": "IterPerEpoch denotes the number of iterations per epoch",
        "ours": "An iteration is one batch of the oversampled epoch (the training images after random oversampling), "
        "so the step size is `clr_step_epochs` times the steps of that epoch.",
        "keys": ["training.clr_step_epochs"],
    },
    {
        "topic": "V_ of Table 5",
        "section": "5",
        "paper": "V\\_ implies the variance of those metrics for individual CNN models and ensemble models",
        "ours": "V_ is the sample variance (ddof = 1) over the seeds of the metric in percent units; the standard "
        "deviation in percentage points stands beside it, and the variance chapter says which reading is of the "
        "paper's magnitude.",
        "keys": [],
    },
    {
        "topic": "Which run forms Table 4, Table 6 and Fig. 5",
        "section": "5",
        "paper": "",
        "ours": "The ensembles of the first seed of the run matrix (the ensemble chapter's `seed` parameter); Table 5 "
        "and the gain of the weighting over equal weights use every seed at the crop size.",
        "keys": [],
    },
    {
        "topic": "The ensemble's Grad-CAM",
        "section": "5",
        "paper": "The visualization of Grad-CAM of the ALL class from different CNN models and our proposed weighted "
        "ensemble model",
        "ours": "Each member's Grad-CAM for the image's true class at its last convolutional layer, normalised to "
        "[0, 1], then averaged with WEN-kappa's validation weights.",
        "keys": [],
    },
    {
        "topic": "Calibration (beyond the paper)",
        "section": "—",
        "paper": "",
        "ours": f"The expected calibration error uses {ECE_BINS} equal-width bins of p(ALL); temperature scaling fits "
        "one temperature per member on its validation predictions, and the ensemble combines the rescaled members.",
        "keys": [],
    },
    {
        "topic": "Input scale (CPU profiles only)",
        "section": "—",
        "paper": "",
        "ours": "After the centre crop, the CPU profiles shrink the tensor by `input_scale` with area interpolation "
        "(the pixel average), rounded to uint8; the paper profile keeps the full resolution.",
        "keys": ["input_scale"],
    },
    {
        "topic": "Synthetic stand-in (CPU profiles only)",
        "section": "—",
        "paper": "",
        "ours": "Without the real data the CPU profiles generate a labelled synthetic set in the official layout.",
        "keys": ["data.synthetic_scale", "data.difficulty", "data.image_format", "data.seed"],
    },
    {
        "topic": "Training from scratch on a CPU (CPU profiles only)",
        "section": "4.1.2",
        "paper": "a total of 11644 images were trained during the training process",
        "ours": "The paper profile trains on every training image with the paper's protocol. The CPU profiles draw "
        "a class-stratified subset per run and re-estimate BatchNorm statistics after each epoch "
        "(see the section above).",
        "keys": ["training.max_train_images", "training.recalibrate_batchnorm", "training.bn_recalibration_images"],
    },
]


def choices_markdown() -> str:
    """The method notes' table "Where the paper is silent or ambiguous"."""
    lines = ["| Topic | The paper's words | Our choice | Profile key |", "|---|---|---|---|"]
    for row in SILENT_OR_AMBIGUOUS:
        words = f"“{row['paper']}” (Section {row['section']})" if row["paper"] else "silent"
        keys = ", ".join(f"`{k}`" for k in row["keys"]) or "(code)"
        lines.append(f"| {row['topic']} | {words} | {row['ours']} | {keys} |")
    return "\n".join(lines) + "\n"
