"""The run store: one folder per training run, named by the hash of everything that determines
its result (`run_key`), written atomically, reused when finished. `train_or_load` is what the
per-run training notebook calls.

A finished run is read as a `Run` (its run.json, typed, with its predictions and history read on
demand), and a study's runs as a `RunSet`, which owns every selection the chapters make: the runs
at an input size and seed, the sizes, the seeds, the crop size the analyses use."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, PrivateAttr

from alllib import io
from alllib.errors import StudyError
from alllib.method.models import DISPLAY_ORDER, get_backbone
from alllib.method.training import RunSpec, fit
from alllib.provenance import process_seconds
from alllib.study.cluster import executor_record
from alllib.study.profile import SIZES, Augment, Training, fingerprint

# The version of the code that trains: bump it when a change alters what a training run produces, so older
# runs are not reused. It is not the release version (alllib.__version__, in CITATION.cff and the
# changelog): a release that changes only the book leaves finished runs valid.
TRAINING_CODE_VERSION = "0.1.0"


# Settings added after runs were first keyed, left out of the key at the value that trains as before, so
# that a finished run keeps its name: steps_per_execution 1 is one step per graph call, as every run had.
KEYED_WHEN_SET = {"steps_per_execution": 1}


def run_key(cfg: dict, backbone: str, size: int, seed: int, data_fingerprint: str) -> dict:
    """Everything that determines a training run's result; its hash names the run."""
    training = cfg.training_for(backbone).model_dump()
    for name, before in KEYED_WHEN_SET.items():
        if training.get(name) == before:
            del training[name]
    key = {
        "code": TRAINING_CODE_VERSION,
        "backbone": backbone,
        "input_size": size,
        "seed": seed,
        "input_scale": cfg.input_scale,
        "weights": str(cfg.weights),
        "training": training,
        "augment": cfg.augment.model_dump(),
        "split": cfg.split,
        "data": data_fingerprint,
    }
    split_seed = cfg.split_seed(seed)
    if split_seed != _unnamed_split(cfg.split, seed):
        # a fixed split is the first seed's (`Profile.split_seed`), so a study whose seeds start at 2 trains its
        # seed 2 on another split than one whose seeds start at 0. Named only then, so that the runs of studies
        # whose seeds start at 0, as every shipped profile's do, keep their names; a run stored on another split
        # under such a name before the split was named is found by `damage`.
        key["split_seed"] = split_seed
    if training["mixed_precision"]:  # since the output layer is float32 under mixed_float16: not the older runs
        key["mixed_precision_output"] = "float32"
    return key


def _unnamed_split(split: str, seed: int) -> int:
    """The split seed a run's key implies when it does not name one: the run's own seed with one split per
    seed, seed 0's split with one split for all (what every fixed-split run had before the split was named)."""
    return seed if split == "per_seed" else 0


def run_id(key: dict) -> str:
    return f"{key['backbone']}_{key['input_size']}px_seed{key['seed']}_{fingerprint(key)}"


def run_dir(study, backbone: str, size: int, seed: int) -> Path:
    """The folder of one run of `study`: the one place a run's key and name are built."""
    key = run_key(study.cfg, get_backbone(backbone).key, size, seed, study.data_info["fingerprint"])
    return study.runs_dir / run_id(key)


ARTIFACTS = ("model.keras", "history.csv", "predictions.csv")  # what run.json records the size and sha256 of


def damage(path, hashes: bool = False) -> list[str]:
    """What is wrong with the finished run in `path`, one "file: problem" each (empty: sound). Its
    run.json must parse and every artifact it records must have its size, and with `hashes` its
    sha256 too. A run.json without the record (written before it existed) has its files checked for
    presence only. A run that trained on another subject split than its name says (`other_split`) is
    not the run of that name either."""
    path = Path(path)
    record = path / "run.json"
    if not record.is_file():
        return ["run.json: missing"]
    try:
        info = json.loads(record.read_text())
        artifacts = info.get("artifacts")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ["run.json: cut off or overwritten (not a JSON object)"]
    if artifacts is None:
        problems = [f"{name}: missing" for name in ARTIFACTS if not (path / name).is_file()]
    else:
        problems = io.damaged(path, artifacts, hashes=hashes)
    return problems + other_split(info)


def other_split(info: dict) -> list[str]:
    """A run (its run.json) that trained on another subject split than its key, and so its name, says:
    before a run's key named its split (`run_key`), a study whose seeds started at 2 stored its seed-2 run,
    trained on seed 2's split, under the name that a study whose seeds start at 0 gives its seed-2 run,
    trained on seed 0's. Empty when they agree, or when an older run.json does not say."""
    key, trained = info.get("key"), info.get("split_seed")
    if not isinstance(key, dict) or trained is None or "seed" not in key:
        return []
    named = key.get("split_seed", _unnamed_split(key.get("split", "fixed"), key["seed"]))
    if named == trained:
        return []
    return [
        f"run.json: trained on the subject split of seed {trained}, but its name is that of the run on seed "
        f"{named}'s split (stored by a study of other seeds before run names held the split)"
    ]


def is_complete(path, hashes: bool = False) -> bool:
    """A finished run, sound as far as checked (sizes always, sha256 with `hashes`)."""
    return not damage(path, hashes)


def set_aside(path, problems: list[str]) -> Path:
    """Move a damaged run out of the store (runs/.damaged/<run>.<time>), never delete it; says so in
    one line."""
    path = Path(path)
    aside = path.parent / ".damaged" / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, aside)
    print(f"[study] run {path.name} is damaged ({'; '.join(problems)}): moved to {aside}; training it again")
    return aside


LOCK_HELD = "ALLLIB_RUN_LOCK_HELD"  # set by the runner for the kernel it starts: it holds that run's lock


def run_lock(run: Path) -> FileLock:
    """The lock of one run (runs/.locks/<run>.lock): whoever holds it trains the run, or removes its
    leftovers; another process waits for it, then reuses the finished run."""
    locks = Path(run).parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(locks / f"{Path(run).name}.lock")


@contextlib.contextmanager
def holding(run: Path, who: str = "[study]"):
    """Hold `run`'s lock for the block, saying so once when another process holds it (and is
    training it). Inside a kernel the runner started for this run (LOCK_HELD), the runner holds it."""
    if os.environ.get(LOCK_HELD) == Path(run).name:
        yield
        return
    with io.held(run_lock(run), f"{who} run {Path(run).name} is being trained by another process: waiting for it"):
        yield


def remove_leftovers(runs_dir) -> list[Path]:
    """Remove what killed runs left in the store (runs/.<run>.<random>.partial): only those whose run
    no live process holds (one another study is training stays). Returns what was removed."""
    removed = []
    for stale in Path(runs_dir).glob(".*.partial") if Path(runs_dir).is_dir() else []:
        lock = run_lock(Path(runs_dir) / stale.name[1:].split(".", 1)[0])
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # being trained right now
        try:
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
        finally:
            lock.release()
    return removed


def train_or_load(
    study, backbone: str, size: int, seed: int, verbose: int = 2, run_id: str | None = None, hashes: bool = False
) -> Path:
    """The run directory of (backbone, size, seed) of `study`: reused when a finished run with the
    same key exists and is sound (`damage`; with `hashes` its sha256 too), trained otherwise. The run
    is written to a temporary directory that replaces the final one only when complete, so a killed
    run is redone, never half-reused; a damaged one is set aside and trained again. One process at a
    time trains a run (`run_lock`); another waits and then reuses it. `run_id`: the run the caller
    (the runner) resolved; a kernel whose settings resolve another run refuses to train."""

    backbone = get_backbone(backbone).key
    out = run_dir(study, backbone, size, seed)
    if run_id is not None and out.name != run_id:
        raise StudyError(
            f"the runner scheduled run {run_id}, but this kernel's settings resolve run {out.name}: the profile, "
            "its overrides or the data changed between the two; start the study again"
        )
    with holding(out, "[train]"):
        if out.exists():
            problems = damage(out, hashes=hashes)
            if not problems:
                return out
            set_aside(out, problems)
        for stale in out.parent.glob(f".{out.name}.*.partial"):  # this run's, left by a killed attempt
            shutil.rmtree(stale, ignore_errors=True)
        backup = backup_dir(out)
        with io.atomic_dir(out) as tmp:
            spec = RunSpec(backbone, size, seed, study.split_seed(seed))
            before = process_seconds() if os.environ.get(LOCK_HELD) == out.name else None  # a runner's kernel
            t0 = time.time()
            info = fit(study.cfg, spec, study.table, tmp, study.data_info, verbose=verbose, backup_dir=backup)
            info["executor"] = executor_record()  # where it ran: never part of the key
            info["key"] = run_key(study.cfg, backbone, size, seed, study.data_info["fingerprint"])
            info["run_id"] = out.name
            info["artifacts"] = {name: io.file_record(tmp / name) for name in ARTIFACTS}
            phases = info.get("phases", {})
            if before is not None:  # the kernel's start, imports and notebook set-up came before fit
                phases = {"kernel start, imports and set-up": before, **phases}
            info["wall_seconds"] = (before or 0.0) + time.time() - t0  # measured whole, not summed
            phases["other (not measured apart)"] = max(0.0, info["wall_seconds"] - sum(phases.values()))
            info["phases"] = phases
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
    record = io.read_json(path / "run.json", f"the run is damaged: run the study again, which sets {path} aside")
    return Run.model_validate({**record, "folder": path})


def load_runs(runs_dir) -> RunSet:
    """Every finished run under runs_dir (unfinished temporary directories are ignored)."""
    runs_dir = Path(runs_dir)
    return RunSet(
        [load_run(d) for d in sorted(runs_dir.iterdir()) if d.is_dir() and is_complete(d)] if runs_dir.is_dir() else []
    )


def verify_runs(results) -> pd.DataFrame:
    """Every run of a study's results folder (results/<profile>) checked against its run.json's record,
    sizes and sha256: one row per run, its state (sound, damaged) and what is wrong."""
    runs_dir = Path(results) / "runs"
    if not runs_dir.is_dir():
        raise StudyError(f"{results} holds no runs/ folder: expected a study's results folder, e.g. results/demo")
    rows = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        problems = damage(d, hashes=True)
        rows.append({"run": d.name, "state": "damaged" if problems else "sound", "problems": "; ".join(problems)})
    return pd.DataFrame(rows, columns=["run", "state", "problems"])
