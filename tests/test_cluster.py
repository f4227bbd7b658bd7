"""The run matrix through submitit : the Slurm code path with submitit's local executor
standing in for the cluster, job failures, Ctrl-C, and job states read from squeue. The real
single-node Slurm runs in `make test-cluster` (tests/test_slurm.py)."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from alllib.errors import StudyError
from alllib.study import cluster, runner
from alllib.study.prepare import prepare

TINY = ["backbones=[mobilenet,vgg16]", "runs={300: [0]}", "poll_seconds=0.5"]


def _opts(**kw):
    from alllib.study.profile import Executor

    return Executor(**{"kind": "submitit_local", "poll_seconds": 0.2, **kw})


def test_run_matrix_packed_into_one_job_through_submitit_is_reused_locally(synth_root, tmp_path):
    """executor.runs_per_job = 2: both runs of the matrix train side by side in one submitted job, each its
    own papermill notebook in the run store (the unpacked path, one job per run, is the e2e smoke run's)."""
    packed = [*TINY, "executor.kind=submitit_local", "executor.runs_per_job=2"]
    study = prepare("smoke", packed, str(synth_root), tmp_path, progress=False)
    params = runner.notebook_params(study, "smoke", packed, str(synth_root))
    assert runner.run_matrix(study, params, ROOT, [], None) == {"trained": 2, "reused": 0}
    runs = study.runs()
    assert len(runs) == 2 and {r.executor["kind"] for r in runs} == {"submitit_local"}
    assert all((r.folder / "train_run.ipynb").is_file() for r in runs)
    logs = list((study.results / "jobs").glob("*/*_log.out"))
    assert len(logs) == 1 and logs[0].read_text().count("==== ") == 2  # one job, which executed both notebooks
    # the same runs under the local executor: the key does not depend on where a run ran
    local = prepare("smoke", TINY, str(synth_root), tmp_path, progress=False)
    assert [local.run_dir(b, s, r) for b, s, r in local.matrix()] == [
        study.run_dir(b, s, r) for b, s, r in study.matrix()
    ]
    assert runner.run_matrix(local, runner.notebook_params(local, "smoke", TINY, str(synth_root)), ROOT, [], None) == {
        "trained": 0,
        "reused": 2,
    }


def test_a_failed_job_is_named_and_the_others_finish(tmp_path):
    tasks = {
        "good_run": functools.partial(sum, [1, 2]),
        "bad_run": functools.partial(int, "not a number"),
        "late_run": functools.partial(time.sleep, 1),
    }
    failed = {n: tmp_path / f"{n}.failed.ipynb" for n in tasks}
    with pytest.raises(StudyError) as err:
        cluster.run_jobs(_opts(array_parallelism=2), tmp_path / "jobs", tasks, failed)
    msg = str(err.value)
    assert msg.startswith("1 of 3 training jobs failed")
    assert "- bad_run: local job " in msg and "_log.err" in msg and "bad_run.failed.ipynb" in msg
    assert "invalid literal for int()" in msg and "good_run" not in msg and "late_run" not in msg
    results = sorted(p.name for p in (tmp_path / "jobs").glob("*/*_result.pkl"))
    assert len(results) == 3  # every job ran to its end, the failed one included


@pytest.mark.parametrize("inherited", ["handled", "ignored"])
def test_ctrl_c_cancels_its_own_jobs_only(tmp_path, monkeypatch, inherited):
    """Also when the study inherited an ignored SIGINT (started with `&` from a script): the jobs it
    starts must still answer submitit's cancel(), which sends SIGINT."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    given = signal.SIG_IGN if inherited == "ignored" else signal.default_int_handler
    before = signal.signal(signal.SIGINT, given)
    try:
        submitted = []
        real_submit = cluster.make_executor

        def recording_executor(opts, folder):
            ex = real_submit(opts, folder)
            submit = ex.submit

            def keep(*a, **k):
                job = submit(*a, **k)
                submitted.append(job)
                return job

            ex.submit = keep
            return ex

        monkeypatch.setattr(cluster, "make_executor", recording_executor)
        calls = {"n": 0}

        def interrupt(_seconds):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt

        monkeypatch.setattr(cluster, "_wait", interrupt)
        tasks = {f"run{i}": functools.partial(time.sleep, 60) for i in range(3)}
        with pytest.raises(KeyboardInterrupt):
            cluster.run_jobs(_opts(array_parallelism=2), tmp_path / "jobs", tasks, dict.fromkeys(tasks, "-"))
        assert len(submitted) == 2  # the cap: the third was never started
        monkeypatch.undo()
        deadline = time.time() + 20
        while time.time() < deadline and any(j.state == "RUNNING" for j in submitted):
            time.sleep(0.2)
        assert all(j.state != "RUNNING" for j in submitted)
        assert bystander.poll() is None  # a process the study did not start is untouched
        assert signal.getsignal(signal.SIGINT) == given  # the study's own process is left as it was
    finally:
        signal.signal(signal.SIGINT, before)
        bystander.kill()


def test_job_states_come_from_squeue_and_result_files(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\nprintf '41_0 PENDING\\n41_1 RUNNING\\n'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(cluster, "ENDED_GRACE_S", 0.0)

    class Paths:
        def __init__(self, name):
            self.result_pickle = tmp_path / f"{name}_result.pkl"

    class Job:
        def __init__(self, job_id):
            self.job_id, self.paths = job_id, Paths(job_id)

    jobs = {"a": Job("41_0"), "b": Job("41_1"), "c": Job("41_2")}
    states = cluster.Tracker("slurm").states(jobs)
    assert states["a"] == ("queued", "PENDING") and states["b"] == ("running", "RUNNING")
    assert states["c"][0] == "failed" and "ended without a result" in states["c"][1]
    assert cluster.slurm_queue([]) == {}


def test_executor_record_names_the_slurm_job(monkeypatch):
    monkeypatch.setenv(cluster.JOB_ENV, json.dumps({"kind": "slurm", "partition": "gpu"}))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert cluster.executor_record() == {
        "kind": "slurm",
        "partition": "gpu",
        "slurm_job_id": "77",
        "slurm_restart_count": "1",
    }
    monkeypatch.delenv(cluster.JOB_ENV)
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    assert cluster.executor_record() == {"kind": "local"}


def test_slurm_without_sbatch_is_refused_with_the_way_out(tmp_path, monkeypatch):
    from alllib.errors import ConfigError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="`sbatch` is not on the PATH.*tools/slurm_local.sh"):
        cluster.make_executor(_opts(kind="slurm"), tmp_path)
