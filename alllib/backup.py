"""The mid-run backup of a training run: what a run killed at any instant resumes from.

Keras' `BackupAndRestore` writes its weights file in place, and loads it whenever it exists: a
file cut off by a kill mid-write is loaded and fails deep inside h5py ("bad object header version
number"). Here every epoch end writes a complete checkpoint into a fresh hidden folder
(`.epoch_0003.partial`): Keras' weights file (the weights and the optimizer's state, with it the
cyclic schedule's step) and metadata, the history so far, early stopping's state and its best
weights, and last a manifest of every file's size and sha256. Only then is the folder renamed into
place (`epoch_0003`), and only then is the checkpoint before the previous one removed, so that the
last two consistent checkpoints survive any kill.

On resume the newest checkpoint whose files match its manifest is used. A damaged one (a file
truncated or altered afterwards, on disk) is moved aside into `.damaged/`, named in one line, and
the run resumes from the checkpoint before it, or from epoch 0 if there is none. A half-written
`.partial` folder is never read.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alllib import io

MANIFEST = "manifest.json"  # written last inside a checkpoint: its files, sizes and sha256
WEIGHTS = "latest.weights.h5"  # Keras' own names inside a checkpoint
KERAS_METADATA = "training_metadata.json"
STATE = "state.json"  # history, early stopping's state
KEEP = 2  # consistent checkpoints kept: the newest and the one before it


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs the checkpoint holds
    folder: Path


def _name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def checkpoints(backup_dir) -> list[Checkpoint]:
    """The committed checkpoints in `backup_dir`, newest first (whatever their state)."""
    root = Path(backup_dir)
    found = []
    for d in root.glob("epoch_*") if root.is_dir() else []:
        if d.is_dir() and d.name[len("epoch_") :].isdigit():
            found.append(Checkpoint(int(d.name[len("epoch_") :]), d))
    return sorted(found, key=lambda c: c.epoch, reverse=True)


def problems(ckpt: Checkpoint) -> list[str]:
    """What is wrong with a committed checkpoint (empty: consistent)."""
    try:
        manifest = io.read_json(ckpt.folder / MANIFEST)
        files = manifest["files"]
        if manifest["epoch"] != ckpt.epoch:
            return [f"{MANIFEST}: epoch {manifest['epoch']}, folder {ckpt.folder.name}"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({type(exc).__name__})"]
    return io.damaged(ckpt.folder, files)


def latest(backup_dir, log=print) -> Checkpoint | None:
    """The newest consistent checkpoint in `backup_dir` (None: none, the run starts at epoch 0).
    Damaged checkpoints are moved aside into `.damaged/` with one line each to `log`."""
    if not backup_dir:
        return None
    for ckpt in checkpoints(backup_dir):
        wrong = problems(ckpt)
        if not wrong:
            return ckpt
        aside = Path(backup_dir) / ".damaged" / f"{ckpt.folder.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ckpt.folder, aside)
        log(
            f"[train] the training backup {ckpt.folder} is damaged ({'; '.join(wrong)}): moved aside to {aside}; "
            f"resuming from the checkpoint before it, if any"
        )
    return None


def resume_epoch(backup_dir, log=print) -> int:
    """The epoch a run resumes at: how many epochs the newest consistent backup holds (0: none)."""
    ckpt = latest(backup_dir, log)
    return ckpt.epoch if ckpt else 0


def backup_callback(backup_dir, early_stopping, start: Checkpoint | None, phases=None):
    """The Keras callback that saves the run's checkpoints (`backup_dir`) and, at the start of
    training, restores `start` (the checkpoint the data stream was positioned for). `phases`: a
    `provenance.Phases` that the time spent saving is added to (as "backup")."""
    import keras

    class RunBackup(keras.callbacks.BackupAndRestore):
        """Keras' BackupAndRestore, pointed at one checkpoint folder per epoch (see the module), plus
        what it leaves out: the history so far and early stopping's state (epochs without
        improvement, best loss and epoch, best weights)."""

        def __init__(self):
            super().__init__(str(backup_dir), save_freq="epoch", double_checkpoint=False, delete_checkpoint=False)
            self.root, self.es, self.start, self.rows = Path(backup_dir), early_stopping, start, []

        def _point_at(self, folder: Path):  # Keras' file names, inside one checkpoint folder
            self.backup_dir = str(folder)
            self._weights_path = str(folder / WEIGHTS)
            self._training_metadata_path = str(folder / KERAS_METADATA)

        def on_train_begin(self, logs=None):
            if self.start is None:
                return
            self._point_at(self.start.folder)
            self._load_model()  # weights and optimizer back, model._initial_epoch set
            state = io.read_json(self.start.folder / STATE)
            self.rows = state["history"]
            self.es.wait, self.es.best, self.es.best_epoch = state["wait"], state["best"], state["best_epoch"]
            if state["best_weights"]:
                with np.load(self.start.folder / state["best_weights"]) as f:
                    self.es.best_weights = [f[f"arr_{i}"] for i in range(len(f.files))]
            if state.get("stopped"):  # early stopping had ended the run: train no further epoch
                self.es.stopped_epoch = self.start.epoch - 1
                self.model._initial_epoch = self.params["epochs"]

        def on_epoch_end(self, epoch, logs=None):
            t0 = time.perf_counter()
            self._commit(epoch, logs)
            if phases is not None:
                phases.add("backup", time.perf_counter() - t0)

        def _commit(self, epoch, logs):
            self.rows.append({k: float(v) for k, v in (logs or {}).items()})
            self._current_epoch, self._last_batch_seen = epoch + 1, 0
            final = self.root / _name(epoch + 1)
            staging = self.root / f".{final.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            self._point_at(staging)
            self._save_model()  # Keras: the weights file, then its metadata
            best = None
            if self.es.best_weights is not None:
                best = f"best_{self.es.best_epoch}.npz"
                before = [c.folder / best for c in checkpoints(self.root)[:1] if (c.folder / best).is_file()]
                try:  # the same best epoch as the checkpoint before: share its file (a hard link)
                    os.link(before[0], staging / best)
                except (IndexError, OSError):
                    with open(staging / best, "wb") as fh:
                        np.savez(fh, *self.es.best_weights)
            state = {
                "history": self.rows,
                "wait": int(self.es.wait),
                "best": None if self.es.best is None else float(self.es.best),
                "best_epoch": int(self.es.best_epoch),
                "best_weights": best,
                "stopped": bool(self.model.stop_training),  # early stopping (earlier in the list) has spoken
            }
            (staging / STATE).write_text(json.dumps(state))
            files = {p.name: io.file_record(p) for p in sorted(staging.iterdir())}
            (staging / MANIFEST).write_text(json.dumps({"epoch": epoch + 1, "files": files}))
            shutil.rmtree(final, ignore_errors=True)  # a checkpoint of this epoch from an earlier, damaged attempt
            os.replace(staging, final)  # the commit: a kill before it leaves the previous checkpoints
            for old in checkpoints(self.root)[KEEP:]:
                shutil.rmtree(old.folder, ignore_errors=True)

    return RunBackup()
