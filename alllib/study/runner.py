"""The study runner: data -> data-exploration notebook -> the run matrix of training notebooks ->
the analysis notebooks -> the book. `make book` calls `python -m alllib study`.

Every notebook is executed by papermill in its own kernel (a subprocess, so that several GPUs can
each take one training run at a time). A finished training run is recognised by its key (backbone,
size, seed, profile settings, data fingerprint) and reused; an interrupted study resumes where it
stopped; a failed notebook stops the study with its path and failing cell and is kept for reading.
Everything that can be checked before the first notebook (settings, the image files) is.
"""

from __future__ import annotations

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


class TrainingJob(submitit.helpers.Checkpointable):
    """One training run as a submitted job (executor slurm or submitit_local): the same papermill
    execution of the per-run notebook as a local run, into the same atomic run store. A preempted or
    timed-out Slurm job is requeued (submitit's checkpointing calls this object again) and the run
    resumes from its last finished epoch (the backup of `training.fit`)."""

    def __init__(self, root: Path, params: dict, output: Path, run_dir: Path, executor: dict):
        self.root, self.params, self.output, self.run_dir, self.executor = root, params, output, run_dir, executor

    def __call__(self) -> str:

        env = {JOB_ENV: json.dumps(self.executor)}
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # TensorFlow sized for the job's CPUs, not the node's
            cpus = os.environ["SLURM_CPUS_PER_TASK"]
            env.update({"TF_NUM_INTRAOP_THREADS": cpus, "TF_NUM_INTEROP_THREADS": cpus})
        train_in_kernel(self.run_dir, self.params, self.root, self.output, env, sys.stdout)
        return self.run_dir.name


def _submit_matrix(study: Study, todo: list, base_params: dict, root: Path, reused: int) -> None:

    opts = study.cfg.executor
    notebooks = study.runs_dir / ".notebooks"
    tasks, failed = {}, {}
    for bb, size, seed, d in todo:
        params = run_params(base_params, bb, size, seed, d)
        tasks[d.name] = TrainingJob(root, params, notebooks / f"{d.name}.ipynb", d, opts.model_dump())
        failed[d.name] = notebooks / f"{d.name}.failed.ipynb"
    print(f"[study] {len(todo)} training jobs through submitit ({opts.kind}); logs in {study.results / 'jobs'}")
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


def run_matrix(
    study: Study, base_params: dict, root: Path, gpus: list[str], log, jobs: int = 1, hashes: bool = False
) -> dict:
    """Execute the training notebook for every run of the matrix that is not finished yet (or is
    damaged: sizes always checked, sha256 with `hashes`). With the executor `local`: with GPUs, one
    run per GPU at a time; on CPU, `jobs` runs side by side (on a 2-core machine two kernels overlap
    one run's single-threaded graph tracing with the other's training). With `slurm` (or
    `submitit_local`): one job per run through submitit. Each run is trained under its lock, so two
    studies on one results folder never train the same run twice."""
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
    bar = tqdm(
        total=len(study.matrix()),
        initial=reused,
        desc="training runs",
        unit="run",
        file=sys.stdout,
        dynamic_ncols=False,
        ncols=100,
    )
    slots: queue.Queue = queue.Queue()
    for g in gpus or [None] * max(1, jobs):
        slots.put(g)
    errors: list[Exception] = []
    lock = threading.Lock()
    workers = len(gpus) if gpus else max(1, jobs)
    threads = cpu_threads(workers) if not gpus else {}

    def one(job):
        bb, size, seed, d = job
        if errors:
            return
        gpu = slots.get()
        try:
            train_in_kernel(
                d,
                run_params(base_params, bb, size, seed, d),
                root,
                study.runs_dir / ".notebooks" / f"{d.name}.ipynb",
                {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else threads or None,
                log,
                hashes,
            )
        except Exception as exc:  # collected and re-raised after the workers stop
            with lock:
                errors.append(exc)
        finally:
            slots.put(gpu)
            with lock:
                bar.set_postfix_str(f"{bb} {size}px seed {seed}")
                bar.update(1)

    if workers == 1:
        for job in todo:
            one(job)
            if errors:
                break
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, todo))
    bar.close()
    if errors:
        raise errors[0]
    return {"trained": len(todo), "reused": reused}
