"""The run matrix beyond one machine: training runs as Slurm jobs through submitit.

`run_jobs` submits one job per training run (on Slurm as one job array whose `array_parallelism`
caps how many run at once), shows their progress (queued, running, done, failed), waits for all
of them, and then names every failed one with its Slurm job id, log and failed notebook. Ctrl-C
cancels the jobs it submitted, and only those. What a job does is the runner's business
(`runner.TrainingJob`); this module only knows jobs.

Job states come from `squeue` and submitit's result files, not from `sacct`: a single-node Slurm
without accounting storage has no `sacct`, and submitit then reports every state as UNKNOWN.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from alllib.errors import ConfigError, StudyError

if TYPE_CHECKING:  # names used in annotations only
    from alllib.study.profile import Executor

JOB_ENV = "ALLLIB_EXECUTOR"  # the executor settings a job's run records in its run.json
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT")
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD"}
ENDED_GRACE_S = 30.0  # a job gone from the queue gets this long for its result file to appear


@contextlib.contextmanager
def _children_answer_ctrl_c():
    """While a local job is started: a process that inherited an ignored SIGINT (started with `&`
    from a script, for example) passes that on to every child, and submitit's `cancel()`, which sends
    SIGINT, then stops nothing. Python's own handler instead is reset to the default when a child
    starts, so the jobs started here always answer Ctrl-C; afterwards this process is as it was."""
    ignored = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    )
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def executor_record() -> dict:
    """Where the current process's training run executes, for its run.json: the executor settings
    the runner passed down and, inside a Slurm job, its job id, array index and restart count."""
    record = json.loads(os.environ.get(JOB_ENV) or '{"kind": "local"}')
    record.update({k.lower(): os.environ[k] for k in SLURM_VARIABLES if k in os.environ})
    return record


def make_executor(opts: Executor, folder: Path):
    """A submitit executor for `opts` (the profile's `executor` settings): Slurm, or submitit's local
    executor for `submitit_local` (the same code path on one machine, without a cluster)."""
    import submitit

    if opts.kind == "slurm":
        if not _on_path("sbatch"):
            raise ConfigError(
                "executor.kind = 'slurm' but `sbatch` is not on the PATH: run the study on a Slurm login "
                "node, or set SLURM_CONF for a local Slurm (tools/slurm_local.sh), or use --executor local"
            )
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=opts.requeues)
        params = {
            "timeout_min": opts.time_min,
            "gpus_per_node": opts.gpus_per_job,
            "cpus_per_task": opts.cpus_per_job,
            "mem_gb": opts.mem_gb,
            "slurm_array_parallelism": opts.array_parallelism,
            "name": "alllib",
        }
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.sbatch:
            params["slurm_additional_parameters"] = dict(opts.sbatch)
        ex.update_parameters(**params)
        return ex
    if opts.kind == "submitit_local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(timeout_min=opts.time_min, gpus_per_node=0)
        return ex
    raise ConfigError(f"executor.kind = {opts.kind!r} submits no jobs: expected slurm or submitit_local")


def _on_path(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


def slurm_queue(job_ids) -> dict[str, str]:
    """Slurm state (PENDING, RUNNING, ...) of each of `job_ids` still in the queue; one squeue call."""
    masters = sorted({str(j).split("_")[0] for j in job_ids})
    if not masters:
        return {}
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(masters)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        raise StudyError(f"squeue failed ({proc.returncode}): {proc.stderr.strip()}")
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


class Tracker:
    """The state of each submitted job: queued, running, done or failed (with why)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.gone_since: dict[str, float] = {}

    def states(self, jobs: dict) -> dict[str, tuple[str, str]]:
        """name -> (state, detail) for `jobs` (name -> submitit job)."""
        queue = slurm_queue([j.job_id for j in jobs.values()]) if self.kind == "slurm" else {}
        out = {}
        for name, job in jobs.items():
            if job.paths.result_pickle.exists():
                exc = job.exception()
                out[name] = ("done", "") if exc is None else ("failed", _last_lines(str(exc)))
                continue
            if self.kind == "slurm":
                state = queue.get(str(job.job_id))
                if state is not None:
                    out[name] = ("queued" if state in QUEUED else "running", state)
                    continue
            else:
                state = job.state  # the local executor polls its process
                if state in ("RUNNING", "PENDING", "UNKNOWN"):
                    out[name] = ("running", state)
                    continue
            # gone from the queue (or its process ended) without a result file: give the file time
            first = self.gone_since.setdefault(name, time.monotonic())
            if time.monotonic() - first < ENDED_GRACE_S:
                out[name] = ("running", "ending")
            else:
                out[name] = (
                    "failed",
                    f"the job ended without a result ({state or 'not in the queue'}): killed, "
                    "out of memory, or out of requeues",
                )
        return out


def _wait(seconds: float) -> None:  # between two looks at the jobs (a test interrupts it)
    time.sleep(seconds)


def _last_lines(text: str, n: int = 6) -> str:
    """The end of a job's error: submitit's traceback comes first, the run's own error last."""
    text = text.split("\n----------------------\nYou can check full logs")[0]  # submitit's footer: the log paths
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n      ".join((["..."] if len(lines) > n else []) + lines[-n:])


def run_jobs(opts: Executor, folder: Path, tasks: dict, failed_notebook: dict, log=sys.stdout, initial: int = 0) -> int:
    """Submit `tasks` (name -> callable), wait for all of them with a progress bar, and return how
    many finished. Raises StudyError naming every failed run (its job id, log and `failed_notebook`
    path) after the others have finished; their results stay in the run store. Ctrl-C cancels the
    jobs submitted here, and only those."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ex = make_executor(opts, folder / "%j")
    names = list(tasks)
    jobs: dict = {}
    cap = opts.array_parallelism
    if opts.kind == "slurm":  # one job array; Slurm itself keeps `cap` running
        try:
            with ex.batch():
                submitted = [ex.submit(tasks[n]) for n in names]
        except Exception as exc:  # sbatch refused: a partition, a limit, a malformed option
            raise StudyError(
                f"Slurm refused the job array of {len(names)} training runs ({type(exc).__name__}: "
                f"{_last_lines(str(exc))}); check executor.partition, gpus_per_job, mem_gb, time_min and sbatch "
                "(python -m alllib settings)"
            ) from None
        jobs = dict(zip(names, submitted))
        waiting: list[str] = []
    else:  # submitit's local executor starts whatever it is given: we keep `cap` alive
        waiting = names[:]
    tracker = Tracker(opts.kind)
    bar = tqdm(total=initial + len(names), initial=initial, desc="training jobs", unit="run", file=log, ncols=100)
    finished: dict[str, tuple[str, str]] = {}
    try:
        while True:
            active = {n: j for n, j in jobs.items() if n not in finished}
            while waiting and len(active) < cap:
                n = waiting.pop(0)
                with _children_answer_ctrl_c():
                    jobs[n] = active[n] = ex.submit(tasks[n])
            states = tracker.states(active)
            for n, (state, detail) in states.items():
                if state in ("done", "failed"):
                    finished[n] = (state, detail)
                    bar.update(1)
                    print(f"[study] job {jobs[n].job_id} ({n}): {state}", file=log, flush=True)
            counts = {s: sum(v[0] == s for v in states.values()) for s in ("queued", "running")}
            n_failed = sum(v[0] == "failed" for v in finished.values())
            bar.set_postfix_str(
                f"queued {counts['queued'] + len(waiting)} · running {counts['running']} · failed {n_failed}"
            )
            if len(finished) == len(names):
                break
            _wait(opts.poll_seconds)
    except KeyboardInterrupt:
        mine = [j for n, j in jobs.items() if n not in finished]
        for j in mine:
            j.cancel(check=False)
        print(
            f"\n[study] interrupted: cancelled {len(mine)} job(s) submitted by this study: "
            f"{', '.join(str(j.job_id) for j in mine) or 'none'}",
            file=log,
            flush=True,
        )
        raise
    finally:
        bar.close()
    failures = [n for n, (state, _) in finished.items() if state == "failed"]
    if failures:
        where = "Slurm" if opts.kind == "slurm" else "local"
        lines = [
            f"- {n}: {where} job {jobs[n].job_id}; log {jobs[n].paths.stderr}; "
            f"failed notebook {failed_notebook[n]}\n      {finished[n][1]}"
            for n in failures
        ]
        raise StudyError(
            f"{len(failures)} of {len(names)} training jobs failed (the other runs are in the run store):\n"
            + "\n".join(lines)
        )
    return len(names)
