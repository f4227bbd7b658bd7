"""`make test-cluster`: the smoke study through a real single-node Slurm (tools/slurm_local.sh,
started and stopped by tools/test_cluster.sh). Skipped where no Slurm answers (`make test`)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import copy_project

pytestmark = pytest.mark.cluster


def _slurm_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "idle" in out.stdout


@pytest.mark.skipif(not os.environ.get("SLURM_CONF") or not _slurm_up(), reason="no Slurm: run make test-cluster")
def test_smoke_study_through_slurm(tmp_path):
    root = copy_project(tmp_path)
    results = tmp_path / "results"
    job_options = ["gpus_per_job=0", "cpus_per_job=1", "mem_gb=4", "time_min=30", "array_parallelism=2"]
    cmd = [sys.executable, "-m", "alllib", "study", "--profile", "smoke", "--executor", "slurm"]
    cmd += ["--results", str(results), "--root", str(root), "--set", "poll_seconds=2"]
    for opt in job_options:
        cmd += ["--set", opt]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000)
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (results / "smoke" / "runs").glob("*/run.json")]
    assert len(runs) == 15 and all(r.executor["kind"] == "slurm" for r in runs)
    job_ids = sorted(r.executor["slurm_job_id"] for r in runs)
    assert len(set(job_ids)) == 15  # one Slurm job per run
    arrays = {r.executor["slurm_array_job_id"] for r in runs}
    assert len(arrays) == 1  # one job array
    assert (root / "_build" / "html" / "index.html").is_file()
    print(
        "Slurm job ids:",
        ", ".join(f"{r.executor['slurm_array_job_id']}_{r.executor['slurm_array_task_id']}" for r in runs),
    )


@pytest.mark.skipif(not os.environ.get("SLURM_CONF") or not _slurm_up(), reason="no Slurm: run make test-cluster")
def test_a_refused_job_array_is_named(tmp_path):
    import functools

    from alllib.errors import StudyError
    from alllib.study import cluster
    from alllib.study.profile import Executor

    opts = Executor(kind="slurm", partition="no_such_partition", gpus_per_job=0, cpus_per_job=1, mem_gb=1)
    with pytest.raises(
        StudyError, match="(?s)Slurm refused the job array of 1 training runs.*invalid partition.*executor.partition"
    ):
        cluster.run_jobs(opts, tmp_path, {"run": functools.partial(sum, [1])}, {"run": "-"})
