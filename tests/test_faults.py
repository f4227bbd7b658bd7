"""The fault matrix: a study killed at any moment, or finding its files damaged, resumes to the
result an uninterrupted run gives, byte for byte (history, predictions, the run's key), or refuses
in one line that names the file and the fix. Never is a half-written artifact taken for a finished
one.

The faults are injected into real processes (a training run's own process, a study's runner with its
papermill kernels) by tests/faults/sitecustomize.py, which fires once and then lets the same command,
run again, be the recovery. Tiny CPU runs, with op determinism on."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, tmpfs

from alllib import backup, io
from alllib.errors import StudyError
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


@pytest.fixture(autouse=True)
def _own_temp_folder(tmp_path, monkeypatch):
    """The processes these tests kill cannot run their exit handlers, so the files they made in the temp
    folder (TensorFlow's AutoGraph sources, about 8 a process) would stay in /tmp after every test run: the
    processes each test starts keep them in its own folder, which pytest removes."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))


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


# ---------------------------------------------------------------- damaged files, found afterwards


def _fake_run(study, seed=0, text="x" * 100):
    """A finished run written through the real store, its training replaced by a fake one."""

    def fake_fit(cfg, spec, table, out_dir, data_info, verbose=2, backup_dir=None):
        for name in runs.ARTIFACTS:
            (out_dir / name).write_text(text)
        return {
            "backbone": spec.backbone,
            "display": "MobileNet",
            "input_size": spec.size,
            "seed": spec.seed,
            "split_seed": spec.split_seed,
        }

    real, runs.fit = runs.fit, fake_fit
    try:
        return runs.train_or_load(study, "mobilenet", 300, seed)
    finally:
        runs.fit = real


@pytest.fixture()
def small_study(synth_root, tmp_path):
    from alllib.study.prepare import prepare

    return prepare("smoke", RUN, data_dir=str(synth_root), results_dir=tmp_path / "results", progress=False)


@pytest.mark.parametrize("name", ["model.keras", "predictions.csv", "history.csv"])
def test_a_finished_run_damaged_on_disk_is_noticed_set_aside_and_trained_again(small_study, name, capsys):
    d = _fake_run(small_study)
    assert runs.damage(d) == [] and runs.is_complete(d, hashes=True)
    record = json.loads((d / "run.json").read_text())["artifacts"][name]
    assert record == {"bytes": 100, "sha256": io.sha256(d / name)}
    (d / name).write_text("x" * 40)  # truncated
    assert runs.damage(d) == [f"{name}: 40 bytes, 100 recorded"] and not runs.is_complete(d)
    (d / name).write_text("y" * 100)  # same size, other bytes: only the hash sees it
    assert runs.is_complete(d) and runs.damage(d, hashes=True) == [f"{name}: sha256 differs from the one recorded"]
    table = runs.verify_runs(small_study.results)
    assert list(table["state"]) == ["damaged"] and name in table["problems"][0]
    (d / name).write_text("x" * 40)
    again = _fake_run(small_study, text="z" * 100)  # reuse notices, sets it aside, trains again
    assert again == d and (d / name).read_text() == "z" * 100
    (aside,) = (d.parent / ".damaged").iterdir()
    assert (aside / name).read_text() == "x" * 40  # nothing destroyed
    assert f"run {d.name} is damaged ({name}: 40 bytes, 100 recorded): moved to {aside}" in capsys.readouterr().out


def test_verify_runs_on_the_command_line_names_the_damaged_run(small_study):
    d = _fake_run(small_study)
    cmd = [sys.executable, "-m", "alllib", "verify", "--runs", str(small_study.results)]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0 and "sound" in ok.stdout
    (d / "model.keras").write_text("")
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 1 and d.name in bad.stdout and "model.keras: 0 bytes, 100 recorded" in bad.stdout


def test_a_cut_off_run_json_is_not_a_finished_run(small_study):
    d = _fake_run(small_study)
    text = (d / "run.json").read_text()
    (d / "run.json").write_text(text[: len(text) // 2])
    assert runs.damage(d) == ["run.json: cut off or overwritten (not a JSON object)"]
    assert runs.load_runs(small_study.runs_dir) == []
    with pytest.raises(StudyError, match=f"{d / 'run.json'} is damaged .*run the study again"):
        runs.load_run(d)
    assert _fake_run(small_study) == d and runs.is_complete(d)  # trained again, the cut one set aside


def _study_of_seeds(synth_root, tmp_path, seeds):
    from alllib.study.prepare import prepare

    return prepare(
        "smoke",
        RUN + [f"runs={{300: {seeds}}}"],
        data_dir=str(synth_root),
        results_dir=tmp_path / "results",
        progress=False,
    )


def test_a_runs_name_holds_the_subject_split_it_trains_on(synth_root, tmp_path):
    """With one split for every seed (`split: fixed`), the split is the first seed's: a study of seeds [2] trains
    seed 2 on another split than a study of seeds [0, 2], so the two runs must not share a name (they did)."""
    from_0, from_2 = _study_of_seeds(synth_root, tmp_path, [0, 2]), _study_of_seeds(synth_root, tmp_path, [2])
    assert (from_0.split_seed(2), from_2.split_seed(2)) == (0, 2)
    assert from_0.run_dir("mobilenet", 300, 2) != from_2.run_dir("mobilenet", 300, 2)
    assert from_0.run_dir("mobilenet", 300, 2) == _study_of_seeds(synth_root, tmp_path, [0, 1, 2]).run_dir(
        "mobilenet", 300, 2
    )
    # runs on seed 0's split, as every shipped profile's, keep the names they had: finished runs stay reused
    key = runs.run_key(from_0.cfg, "mobilenet", 300, 2, "x")
    assert "split_seed" not in key and runs.run_key(from_2.cfg, "mobilenet", 300, 2, "x") == {**key, "split_seed": 2}


def _stored_under_the_old_name(synth_root, tmp_path):
    """A store written before names held the split: the seed-2 run of a study of seeds [2] (its split: seed 2's)
    under the name the seed-2 run of a study of seeds [0, 2] has (its split: seed 0's), its key as it was then."""
    from_0, from_2 = _study_of_seeds(synth_root, tmp_path, [0, 2]), _study_of_seeds(synth_root, tmp_path, [2])
    d = from_0.run_dir("mobilenet", 300, 2)
    os.replace(_fake_run(from_2, seed=2), d)
    info = json.loads((d / "run.json").read_text())
    del info["key"]["split_seed"]
    (d / "run.json").write_text(json.dumps(info))
    return from_0, d


OTHER_SPLIT = (
    "run.json: trained on the subject split of seed 2, but its name is that of the run on seed 0's split "
    "(stored by a study of other seeds before run names held the split)"
)


def test_a_run_stored_on_another_split_is_set_aside_and_trained_again(synth_root, tmp_path, capsys):
    study, d = _stored_under_the_old_name(synth_root, tmp_path)
    assert runs.damage(d) == [OTHER_SPLIT] and not runs.is_complete(d)
    assert d not in [r.folder for r in study.runs(require_all=False)]  # the chapters do not read it
    [row] = runs.verify_runs(study.results).to_dict("records")
    assert row == {"run": d.name, "state": "damaged", "problems": OTHER_SPLIT}
    assert _fake_run(study, seed=2) == d and json.loads((d / "run.json").read_text())["split_seed"] == 0
    assert runs.damage(d) == []  # trained again on its own split, under its own name
    [aside] = (d.parent / ".damaged").iterdir()  # kept, not deleted
    assert aside.name.startswith(d.name) and json.loads((aside / "run.json").read_text())["split_seed"] == 2
    assert OTHER_SPLIT in capsys.readouterr().out


def test_the_runner_does_not_reuse_a_run_stored_on_another_split(monkeypatch, synth_root, tmp_path):
    from alllib.study import runner

    study, d = _stored_under_the_old_name(synth_root, tmp_path)
    (d / f"{runner.TRAIN_NOTEBOOK}.ipynb").write_text("{}")  # a finished run with its page: reusable but for its split
    assert not runner.reusable(d)
    executed = []

    def train_in_kernel(run, params, root, output, env, log, hashes=False):
        executed.append(run.name)
        return True

    monkeypatch.setattr(runner, "train_in_kernel", train_in_kernel)
    assert runner.run_matrix(study, {}, Path("."), [], None)["reused"] == 0
    assert d.name in executed


def test_cut_off_study_and_chapter_records_are_refused_by_name(small_study, tmp_path):
    from alllib.results import summaries
    from alllib.use.predict import open_study

    (tmp_path / "study.json").write_text('{"profile": {"na')
    with pytest.raises(StudyError, match=f"{tmp_path / 'study.json'} is damaged .*run the study again"):
        open_study(tmp_path)
    for kind, chapter in summaries.WRITTEN_BY.items():
        path = summaries.path_of(kind, tmp_path)
        path.write_text('{"schema_version": 3, "cut')
        with pytest.raises(StudyError, match=f"{path} is damaged .*CHAPTER={chapter}"):
            summaries.read(kind, tmp_path)
        nb = (ROOT / "notebooks" / f"{chapter}.ipynb").read_text()
        assert "summaries.write" in nb  # the chapter named is the one that writes it


# ---------------------------------------------------------------- two processes, one run

TWO = """
import os, sys, time
from alllib.study import runs
from alllib.study.prepare import prepare

def fake_fit(cfg, spec, table, out_dir, data_info, verbose=2, backup_dir=None):
    with open({counter!r}, "a") as fh:
        fh.write(f"{{os.getpid()}}\\n")
    time.sleep(6)
    for name in runs.ARTIFACTS:
        (out_dir / name).write_text("x")
    return {{}}

runs.fit = fake_fit
study = prepare("smoke", {overrides!r}, data_dir={data!r}, results_dir={results!r}, progress=False)
print("RUN", runs.train_or_load(study, "mobilenet", 300, 0), flush=True)
"""


def test_two_processes_started_at_once_train_a_run_once(synth_root, tmp_path):
    counter = tmp_path / "trained"
    code = TWO.format(counter=str(counter), overrides=RUN, data=str(synth_root), results=str(tmp_path / "r"))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(counter.read_text().split()) == 1  # trained once
    assert len({o.split("RUN ")[1] for o in outs}) == 1  # both answer the same run
    assert sum("is being trained by another process: waiting for it" in o for o in outs) == 1


def test_leftovers_are_removed_only_where_no_live_process_holds_the_run(small_study):
    store = small_study.runs_dir
    store.mkdir(parents=True)
    mine, theirs = store / ".mobilenet_300px_seed0_aa.x1.partial", store / ".vgg16_300px_seed0_bb.x2.partial"
    mine.mkdir(), theirs.mkdir()
    lock = runs.run_lock(store / "vgg16_300px_seed0_bb")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from filelock import FileLock; import time; lock = FileLock({lock.lock_file!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runs.remove_leftovers(store) == [mine]
        assert theirs.is_dir() and not mine.exists()
    finally:
        holder.kill()
        holder.wait()
    assert runs.remove_leftovers(store) == [theirs]  # its process is gone


def test_two_studies_write_the_book_one_at_a_time(tmp_path):
    from alllib.pipeline import book_lock

    code = (
        f"from pathlib import Path; from alllib.pipeline import book_lock\n"
        f"with book_lock(Path({str(tmp_path)!r})):\n    print('in', flush=True); import time; time.sleep(30)"
    )
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "in"
        t0 = time.time()
        other.kill()  # its lock dies with it; a live one would make us wait
        other.wait()
        with book_lock(tmp_path):
            assert time.time() - t0 < 10
    finally:
        other.kill()


def test_a_held_lock_is_waited_for_saying_so_once(tmp_path, capsys):
    lock = tmp_path / "x.lock"
    code = (
        f"from alllib import io\nwith io.held({str(lock)!r}, 'never'):\n"
        "    print('in', flush=True); import time; time.sleep(3)"
    )
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "in"
        t0 = time.time()
        with io.held(lock, "[x] waiting for the other"):
            waited = time.time() - t0
        assert waited > 1  # it let go after its three seconds
        assert capsys.readouterr().out == "[x] waiting for the other\n"
        with io.held(lock, "not said: nobody holds it"):
            pass
        assert capsys.readouterr().out == ""
    finally:
        other.kill()


# ---------------------------------------------------------------- the disk, permissions


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 1 MB tmpfs, mounted and unmounted by the test (root only)."""
    with tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def test_a_full_disk_is_named_in_one_line_and_leaves_nothing_that_looks_complete(tiny_disk):
    frame = pd.DataFrame({"x": range(300_000)})
    with pytest.raises(StudyError, match=f"cannot write {tiny_disk / 'out.csv'}: the disk is full; .* MB free"):
        io.write_csv(tiny_disk / "out.csv", frame)
    assert list(tiny_disk.iterdir()) == []
    with pytest.raises(StudyError, match=f"cannot write {tiny_disk}/.run.*partial/predictions.csv: the disk is full"):
        with io.atomic_dir(tiny_disk / "run") as tmp:
            io.write_csv(tmp / "predictions.csv", frame)
    assert list(tiny_disk.iterdir()) == []


def test_written_files_respect_the_umask(tmp_path):
    io.write_text(tmp_path / "a.txt", "a")
    with io.atomic_dir(tmp_path / "run") as tmp:
        (tmp / "f").write_text("f")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~io.UMASK
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o777 & ~io.UMASK


def _job_task(folder: Path) -> int:
    """The pid of the submitit task process working in `folder` (the one the controller signals)."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and any(str(folder).encode() in c for c in cmd):
            return int(proc.name)
    raise AssertionError(f"no submitit task works in {folder}")


def test_a_job_signalled_before_its_time_runs_out_is_requeued_and_resumes_mid_run(synth_root, reference, tmp_path):
    """The signal submitit has Slurm send before --time runs out (USR2, which submitit's local
    controller forwards to its task as the time-out nears, as in submitit's own test_requeuing), sent
    to the task while the run is inside epoch 2: the job checkpoints, is requeued, and the run resumes
    from its last finished epoch, to the uninterrupted result."""
    import submitit

    from alllib.study import runner
    from alllib.study.prepare import prepare

    overrides = [*RUN, "runs={300: [0]}", "executor.kind=submitit_local"]
    study = prepare("smoke", overrides, data_dir=str(synth_root), results_dir=tmp_path / "r", progress=False)
    d = study.run_dir("mobilenet", 300, 0)
    params = runner.run_params(
        runner.notebook_params(study, "smoke", overrides, str(synth_root)), "mobilenet", 300, 0, d
    )
    task = runner.TrainingJob(ROOT, params, tmp_path / "nb.ipynb", d, study.cfg.executor.model_dump())
    stall = {"marker": str(tmp_path / "stalled"), "how": "sleep", "seconds": 300, "at": {"batch": [1, 0]}}
    executor = submitit.LocalExecutor(tmp_path / "jobs", max_num_timeout=2)
    executor.update_parameters(timeout_min=20)
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "ALLLIB_FAULT")}
    os.environ.update({"PYTHONPATH": _env(None)["PYTHONPATH"], "ALLLIB_FAULT": json.dumps(stall)})
    try:
        job = executor.submit(task)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    deadline = time.time() + 300
    while not (tmp_path / "stalled").exists():  # epoch 1 is backed up, the run stalls inside epoch 2
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.5)
    assert backup.resume_epoch(runs.backup_dir(d)) == 1
    os.kill(_job_task(tmp_path / "jobs"), signal.SIGUSR2)
    assert job.result() == d.name
    log = job.stdout() + (job.stderr() or "")
    assert "Requeued job" in log, log[-3000:]
    assert "resuming mobilenet 300px seed 0 after epoch 1" in log
    _same_run(d, reference)


def test_a_full_disk_during_a_runs_save_is_named_and_nothing_is_reused(tiny_disk, synth_root):
    """The run store on a disk too small for the model, in the run's own process (Keras leaves an h5py
    file half-open when its write fails): one line naming the path, and no run left that looks finished."""
    rc, out = _train(synth_root, tiny_disk)
    assert rc != 0, out  # Keras leaves an h5py file half-open: the process may crash on exit after the refusal
    store = tiny_disk / "smoke" / "runs"
    assert re.search(f"StudyError: cannot write {store}/.*: the disk is full; .* MB free there", out), out[-3000:]
    assert runs.load_runs(store) == [] and not list(store.glob("*.partial"))


def test_a_corrupt_image_that_appears_between_two_runs_of_the_study_is_refused_by_name(synth_copy, tmp_path):
    from alllib.errors import DataError
    from alllib.pipeline import check_before_running
    from alllib.study.prepare import prepare

    check_before_running(prepare("smoke", RUN, data_dir=str(synth_copy), results_dir=tmp_path, progress=False))
    victim = sorted((synth_copy / "training_data" / "fold_0" / "hem").iterdir())[0]
    original = victim.read_bytes()
    data = bytearray(original)
    data[:2] = b"XX"  # the same size, another header: the data fingerprint alone would not see it
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match=str(victim)):
        check_before_running(prepare("smoke", RUN, data_dir=str(synth_copy), results_dir=tmp_path, progress=False))
    victim.write_bytes(original)  # mended; then a new file appears
    newcomer = victim.with_name(f"UID_H99_1_1_hem{victim.suffix}")  # a new image, not a picture at all
    newcomer.write_bytes(b"not an image")
    with pytest.raises(DataError, match=str(newcomer)):
        check_before_running(prepare("smoke", RUN, data_dir=str(synth_copy), results_dir=tmp_path, progress=False))
