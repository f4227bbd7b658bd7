"""The study runner: data -> data-exploration notebook -> the run matrix of training notebooks ->
the analysis notebooks -> the book. `make book` calls `python -m alllib study`.

Every notebook is executed by papermill in its own kernel (a subprocess, so that several GPUs can
each take one training run at a time). A finished training run is recognised by its key (backbone,
size, seed, profile settings, data fingerprint) and reused; an interrupted study resumes where it
stopped; a failed notebook is kept for reading, and once the other runs have had their turn the study
stops naming each failed run, its notebook and its failing cell.
Everything that can be checked before the first notebook (settings, the image files) is.
"""

from __future__ import annotations

import graphlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit
import yaml

from alllib.errors import ConfigError, StudyError
from alllib.study.cluster import JOB_ENV, run_jobs
from alllib.study.prepare import PACKAGE_ROOT, Study
from alllib.study.runs import LOCK_HELD, damage, holding, is_complete, set_aside

GENERATED = Path("book") / "_generated"
TRAIN_NOTEBOOK = "train_run"  # the per-run template: one executed copy per run of the matrix


def book_chapters(root: Path = PACKAGE_ROOT) -> tuple[str, ...]:
    """The chapter notebooks, read from the book's table of contents (`_toc.yml`, the one list of them):
    each `book/_generated/<NN>_<name>` entry, in the order they run, by their number."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            files.append(node.get("file", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    prefix = GENERATED.as_posix() + "/"
    names = [f[len(prefix) :] for f in files if f.startswith(prefix) and re.fullmatch(r"\d\d_\w+", f[len(prefix) :])]
    return tuple(sorted(names))


CHAPTERS = book_chapters()
DATA_NOTEBOOK = CHAPTERS[0]  # the chapter numbered first (the data) runs before the run matrix
ANALYSIS_NOTEBOOKS = CHAPTERS[1:]  # the others read the finished runs


# ---------------------------------------------------------------- notebook execution


def _failing_cell(notebook: Path) -> str:
    """Index, error and last traceback lines of the first cell with an error output."""
    try:
        nb = json.loads(notebook.read_text())
    except Exception:
        return "an unknown cell (the notebook could not be read)"
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.get("traceback", [])[-3:]))
                return f"cell In [{cell.get('execution_count')}] ({out.get('ename')}: {out.get('evalue')})\n{tb}"
    return "an unknown cell"


def execute(notebook: str, output: Path, params: dict, root: Path, env: dict | None = None, log=None) -> None:
    """Run one notebook with papermill in a subprocess, its output streamed to `log`. On failure the
    partial notebook is kept beside `output` as `.failed.ipynb` and a StudyError names it and the
    failing cell."""
    src = root / "notebooks" / f"{notebook}.ipynb"
    if not src.is_file():
        raise StudyError(f"notebook {src} does not exist")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(src),
        str(partial),
        "-y",
        yaml.safe_dump(params),
        "--cwd",
        str(root / "notebooks"),
        "--no-progress-bar",
        "--kernel",
        "python3",
        "--log-output",
    ]
    if log is not None:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {notebook} {json.dumps(params)}\n")
        log.flush()
    proc = subprocess.run(
        cmd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=log if log is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        failed = output.with_name(output.stem + ".failed.ipynb")
        if partial.exists():
            os.replace(partial, failed)
            where = _failing_cell(failed)
        else:
            where = "start-up (no notebook was written)\n" + (proc.stdout or "")[-2000:]
        raise StudyError(
            f"notebook {src.name} failed at {where}\nThe partial notebook is kept at {failed}"
            + (f"; the full log is {log.name}" if log is not None else "")
        )
    os.replace(partial, output)
    output.with_name(output.stem + ".failed.ipynb").unlink(missing_ok=True)  # an earlier failure, now mended


# ---------------------------------------------------------------- scheduling the run matrix


def cpu_threads(jobs: int) -> dict[str, str]:
    """Environment that gives each of `jobs` side-by-side CPU training kernels an equal share of the
    cores. TensorFlow's default (every kernel sized for all cores) oversubscribes them: measured on
    the 2-core machine, a VGG-16 step took 2.0 s next to another kernel's graph tracing, 1.2 s with
    one thread each. Empty for a single job (TensorFlow's default then uses every core)."""
    if jobs <= 1:
        return {}
    per_job = max(1, (os.cpu_count() or 1) // jobs)
    return {"TF_NUM_INTRAOP_THREADS": str(per_job), "TF_NUM_INTEROP_THREADS": str(per_job)}


def notebook_params(study: Study, profile: str, overrides=(), data_dir=None) -> dict:
    """The papermill parameters every notebook of `study` gets (the same the user gave)."""
    return {
        "profile": profile,
        "overrides": list(overrides or ()),
        "data_dir": data_dir,
        "results_dir": str(study.results_root),
    }


def run_params(base_params: dict, backbone: str, size: int, seed: int, run_dir: Path) -> dict:
    """The papermill parameters of one training run: the study's, the run's coordinates, and the run
    itself (its id, as the runner resolved it), which the kernel trains into or refuses."""
    return {**base_params, "backbone": backbone, "input_size": size, "seed": seed, "run_id": run_dir.name}


# a run that shares its GPU takes memory as it grows, not all of it up front (TensorFlow, and JAX under Keras 3)
GROWTH_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


class TrainingJob(submitit.helpers.Checkpointable):
    """One training run as a submitted job (executor slurm or submitit_local): the same papermill
    execution of the per-run notebook as a local run, into the same atomic run store. A preempted or
    timed-out Slurm job is requeued (submitit's checkpointing calls this object again) and the run
    resumes from its last finished epoch (the backup of `training.fit`)."""

    def __init__(self, root: Path, params: dict, output: Path, run_dir: Path, executor: dict):
        self.root, self.params, self.output, self.run_dir, self.executor = root, params, output, run_dir, executor

    def __call__(self) -> str:
        self._train(share=1)
        return self.run_dir.name

    def _packed(self) -> None:  # one of a PackedTrainingJob's runs
        self._train(share=self.executor.get("runs_per_job", 1))

    def _train(self, share: int) -> None:
        env = {JOB_ENV: json.dumps(self.executor)}
        if share > 1:
            env.update(GROWTH_ENV)  # the job's GPU is shared: each run takes memory as it grows
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # TensorFlow sized for its share of the job's CPUs
            cpus = str(max(1, int(os.environ["SLURM_CPUS_PER_TASK"]) // share))
            env.update({"TF_NUM_INTRAOP_THREADS": cpus, "TF_NUM_INTEROP_THREADS": cpus})
        train_in_kernel(self.run_dir, self.params, self.root, self.output, env, sys.stdout)


class PackedTrainingJob(submitit.helpers.Checkpointable):
    """Several training runs as one submitted job (`executor.runs_per_job`): each its own papermill notebook,
    trained side by side on the job's GPU(s) (memory taken as it grows) into the same atomic run store.
    Requeued (preempted or timed out), the job is called again: its finished runs are reused and the
    others resume from their last finished epoch. A failed run does not stop the others; the job then
    fails, naming it."""

    def __init__(self, jobs: list[TrainingJob]):
        self.jobs = jobs

    def __call__(self) -> str:
        failures = schedule(self.jobs, [None] * len(self.jobs), lambda job, _slot: job._packed())
        if failures:
            raise StudyError(
                f"{len(failures)} of {len(self.jobs)} runs of this job failed:\n"
                + "\n".join(f"- {job.run_dir.name}: {exc}" for job, exc in failures)
            )
        return ",".join(job.run_dir.name for job in self.jobs)


def packs(todo: list, per_job: int) -> list[list]:
    """The runs to do in jobs of `per_job` runs, in the matrix's order (the last job may hold fewer)."""
    return [todo[i : i + per_job] for i in range(0, len(todo), per_job)]


def _submit_matrix(study: Study, todo: list, base_params: dict, root: Path, reused: int) -> None:

    opts = study.cfg.executor
    notebooks = study.runs_dir / ".notebooks"
    tasks, failed = {}, {}
    for pack in packs(todo, opts.runs_per_job):
        one = [
            TrainingJob(
                root, run_params(base_params, bb, size, seed, d), notebooks / f"{d.name}.ipynb", d, opts.model_dump()
            )
            for bb, size, seed, d in pack
        ]
        name = " + ".join(d.name for *_, d in pack)
        tasks[name] = one[0] if len(one) == 1 else PackedTrainingJob(one)
        failed[name] = ", ".join(str(notebooks / f"{d.name}.failed.ipynb") for *_, d in pack)
    per = f", {opts.runs_per_job} runs per job" if opts.runs_per_job > 1 else ""
    print(
        f"[study] {len(todo)} training runs in {len(tasks)} jobs through submitit ({opts.kind}{per}); "
        f"logs in {study.results / 'jobs'}"
    )
    run_jobs(opts, study.results / "jobs", tasks, failed, initial=reused)


def reusable(d: Path, hashes: bool = False) -> bool:
    """A finished, sound run with its executed notebook (its book page)."""
    return is_complete(d, hashes) and (d / f"{TRAIN_NOTEBOOK}.ipynb").is_file()


def train_in_kernel(d: Path, params: dict, root: Path, output: Path, env: dict | None, log, hashes=False) -> bool:
    """Execute the training notebook of run `d` while holding the run's lock (the kernel is told it
    holds it), unless, once the lock is held, the run turns out finished: another process trained it
    meanwhile. A damaged run is set aside first. Returns whether the notebook was executed."""
    with holding(d):
        if reusable(d, hashes):
            return False
        if d.exists():
            problems = damage(d, hashes)
            if problems:
                set_aside(d, problems)
        execute(TRAIN_NOTEBOOK, output, params, root, env={**(env or {}), LOCK_HELD: d.name}, log=log)
        os.replace(output, d / f"{TRAIN_NOTEBOOK}.ipynb")  # the kernel trained into d: the same run_dir
        return True


def slots_for(gpus: list[str], runs_per_gpu: int = 1, jobs: int = 1) -> list[str | None]:
    """The places a training run can take: each GPU `runs_per_gpu` times, the GPUs taken in turn (0, 1, 0, 1, ...)
    so that runs spread over the GPUs before they share one; without GPUs, `jobs` CPU places (None)."""
    if runs_per_gpu < 1 or jobs < 1:
        raise ConfigError(f"runs per GPU ({runs_per_gpu}) and jobs ({jobs}) must be at least 1")
    return [g for _ in range(runs_per_gpu) for g in gpus] if gpus else [None] * jobs


def slot_env(slot: str | None, cpu_env: dict) -> dict:
    """A kernel's environment on `slot`: on a GPU, that GPU alone, memory taken as it grows; on CPU, the
    thread share of `cpu_threads`."""
    return {"CUDA_VISIBLE_DEVICES": slot, **GROWTH_ENV} if slot is not None else dict(cpu_env)


def schedule(jobs: list, slots: list, train, done=None) -> list[tuple]:
    """Run `train(job, slot)` for every job, each on a slot no other job holds at the time, len(slots) at
    once; a job takes the next free slot when it starts and gives it back when it ends, failed or not, so a
    failed run frees its place for the next. Every job runs (one failure does not stop the others).
    `done(job, slot, error)` is called after each. Returns [(job, exception)] for the jobs that failed."""
    from concurrent.futures import ThreadPoolExecutor

    free: queue.Queue = queue.Queue()
    for slot in slots:
        free.put(slot)
    failures: list[tuple] = []
    lock = threading.Lock()

    def one(job):
        slot = free.get()
        error = None
        try:
            train(job, slot)
        except Exception as exc:  # collected and reported after every job has had its turn
            error = exc
            with lock:
                failures.append((job, exc))
        finally:
            free.put(slot)
            if done is not None:
                with lock:
                    done(job, slot, error)

    if len(slots) == 1:
        for job in jobs:
            one(job)
    else:
        with ThreadPoolExecutor(len(slots)) as pool:
            list(pool.map(one, jobs))
    return failures


def schedule_after(jobs: list, needs: dict, width: int, run) -> list[tuple]:
    """Run `run(job)` for every job, at most `width` at once, each only after the jobs it `needs` (job -> the
    jobs it waits for) have ended well; among the jobs ready, the first in `jobs`' order starts first. After a
    failure no new job starts (a job waiting for a failed one could never run); the jobs running finish.
    Returns [(job, exception)] for the jobs that failed; the jobs never started are not in it."""
    unknown = {j: sorted(set(needs.get(j, ())) - set(jobs)) for j in jobs}
    unknown = {j: u for j, u in unknown.items() if u}
    if unknown:
        raise ConfigError(f"jobs wait for jobs that are not scheduled: {unknown}")
    try:
        graphlib.TopologicalSorter({j: needs.get(j, ()) for j in jobs}).prepare()
    except graphlib.CycleError as exc:
        raise ConfigError(f"jobs wait for each other in a circle: {' -> '.join(map(str, exc.args[1]))}") from None
    pending, finished, failures = list(jobs), set(), []
    turn = threading.Condition()

    def worker():
        while True:
            with turn:
                while True:
                    if failures or not pending:
                        return
                    ready = [j for j in pending if set(needs.get(j, ())) <= finished]
                    if ready:
                        job = ready[0]
                        pending.remove(job)
                        break
                    turn.wait()  # every pending job waits for a running one
            error = None
            try:
                run(job)
            except Exception as exc:  # reported once the running jobs have finished
                error = exc
            with turn:
                if error is None:
                    finished.add(job)
                else:
                    failures.append((job, error))
                turn.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(width, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def failed_runs_error(failures: list[tuple], total: int) -> StudyError:
    """One error naming every failed run (a StudyError's own message names its notebook and failing cell)."""
    lines = [f"- {job[3].name}: {exc}" for job, exc in failures]
    return StudyError(
        f"{len(failures)} of {total} training runs failed (the other runs are in the run store):\n" + "\n".join(lines)
    )


def run_matrix(
    study: Study,
    base_params: dict,
    root: Path,
    gpus: list[str],
    log,
    jobs: int = 1,
    hashes: bool = False,
    runs_per_gpu: int | None = None,
    timed: dict | None = None,
) -> dict:
    """Execute the training notebook for every run of the matrix that is not finished yet (or is
    damaged: sizes always checked, sha256 with `hashes`). With the executor `local`: with GPUs,
    `runs_per_gpu` runs on each GPU at a time (default: the profile's executor.runs_per_gpu), each seeing
    only its GPU and taking memory as it grows; on CPU, `jobs` runs side by side (on a 2-core machine two
    kernels overlap one run's single-threaded graph tracing with the other's training). A failed run frees
    its place for the next and the others go on; the study then stops naming every failed run. With `slurm`
    (or `submitit_local`): one job per run, or per `executor.runs_per_job` runs, through submitit. Each run
    is trained under its lock, so two studies on one results folder never train the same run twice.
    `timed`, when given, receives "slots" (the number of places) and "runs": each run executed here, run id ->
    its seconds from the runner's side (papermill's start to its end), so that a study can say how much of the
    run matrix's wall time went to the runs' kernels, to what surrounds them, and to places left idle."""
    from tqdm.auto import tqdm

    todo, reused = [], 0
    for bb, size, seed in study.matrix():
        d = study.run_dir(bb, size, seed)
        if reusable(d, hashes):
            reused += 1
        else:
            todo.append((bb, size, seed, d))
    if study.cfg.executor.kind != "local":
        if gpus:
            raise ConfigError(
                f"--gpus {','.join(gpus)} places runs on this machine's GPUs, but executor.kind = "
                f"{study.cfg.executor.kind!r} submits them as jobs (set executor.gpus_per_job instead)"
            )
        if todo:
            _submit_matrix(study, todo, base_params, root, reused)
        return {"trained": len(todo), "reused": reused}
    slots = slots_for(gpus, runs_per_gpu or study.cfg.executor.runs_per_gpu, max(1, jobs))
    if timed is not None:
        timed.update(slots=len(slots), runs={})
    cpu_env = cpu_threads(len(slots)) if not gpus else {}
    bar = tqdm(
        total=len(study.matrix()),
        initial=reused,
        desc="training runs",
        unit="run",
        file=sys.stdout,
        dynamic_ncols=False,
        ncols=100,
    )

    def train(job, slot):
        bb, size, seed, d = job
        output = study.runs_dir / ".notebooks" / f"{d.name}.ipynb"
        params = run_params(base_params, bb, size, seed, d)
        t0 = time.perf_counter()
        if train_in_kernel(d, params, root, output, slot_env(slot, cpu_env) or None, log, hashes) and timed is not None:
            timed["runs"][d.name] = time.perf_counter() - t0

    def done(job, slot, error):
        bb, size, seed, _ = job
        where = "" if slot is None else f" on GPU {slot}"
        bar.set_postfix_str(f"{bb} {size}px seed {seed}{where}" + (" FAILED" if error else ""))
        bar.update(1)

    failures = schedule(todo, slots, train, done)
    bar.close()
    if failures:
        raise failures[0][1] if len(todo) == 1 else failed_runs_error(failures, len(todo))
    return {"trained": len(todo), "reused": reused}
