"""Profiles (smoke, demo, paper): small YAML files with every setting of a study, plus
command-line overrides such as `epochs=3` or `training.batch_size=16`.

One declarative schema (`Profile`, pydantic) describes every setting: its type, its range and a
one-line meaning. A profile and its overrides are checked against it before any work starts; a bad
value is refused with one line that names the key, the value and what was expected. The same
schema lists the settings for `python -m alllib settings` and the book's method notes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from alllib.errors import ConfigError
from alllib.method.models import BACKBONES, get_backbone
from alllib.method.preprocessing import input_pixels

PROFILES = ("smoke", "demo", "paper")
SIZES = (450, 300)  # full image and the paper's centre crop
PER_BACKBONE = "per_backbone"  # training.per_backbone.<backbone>.<setting>: a CPU profile's per-backbone departures

PositiveInt = Annotated[int, Field(ge=1, strict=True)]
Rate = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Training(_Strict):
    """Section 4.2: the training policy."""

    epochs: PositiveInt = Field(description="most epochs a run trains (the paper: 200, ended by early stopping)")
    batch_size: PositiveInt = Field(description="images per training step (the paper: 8)")
    learning_rate: Rate = Field(
        description="Adamax's initial rate (the paper: 2e-4); the cyclic schedule sets the rate from step 0"
    )
    beta_1: Fraction = Field(description="Adamax beta_1 (the paper: 0.9)")
    beta_2: Fraction = Field(description="Adamax beta_2 (the paper: 0.999)")
    clr_base_lr: Rate = Field(description="lowest rate of the triangular2 cycle (the paper: 1e-7)")
    clr_max_lr: Rate = Field(description="highest rate of the triangular2 cycle (the paper: 2e-3)")
    clr_step_epochs: PositiveInt = Field(
        description="half-cycle of the schedule in epochs (Eq. 5: 6 x iterations per epoch)"
    )
    patience: PositiveInt = Field(description="early stopping: epochs without a lower val_loss before training stops")
    recalibrate_batchnorm: StrictBool = Field(
        description="re-estimate BatchNorm statistics after each epoch (CPU profiles only)"
    )
    bn_recalibration_images: PositiveInt = Field(
        256, description="training images used to re-estimate BatchNorm statistics"
    )
    max_train_images: Annotated[int, Field(ge=4, strict=True)] | None = Field(
        None, description="class-stratified draw of training images per run (null = all; CPU profiles)"
    )
    mixed_precision: StrictBool = Field(False, description="train in mixed_float16 (GPU)")
    xla: StrictBool = Field(False, description="compile the training step with XLA")
    steps_per_execution: PositiveInt = Field(
        1,
        description="training steps per call into the compiled graph (fewer Python round trips; Keras then calls "
        "batch callbacks every N steps, epoch callbacks as before)",
    )
    run_eagerly: StrictBool = Field(False, description="execute steps op by op, without tracing (smoke profile)")
    deterministic: StrictBool = Field(False, description="TensorFlow op determinism (same seed, same floats)")


class TrainingOverride(_Strict):
    """One backbone's departures from `training` (every field optional)."""

    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    learning_rate: Rate | None = None
    beta_1: Fraction | None = None
    beta_2: Fraction | None = None
    clr_base_lr: Rate | None = None
    clr_max_lr: Rate | None = None
    clr_step_epochs: PositiveInt | None = None
    patience: PositiveInt | None = None
    recalibrate_batchnorm: StrictBool | None = None
    bn_recalibration_images: PositiveInt | None = None
    max_train_images: Annotated[int, Field(ge=4, strict=True)] | None = None
    mixed_precision: StrictBool | None = None
    xla: StrictBool | None = None
    steps_per_execution: PositiveInt | None = None
    run_eagerly: StrictBool | None = None
    deterministic: StrictBool | None = None


class TrainingPolicy(Training):
    """`training` as a profile writes it: the settings of every run, and a CPU profile's per-backbone
    departures from them (`training_for` applies them)."""

    per_backbone: dict[str, TrainingOverride] = Field(
        default_factory=dict, description="one backbone's departures from the training settings (CPU profiles)"
    )


class Data(_Strict):
    source: Literal["synthetic", "real"] = Field(
        description="the synthetic stand-in or the real C-NMC-2019 tree (DATA_DIR)"
    )
    root: str | None = Field(None, description="path to C-NMC_Leukemia/ (set by DATA_DIR)")
    synthetic_scale: Annotated[float, Field(gt=0, le=1)] = Field(
        0.05, description="synthetic: fraction of the real per-subject image counts"
    )
    difficulty: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="synthetic: 0 = well-separated classes, 1 = identical"
    )
    image_format: Literal["png", "bmp"] = Field("png", description="synthetic: file format of the generated images")
    seed: Annotated[int, Field(ge=0, strict=True)] = Field(2019, description="synthetic: generator seed")


class Augment(_Strict):
    """Section 4.1.2: online augmentation."""

    rotation_deg: Annotated[float, Field(ge=0, le=180)] = Field(
        description="rotation drawn uniformly in +-this many degrees"
    )
    zoom: Fraction = Field(description="zoom drawn uniformly in 1 +- this")
    shift: Fraction = Field(description="shift drawn uniformly in +- this fraction of the side")
    flips: StrictBool = Field(description="random horizontal and vertical flips")


class GradCAM(_Strict):
    examples_per_class: PositiveInt = Field(description="examples per class in Fig. 9")
    method: Literal["gradcam", "gradcam++"] = Field(description="map method (tf-keras-vis)")
    images: PositiveInt = Field(description="test images in the concentration sample (stratified by class and subject)")


class Stats(_Strict):
    bootstrap: Annotated[int, Field(ge=10, strict=True)] = Field(
        description="subject-bootstrap replicates of every CI and paired test"
    )
    permutations: Annotated[int, Field(ge=10, strict=True)] = Field(
        2000, description="subject-level sign-flip permutations of every paired test"
    )


class Inference(_Strict):
    """Beyond the paper: inference-time steps fitted on validation only, from cached models."""

    tta: StrictBool = Field(False, description="test-time augmentation: mean p(ALL) over the 8 rotations and flips")
    temperature_scaling: StrictBool = Field(True, description="temperature scaling of each model, fitted on validation")


class Executor(_Strict):
    """Where the run matrix's training runs execute. Recorded in every run's run.json and
    never part of its key: a run finished on the cluster is reused locally and the other way round."""

    kind: Literal["local", "slurm", "submitit_local"] = Field(
        "local",
        description="local: kernels on this machine (--gpus/jobs); slurm: one Slurm job per run through "
        "submitit (a job array); submitit_local: the slurm path with submitit's local executor (tests)",
    )
    runs_per_gpu: PositiveInt = Field(
        1,
        description="local, with --gpus: training runs side by side on each GPU (each its own kernel, memory taken "
        "as it grows); --runs-per-gpu overrides it",
    )
    runs_per_job: PositiveInt = Field(
        1,
        description="slurm: training runs packed into one job, trained side by side on its GPU(s), each its own "
        "papermill notebook in the same run store",
    )
    partition: str | None = Field(None, description="slurm: partition (null = the cluster's default)")
    gpus_per_job: Annotated[int, Field(ge=0, strict=True)] = Field(1, description="slurm: GPUs per training job")
    cpus_per_job: PositiveInt = Field(4, description="slurm: CPUs per training job")
    mem_gb: Annotated[float, Field(gt=0)] = Field(32, description="slurm: memory per training job (GB)")
    time_min: PositiveInt = Field(
        24 * 60, description="slurm: time limit per job (minutes); a job cut off here is requeued and resumes"
    )
    array_parallelism: PositiveInt = Field(4, description="slurm: training jobs running at once (job array cap)")
    sbatch: dict[str, str | int] = Field(
        default_factory=dict, description="slurm: further sbatch options, e.g. {qos: high, account: lab}"
    )
    poll_seconds: Annotated[float, Field(gt=0)] = Field(10, description="slurm: seconds between progress checks")
    requeues: Annotated[int, Field(ge=0, strict=True)] = Field(
        3, description="slurm: times a preempted or timed-out job is requeued before it counts as failed"
    )


class Profile(_Strict):
    name: str = Field(description="profile name (results/<name>/)")
    description: str = Field(description="one line shown on the book's first page")
    data: Data
    input_scale: Annotated[float, Field(gt=0, le=1)] = Field(
        description="tensor side = crop (450 or 300 px) x this (CPU profiles shrink the tensors after cropping)"
    )
    weights: str = Field(description="'imagenet', 'none' (random initialisation) or a weights file")
    jobs: PositiveInt = Field(
        1, description="notebooks side by side: training runs on CPU, then the analysis chapters (on CPU or GPU)"
    )
    split: Literal["fixed", "per_seed"] = Field(
        "fixed", description="subject split: one split for every seed (the paper's Table 3) or one per seed"
    )
    backbones: list[str] = Field(min_length=1, description="backbones of the run matrix")
    runs: dict[int, list[Annotated[int, Field(ge=0, strict=True)]]] = Field(
        description="input size (450 or 300) -> seeds trained at that size"
    )
    training: TrainingPolicy
    augment: Augment
    gradcam: GradCAM
    stats: Stats
    inference: Inference = Inference()
    executor: Executor = Executor()

    @field_validator("backbones", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, v):
        return [v] if isinstance(v, str) else v

    def training_for(self, backbone: str) -> Training:
        """The training settings of one backbone's runs: `training`, with the backbone's entry of
        `training.per_backbone` on top where the profile has one (CPU profiles, training from random
        initialisation, tune a few settings per backbone; the paper uses one protocol for all). What
        a run records and what its key hashes."""
        settings = self.training.model_dump(exclude={PER_BACKBONE})
        override = self.training.per_backbone.get(get_backbone(backbone).key)
        if override is not None:
            settings.update(override.model_dump(exclude_none=True))
        return Training.model_validate(settings)

    def input_px(self, size: int) -> int:
        """Side of the tensor fed to the network at input size `size`."""
        return input_pixels(size, self.input_scale)

    @property
    def seeds(self) -> list[int]:
        """Every seed of the run matrix, in order."""
        return sorted({seed for seeds in self.runs.values() for seed in seeds})

    def split_seed(self, seed: int) -> int:
        """The seed of the subject split a run of `seed` trains on: the first seed for every run
        (`split: fixed`, the paper's single Table 3 split) or the run's own (`split: per_seed`)."""
        return self.seeds[0] if self.split == "fixed" else seed

    def record(self) -> dict:
        """The profile as files store it (study.json, the book's provenance)."""
        return self.model_dump()


def _key(loc) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _refuse(name, exc: ValidationError, prefix: str = "") -> ConfigError:
    """One line per bad setting: key, value, what was expected."""
    lines = []
    for err in exc.errors(include_url=False):
        key = prefix + _key(err["loc"])
        if err["type"] == "missing":
            lines.append(f"setting {key} is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r}")
        else:
            lines.append(f"setting {key} = {err['input']!r}: {err['msg'][0].lower() + err['msg'][1:]}")
    return ConfigError(f"profile {name!r}: " + "; ".join(lines))


def settings_table():
    """Every setting of the schema: dotted key, type, meaning (for `alllib settings` and the book)."""
    import pandas as pd

    rows = []

    def walk(model, prefix):
        for key, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, prefix + key + ".")
                continue
            if key == PER_BACKBONE:
                continue  # one row below, with its shape
            rows.append({"setting": prefix + key, "type": _type_name(f), "meaning": f.description or ""})
        if model is TrainingPolicy:
            rows.append(
                {
                    "setting": f"training.{PER_BACKBONE}.<backbone>.<setting>",
                    "type": "mapping",
                    "meaning": "one backbone's departures from the training settings (CPU profiles)",
                }
            )

    walk(Profile, "")
    return pd.DataFrame(rows)


def _type_name(f) -> str:
    """`int >= 1`, `float in (0, 1]`, `one of fixed, per_seed`, ... for a schema field."""
    import typing

    ann = f.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    optional = len(args) < len(typing.get_args(ann))
    if typing.get_origin(ann) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(ann)))
    if optional and len(args) == 1:
        ann = args[0]
    base = typing.get_args(ann)[0] if typing.get_origin(ann) is Annotated else ann
    meta = list(f.metadata) + (list(typing.get_args(ann)[1:]) if typing.get_origin(ann) is Annotated else [])
    bounds = []
    for m in meta:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sym} {getattr(m, attr)}")
    name = getattr(base, "__name__", str(base).replace("typing.", ""))
    if typing.get_origin(base) is list:
        name = "list"
    elif typing.get_origin(base) is dict:
        name = "mapping"
    return name + (" " + ", ".join(bounds) if bounds else "") + (" or null" if optional else "")


def profile_path(name: str) -> Path:
    if name in PROFILES:
        return Path(str(resources.files("alllib") / "profiles" / f"{name}.yml"))
    path = Path(name)
    if path.suffix in (".yml", ".yaml") and path.exists():
        return path
    raise ConfigError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)} or a path to a .yml file")


def _parse_value(key: str, text: str):
    if not text.strip():
        raise ConfigError(f"setting {key} has no value: write {key}=<value>")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"setting {key}: cannot parse value {text!r} ({exc.problem})") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-8 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _leaf_paths(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and key != "runs":
            yield from _leaf_paths(value, prefix + (key,))
        else:
            yield prefix + (key,)


def _known_paths(cfg: dict):
    """Leaves of the profile and of the schema (a key the profile leaves at its default can be set too)."""
    paths = set(_leaf_paths(cfg))
    for row in settings_table()["setting"]:
        if "<" not in row:
            paths.add(tuple(row.split(".")))
    return paths


def apply_override(cfg: dict, assignment: str) -> str:
    """Apply `key=value` in place. `key` is a dotted path or a leaf name that is unique. Returns
    the dotted path that was set."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value (for example epochs=3)")
    key, text = assignment.split("=", 1)
    key = key.strip()
    known = _known_paths(cfg)
    # a bare leaf name never means a per-backbone entry (those need their full dotted path)
    paths = [p for p in known if ".".join(p) == key] or sorted(
        p for p in known if p[-1] == key and PER_BACKBONE not in p
    )
    if not paths and key.startswith(f"training.{PER_BACKBONE}.") and len(key.split(".")) == 4:
        paths = [tuple(key.split("."))]
    if not paths:
        raise ConfigError(
            f"unknown setting {key!r} in override {assignment!r}; known settings: "
            f"{', '.join(sorted('.'.join(p) for p in known))}"
        )
    if len(paths) > 1:
        raise ConfigError(f"setting {key!r} is ambiguous: use one of {', '.join('.'.join(p) for p in paths)}")
    node = cfg
    for part in paths[0][:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting {key!r}: {part} is not a group of settings")
    node[paths[0][-1]] = _parse_value(".".join(paths[0]), text)
    return ".".join(paths[0])


def _check(cfg: Profile) -> None:
    """What a per-field type cannot say: relations between settings."""

    def need(cond, msg):
        if not cond:
            raise ConfigError(f"profile {cfg.name!r}: {msg}")

    for where, tr in [("training", cfg.training)] + [
        (f"training.{PER_BACKBONE}.{b}", cfg.training_for(b)) for b in cfg.training.per_backbone
    ]:
        need(
            tr.clr_base_lr < tr.clr_max_lr,
            f"{where}: clr_base_lr {tr.clr_base_lr} must be below clr_max_lr {tr.clr_max_lr}",
        )
        need(
            not (tr.run_eagerly and tr.xla),
            f"{where}: run_eagerly and xla exclude each other (XLA compiles the traced graph that run_eagerly skips)",
        )
    need(set(cfg.runs) <= set(SIZES), f"setting runs = {cfg.runs!r}: may only name input sizes {SIZES}")
    need(len(cfg.runs) > 0, f"setting runs = {{}}: expected at least one input size of {SIZES} with its seeds")
    need(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cfg.name) is not None and ".." not in cfg.name,
        f"setting name = {cfg.name!r}: a profile name names its folder results/<name>/, so it must be a plain name "
        "(letters, digits, '_', '-', '.'; no '/' and no '..')",
    )
    for size, seeds in cfg.runs.items():
        need(len(seeds) > 0, f"setting runs.{size} = []: expected at least one seed")
        px = cfg.input_px(size)
        for name in cfg.backbones:
            bb = BACKBONES[name]
            need(
                px >= bb.min_size,
                f"{bb.display} needs inputs of at least {bb.min_size} px, but {size} px x "
                f"input_scale {cfg.input_scale} gives {px} px; raise input_scale",
            )
    w = cfg.weights
    need(
        w in ("imagenet", "none") or Path(str(w)).exists(),
        f"setting weights = {w!r}: weights must be 'imagenet', 'none' or an existing weights file",
    )
    need(
        cfg.data.source != "real" or cfg.data.root,
        "reads the real C-NMC-2019 data: pass DATA_DIR=/path/to/C-NMC_Leukemia",
    )


def validate(cfg: dict) -> Profile:
    """The profile (as read from its YAML file, with the overrides applied) checked against the schema
    (types, ranges, unknown keys) and its relations: the typed Profile every other module reads."""
    name = cfg.get("name") if isinstance(cfg, dict) else None
    raw = copy.deepcopy(cfg)
    per = raw.get("training", {}).pop(PER_BACKBONE, None) if isinstance(raw.get("training"), dict) else None
    try:
        model = Profile.model_validate(raw)
    except ValidationError as exc:
        raise _refuse(name, exc) from None
    for b in model.backbones:
        get_backbone(b)  # raises with the list of known names
    keys = [get_backbone(b).key for b in model.backbones]
    twice = sorted({b for b in model.backbones if keys.count(get_backbone(b).key) > 1})
    if twice:
        raise ConfigError(
            f"profile {name!r}: setting backbones = {model.backbones!r} names one backbone twice ({', '.join(twice)}): "
            "every run would be scheduled twice; name each backbone once"
        )
    model.backbones = keys
    if per is not None:
        if not isinstance(per, dict) or not all(isinstance(v, dict) for v in per.values()):
            raise ConfigError(
                f"profile {name!r}: setting training.{PER_BACKBONE} = {per!r}: "
                "expected a mapping of backbone names to training settings"
            )
        checked = {}
        for bb, settings in per.items():
            key = get_backbone(bb).key  # raises with the list of known names
            try:
                checked[key] = TrainingOverride.model_validate(settings)
            except ValidationError as exc:
                raise _refuse(name, exc, prefix=f"training.{PER_BACKBONE}.{bb}.") from None
        model.training.per_backbone = checked
    _check(model)
    return model


def load_profile(name: str = "demo", overrides=(), data_dir: str | None = None) -> Profile:
    path = profile_path(name)
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile file {path} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"profile file {path} must hold a mapping of settings, got {type(cfg).__name__}")
    return profile_from(cfg, overrides, data_dir)


def profile_from(settings: dict, overrides=(), data_dir: str | None = None) -> Profile:
    """A profile from its settings as a file holds them (a profile's YAML, or a finished study's
    study.json), with `overrides` and the data folder applied, checked."""
    cfg = copy.deepcopy(settings)
    if isinstance(cfg.get("runs"), dict):  # JSON (study.json) writes the input sizes as strings
        cfg["runs"] = {int(k) if str(k).isdigit() else k: v for k, v in cfg["runs"].items()}
    for assignment in overrides:
        path = apply_override(cfg, assignment).split(".")
        if len(path) == 2 and path[0] == "training":
            # `--set clr_max_lr=X` means every backbone: it replaces the profile's per-backbone values
            for settings in (cfg["training"].get(PER_BACKBONE) or {}).values():
                if isinstance(settings, dict):
                    settings.pop(path[1], None)
    if data_dir:
        cfg["data"]["source"] = "real"
        cfg["data"]["root"] = str(Path(data_dir).expanduser().resolve())
    return validate(cfg)


def fingerprint(obj) -> str:
    """A short stable hash of any JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]
