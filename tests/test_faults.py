"""The fault matrix: a study killed at any moment, or finding its files damaged, resumes to the
result an uninterrupted run gives, byte for byte (history, predictions, the run's key), or refuses
in one line that names the file and the fix. Never is a half-written artifact taken for a finished
one.

The faults are injected into real processes (a training run's own process, a study's runner with its
papermill kernels) by tests/faults/sitecustomize.py, which fires once and then lets the same command,
run again, be the recovery. Tiny CPU runs, with op determinism on."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from alllib import io
from alllib.errors import StudyError
from alllib.method import backup
from alllib.study import runs

FAULTS = Path(__file__).parent / "faults"
RUN = [  # three epochs of three or four steps; early stopping cannot end it before the third
    "backbones=[mobilenet,vgg16]",
    "input_scale=0.12",
    "epochs=3",
    "patience=5",
    "max_train_images=24",
    "bn_recalibration_images=16",
    "batch_size=8",
    "run_eagerly=false",
    "deterministic=true",
]
CHILD = """
from alllib.study import runs
from alllib.study.prepare import prepare
study = prepare("smoke", {overrides!r}, data_dir={data!r}, results_dir={results!r}, progress=False)
print("RUN", runs.train_or_load(study, "mobilenet", 300, {seed}, verbose=0))
"""


def _env(fault: dict | None, marker: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("ALLLIB_FAULT", None)
    if fault:
        env["ALLLIB_FAULT"] = json.dumps({"marker": str(marker), **fault})
    return env


def _train(synth_root, results: Path, fault=None, marker=None, seed=0):
    """One training run in its own process (and process group); returns its exit code and output."""
    code = CHILD.format(overrides=RUN, data=str(synth_root), results=str(results), seed=seed)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(fault, marker),
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _the_run(results: Path) -> Path:
    (d,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return d


def _same_run(a: Path, b: Path) -> None:
    assert a.name == b.name  # the run's key
    for name in ("history.csv", "predictions.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "run.json").read_text())["key"] == json.loads((b / "run.json").read_text())["key"]


@pytest.fixture(scope="module")
def reference(synth_root, tmp_path_factory):
    """The uninterrupted run."""
    results = tmp_path_factory.mktemp("reference")
    rc, out = _train(synth_root, results)
    assert rc == 0, out
    return _the_run(results)


def test_a_run_killed_at_every_kind_of_moment_resumes_to_the_uninterrupted_result(synth_root, reference, tmp_path):
    """kill -9 before the first backup, while backups are written (cut at several byte offsets),
    mid-epoch, after a backup was damaged on disk, and between model.keras and run.json: one chain
    of kills on one run, each recovery itself killed at the next moment, then it completes."""
    results = tmp_path / "results"
    store = results / "smoke" / "runs"

    def killed(fault, tag):
        rc, out = _train(synth_root, results, fault, tmp_path / f"{tag}.fired")
        assert rc == -signal.SIGKILL, out
        assert not [d for d in store.iterdir() if d.is_dir() and not d.name.startswith(".")]  # nothing finished
        (folder,) = [d for d in (store / ".backup").iterdir()] if (store / ".backup").is_dir() else [None]
        return out, folder

    _, bk = killed({"at": {"batch": [0, 1]}}, "mid-first-epoch")  # no backup yet
    assert backup.resume_epoch(bk) == 0
    _, bk = killed({"at": {"backup": [1, 0]}}, "first-backup-empty")  # the first backup's weights cut at 0 bytes
    assert backup.resume_epoch(bk) == 0 and (bk / ".epoch_0001.partial").is_dir()
    _, bk = killed({"at": {"backup": [2, 4096]}}, "second-backup-cut")  # epoch 1 committed, epoch 2 torn
    assert backup.resume_epoch(bk) == 1
    _, bk = killed({"at": {"batch": [2, 1]}}, "mid-third-epoch")  # resumed at 1, killed inside epoch 3
    assert [c.epoch for c in backup.checkpoints(bk)] == [2, 1]
    weights = bk / "epoch_0002" / backup.WEIGHTS  # a committed backup damaged afterwards, on disk
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    out, bk = killed({"at": {"write": "run.json"}}, "before-run-json")  # trained to the end, killed before run.json
    assert f"the training backup {bk / 'epoch_0002'} is damaged ({backup.WEIGHTS}:" in out
    assert list((bk / ".damaged").iterdir()) and any(store.glob(".*.partial"))  # set aside; the partial run ignored
    rc, out = _train(synth_root, results)
    assert rc == 0, out
    _same_run(_the_run(results), reference)
    assert not (store / ".backup" / reference.name).exists()


STUDY = """
import sys
from alllib.study.prepare import prepare
from alllib.study.runner import notebook_params, run_matrix
study = prepare("smoke", {overrides!r}, data_dir={data!r}, results_dir={results!r}, progress=False)
base = notebook_params(study, "smoke", {overrides!r}, {data!r})
from pathlib import Path
print(run_matrix(study, base, Path({root!r}), [], sys.stdout, jobs=1))
"""


def test_a_study_killed_while_a_run_writes_its_backup_resumes_and_completes(synth_root, reference, tmp_path):
    """The issue's steps: one run finished, then everything (the runner, papermill, the kernel) killed
    while the next run writes its backup; then its kernel dies (os._exit) mid-epoch; the study, run
    again, reuses the finished run and completes the other, equal to an uninterrupted run."""
    results = tmp_path / "results"
    overrides = [*RUN, "runs={300: [0]}"]  # VGG-16 trains first (the longer run), then MobileNet

    def study(fault=None, tag=""):
        code = STUDY.format(overrides=overrides, data=str(synth_root), results=str(results), root=str(ROOT))
        fault = fault and {**fault, "only_run": "mobilenet_300px_seed0", "below": os.getpid()}
        return subprocess.run(
            [sys.executable, "-c", code],
            env=_env(fault, tmp_path / f"{tag}.fired"),
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=900,
        )

    first = study({"how": "kill-all", "at": {"backup": [2, 2048]}}, "kill-all")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    second = study({"how": "exit", "at": {"batch": [2, 0]}}, "kernel-exit")
    assert second.returncode == 1 and "train_run.ipynb failed" in second.stderr, second.stdout + second.stderr
    third = study()
    assert third.returncode == 0, third.stdout + third.stderr
    assert "'trained': 1" in third.stdout and "'reused': 1" in third.stdout  # the run killed twice is trained once more
    store = results / "smoke" / "runs"
    (done,) = [d for d in store.iterdir() if d.name.startswith("mobilenet_300px_seed0_")]
    _same_run(done, reference)
    assert (done / "train_run.ipynb").is_file() and not list(store.glob(".*.partial"))
