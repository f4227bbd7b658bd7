"""The run store: one folder per training run, named by the hash of everything that determines
its result (`run_key`), written atomically, reused when finished. `train_or_load` is what the
per-run training notebook calls.

A finished run is read as a `Run` (its run.json, typed, with its predictions and history read on
demand), and a study's runs as a `RunSet`, which owns every selection the chapters make: the runs
at an input size and seed, the sizes, the seeds, the crop size the analyses use."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, PrivateAttr

from alllib import io
from alllib.errors import StudyError
from alllib.method.models import DISPLAY_ORDER, get_backbone
from alllib.method.training import RunSpec, fit
from alllib.study.cluster import executor_record
from alllib.study.profile import SIZES, Augment, Training, fingerprint

# The version of the code that trains: bump it when a change alters what a training run produces, so older
# runs are not reused. It is not the release version (alllib.__version__, in CITATION.cff and the
# changelog): a release that changes only the book leaves finished runs valid.
TRAINING_CODE_VERSION = "0.1.0"


def run_key(cfg: dict, backbone: str, size: int, seed: int, data_fingerprint: str) -> dict:
    """Everything that determines a training run's result; its hash names the run."""
    return {
        "code": TRAINING_CODE_VERSION,
        "backbone": backbone,
        "input_size": size,
        "seed": seed,
        "input_scale": cfg.input_scale,
        "weights": str(cfg.weights),
        "training": cfg.training_for(backbone).model_dump(),
        "augment": cfg.augment.model_dump(),
        "split": cfg.split,
        "data": data_fingerprint,
    }


def run_id(key: dict) -> str:
    return f"{key['backbone']}_{key['input_size']}px_seed{key['seed']}_{fingerprint(key)}"


def run_dir(study, backbone: str, size: int, seed: int) -> Path:
    """The folder of one run of `study`: the one place a run's key and name are built."""
    key = run_key(study.cfg, get_backbone(backbone).key, size, seed, study.data_info["fingerprint"])
    return study.runs_dir / run_id(key)


def is_complete(path) -> bool:
    return (Path(path) / "run.json").is_file()


def train_or_load(study, backbone: str, size: int, seed: int, verbose: int = 2, run_id: str | None = None) -> Path:
    """The run directory of (backbone, size, seed) of `study`: reused when a finished run with the
    same key exists, trained otherwise. The run is written to a temporary directory that replaces
    the final one only when complete, so a killed run is redone, never half-reused. `run_id`: the run
    the caller (the runner) resolved; a kernel whose settings resolve another run refuses to train."""

    backbone = get_backbone(backbone).key
    out = run_dir(study, backbone, size, seed)
    if run_id is not None and out.name != run_id:
        raise StudyError(
            f"the runner scheduled run {run_id}, but this kernel's settings resolve run {out.name}: the profile, "
            "its overrides or the data changed between the two; start the study again"
        )
    if is_complete(out):
        return out
    backup = backup_dir(out)
    with io.atomic_dir(out) as tmp:
        spec = RunSpec(backbone, size, seed, study.split_seed(seed))
        info = fit(study.cfg, spec, study.table, tmp, study.data_info, verbose=verbose, backup_dir=backup)
        info["executor"] = executor_record()  # where it ran: never part of the key
        info["key"] = run_key(study.cfg, backbone, size, seed, study.data_info["fingerprint"])
        info["run_id"] = out.name
        io.write_json(tmp / "run.json", info)
    shutil.rmtree(backup, ignore_errors=True)  # the run is stored: its mid-run backup has done its work
    return out


def backup_dir(run: Path) -> Path:
    """Where an unfinished run keeps its state between epochs (outside the run folder, which appears
    only when the run is complete): runs/.backup/<run id>/."""
    return run.parent / ".backup" / run.name


class Run(BaseModel):
    """One finished training run: its run.json, typed (the fields every run records are named here,
    the others are read as attributes too), and its folder. `predictions` (validation and test,
    per image) and `history` (per epoch) are read from the folder when first asked for."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    display: str
    input_size: int
    seed: int
    backbone: str = ""
    run_id: str = ""
    folder: Path | None = None
    input_px: int | None = None
    split_seed: int | None = None
    profile: str = ""
    weights: str = ""
    training: Training | None = None
    augment: Augment | None = None
    epochs_run: int = 0
    best_epoch: int = 0

    _predictions: pd.DataFrame | None = PrivateAttr(None)
    _history: pd.DataFrame | None = PrivateAttr(None)

    @classmethod
    def of(cls, predictions: pd.DataFrame | None = None, history: pd.DataFrame | None = None, **fields) -> Run:
        """A run held in memory (tests, a run being written): its fields and its tables."""
        run = cls.model_validate(fields)
        run._predictions, run._history = predictions, history
        return run

    @property
    def predictions(self) -> pd.DataFrame:
        if self._predictions is None:
            self._predictions = pd.read_csv(self.folder / "predictions.csv", dtype={"subject": str})
        return self._predictions

    @property
    def history(self) -> pd.DataFrame:
        if self._history is None:
            self._history = pd.read_csv(self.folder / "history.csv")
        return self._history

    @property
    def record(self) -> dict:
        """The run as its run.json holds it."""
        return json.loads((self.folder / "run.json").read_text())


class RunSet:
    """The finished runs of a study, in the run matrix's order, and the selections made of them."""

    def __init__(self, runs):
        self.runs = list(runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i) -> Run:
        return self.runs[i]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def where(self, size: int | None = None, seed: int | None = None) -> RunSet:
        """The runs at input size `size` and seed `seed` (either may be left open)."""
        return RunSet(r for r in self if (size is None or r.input_size == size) and (seed is None or r.seed == seed))

    def at(self, size: int, seed: int) -> dict[str, pd.DataFrame]:
        """Predictions of the backbones at one input size and seed, in the paper's order: an ensemble's
        members."""
        chosen = {r.display: r.predictions for r in self.where(size, seed)}
        return {name: chosen[name] for name in DISPLAY_ORDER if name in chosen}

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self})

    @property
    def first_seed(self) -> int:
        """The seed the single-run chapters use unless told another (the paper's one run)."""
        return min(self.seeds)

    def sizes(self, seed: int | None = None) -> list[int]:
        """Input sizes with runs (of `seed`), the full image first."""
        return sorted({r.input_size for r in self.where(seed=seed)}, reverse=True)

    def crop_size(self, seed: int | None = None) -> int:
        """The size the crop-size analyses use: the paper's 300 px centre crop when it was trained,
        else the only size there is."""
        sizes = self.sizes(seed)
        return SIZES[1] if SIZES[1] in sizes else sizes[0]


def load_run(path) -> Run:
    path = Path(path)
    return Run.model_validate({**json.loads((path / "run.json").read_text()), "folder": path})


def load_runs(runs_dir) -> RunSet:
    """Every finished run under runs_dir (unfinished temporary directories are ignored)."""
    runs_dir = Path(runs_dir)
    return RunSet(
        [load_run(d) for d in sorted(runs_dir.iterdir()) if d.is_dir() and is_complete(d)] if runs_dir.is_dir() else []
    )
