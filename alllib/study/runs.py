"""The run store: one folder per training run, named by the hash of everything that determines
its result (`run_key`), written atomically, reused when finished. `train_or_load` is what the
per-run training notebook calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from alllib import io
from alllib.study.profile import fingerprint

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
    from alllib.method.models import get_backbone

    key = run_key(study.cfg, get_backbone(backbone).key, size, seed, study.data_info["fingerprint"])
    return study.runs_dir / run_id(key)


def is_complete(path) -> bool:
    return (Path(path) / "run.json").is_file()


def train_or_load(study, backbone: str, size: int, seed: int, verbose: int = 2) -> Path:
    """The run directory of (backbone, size, seed) of `study`: reused when a finished run with the
    same key exists, trained otherwise. The run is written to a temporary directory that replaces
    the final one only when complete, so a killed run is redone, never half-reused."""
    from alllib.method.models import get_backbone
    from alllib.method.training import fit
    from alllib.study.cluster import executor_record

    backbone = get_backbone(backbone).key
    out = run_dir(study, backbone, size, seed)
    if is_complete(out):
        return out
    backup = backup_dir(out)
    with io.atomic_dir(out) as tmp:
        info = fit(
            study.cfg,
            backbone,
            size,
            seed,
            study.table,
            tmp,
            study.data_info,
            verbose=verbose,
            split_seed=study.split_seed(seed),
            backup_dir=backup,
        )
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


def load_run(path) -> dict:
    path = Path(path)
    info = json.loads((path / "run.json").read_text())
    info["history"] = pd.read_csv(path / "history.csv")
    info["predictions"] = pd.read_csv(path / "predictions.csv", dtype={"subject": str})
    info["dir"] = str(path)
    return info


def load_runs(runs_dir) -> list[dict]:
    """Every finished run under runs_dir (unfinished temporary directories are ignored)."""
    runs_dir = Path(runs_dir)
    return (
        [load_run(d) for d in sorted(runs_dir.iterdir()) if d.is_dir() and is_complete(d)] if runs_dir.is_dir() else []
    )
