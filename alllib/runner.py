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
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit
import yaml

from . import io
from .errors import ConfigError, StudyError
from .study import PACKAGE_ROOT, Study, prepare

GENERATED = Path("book") / "_generated"
# The chapters in the order they run: data, the run matrix (the per-run template), then analysis.
DATA_NOTEBOOK = "01_data_exploration"
TRAIN_NOTEBOOK = "train_run"
ANALYSIS_NOTEBOOKS = (
    "02_fine_tuning",
    "03_ensemble_ablation",
    "04_variance",
    "05_gradcam",
    "06_results_summary",
    "07_engineering",
    "08_using_the_ensemble",
    "09_comparison",
)


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
    for_the_book(partial, output.stem)
    os.replace(partial, output)
    output.with_name(output.stem + ".failed.ipynb").unlink(missing_ok=True)  # an earlier failure, now mended


def for_the_book(path: Path, page: str | None = None) -> None:
    """Ready an executed notebook for the book, outputs untouched:
    - papermill's injected cell (this build's parameters, with local paths) is removed from the page; a run
      page states its backbone, size, seed and run id in its header instead;
    - a cell that shows a table of many columns (report.show_table) takes the page's full width;
    - each figure shown by `figures.show` gets a code cell of its own whose MyST-NB metadata makes it a
      figure: the caption under it, the alt text on the image, a target named after the page (`page`, by
      default the file's stem) and the figure."""
    from .figures import FIGURE_META
    from .report import DOWNLOAD_META

    nb = json.loads(path.read_text())
    cells = []
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
        outputs = cell.get("outputs", [])
        if any(o.get("metadata", {}).get(DOWNLOAD_META, {}).get("wide") for o in outputs) and "full-width" not in tags:
            cell["metadata"]["tags"] = cell["metadata"].get("tags", []) + ["full-width"]  # a table of many columns
        if not any(FIGURE_META in o.get("metadata", {}) for o in outputs):
            cells.append(cell)
            continue
        current = dict(cell, outputs=[])  # the cell keeps its source and the outputs before its first figure
        cells.append(current)
        for k, out in enumerate(outputs):
            meta = out.get("metadata", {}).get(FIGURE_META)
            if meta is None:
                if current is None:  # outputs after a figure: a cell of their own, made when one comes
                    current = _output_cell(cell, f"{k}-after", [], {}, "# outputs of the cell above, after its figure")
                    cells.append(current)
                current["outputs"].append(out)
                continue
            figure = {"caption": meta["caption"], "name": f"fig-{page or path.stem}-{meta['name']}".replace("_", "-")}
            mystnb = {"figure": figure, "image": {"alt": meta["alt"]}}
            fig_cell = _output_cell(cell, k, [out], mystnb, f"# figure {meta['name']}, shown by the cell above")
            if meta.get("wide"):
                fig_cell["metadata"]["tags"].append("full-width")
            cells.append(fig_cell)
            current = None
    nb["cells"] = cells
    path.write_text(json.dumps(nb, indent=1))


def _output_cell(cell: dict, key, outputs: list, mystnb: dict, comment: str) -> dict:
    """A code cell that holds outputs split off `cell`; its source is a comment (MyST-NB skips a cell
    without source) that the page does not show."""
    meta = {"tags": ["remove-input"], **({"mystnb": mystnb} if mystnb else {})}
    new = {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": outputs, "source": comment}
    new["id"] = f"{cell.get('id', 'cell')}-{key}"
    return new


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


class TrainingJob(submitit.helpers.Checkpointable):
    """One training run as a submitted job (executor slurm or submitit_local): the same papermill
    execution of the per-run notebook as a local run, into the same atomic run store. A preempted or
    timed-out Slurm job is requeued (submitit's checkpointing calls this object again) and the run
    resumes from its last finished epoch (the backup of `training.fit`)."""

    def __init__(self, root: Path, params: dict, output: Path, run_dir: Path, executor: dict):
        self.root, self.params, self.output, self.run_dir, self.executor = root, params, output, run_dir, executor

    def __call__(self) -> str:
        from .cluster import JOB_ENV

        env = {JOB_ENV: json.dumps(self.executor)}
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # TensorFlow sized for the job's CPUs, not the node's
            cpus = os.environ["SLURM_CPUS_PER_TASK"]
            env.update({"TF_NUM_INTRAOP_THREADS": cpus, "TF_NUM_INTEROP_THREADS": cpus})
        execute(TRAIN_NOTEBOOK, self.output, self.params, self.root, env=env, log=sys.stdout)
        os.replace(self.output, self.run_dir / f"{TRAIN_NOTEBOOK}.ipynb")
        return self.run_dir.name


def _submit_matrix(study: Study, todo: list, base_params: dict, root: Path, reused: int) -> None:
    from .cluster import run_jobs

    opts = study.cfg["executor"]
    notebooks = study.runs_dir / ".notebooks"
    tasks, failed = {}, {}
    for bb, size, seed, d in todo:
        params = {**base_params, "backbone": bb, "input_size": size, "seed": seed}
        tasks[d.name] = TrainingJob(root, params, notebooks / f"{d.name}.ipynb", d, opts)
        failed[d.name] = notebooks / f"{d.name}.failed.ipynb"
    print(f"[study] {len(todo)} training jobs through submitit ({opts['kind']}); logs in {study.results / 'jobs'}")
    run_jobs(opts, study.results / "jobs", tasks, failed, initial=reused)


def run_matrix(study: Study, base_params: dict, root: Path, gpus: list[str], log, jobs: int = 1) -> dict:
    """Execute the training notebook for every run of the matrix that is not finished yet. With the
    executor `local`: with GPUs, one run per GPU at a time; on CPU, `jobs` runs side by side (on a
    2-core machine two kernels overlap one run's single-threaded graph tracing with the other's
    training). With `slurm` (or `submitit_local`): one job per run through submitit."""
    from tqdm.auto import tqdm

    from .runs import is_complete

    todo, reused = [], 0
    for bb, size, seed in study.matrix():
        d = study.run_dir(bb, size, seed)
        if is_complete(d) and (d / f"{TRAIN_NOTEBOOK}.ipynb").is_file():
            reused += 1
        else:
            todo.append((bb, size, seed, d))
    if study.cfg["executor"]["kind"] != "local":
        if gpus:
            raise ConfigError(
                f"--gpus {','.join(gpus)} places runs on this machine's GPUs, but executor.kind = "
                f"{study.cfg['executor']['kind']!r} submits them as jobs (set executor.gpus_per_job instead)"
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
            out = study.runs_dir / ".notebooks" / f"{d.name}.ipynb"
            execute(
                TRAIN_NOTEBOOK,
                out,
                {**base_params, "backbone": bb, "input_size": size, "seed": seed},
                root,
                env={"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else threads or None,
                log=log,
            )
            os.replace(out, d / f"{TRAIN_NOTEBOOK}.ipynb")  # the kernel trained into d: the same run_dir
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


# ---------------------------------------------------------------- the whole study


def check_before_running(study: Study) -> None:
    """What would otherwise fail late, refused before any notebook runs: a study needs two backbones
    for its ensembles, and every labelled image must open as a 450 x 450 RGB picture."""
    if len(study.cfg["backbones"]) < 2:
        raise ConfigError(
            f"profile {study.cfg['name']!r}: setting backbones = {study.cfg['backbones']!r}: a study "
            "needs at least two backbones (its ensembles combine them); to train one backbone alone "
            "use `python -m alllib trial`"
        )
    print(f"[study] checking {int(study.table['label'].notna().sum())} labelled images", flush=True)
    study.image_checks()


def run_study(
    profile: str = "demo",
    overrides=(),
    data_dir=None,
    results_dir=None,
    root=None,
    gpus: list[str] | None = None,
    book: bool = True,
    jobs: int | None = None,
    only: list[str] | None = None,
) -> dict:
    """Data chapter, the run matrix (finished runs reused), the analysis chapters, the generated pages,
    the book. `only`: execute just these chapters (e.g. ["03_ensemble_ablation"]) from the finished runs,
    keep the other executed chapters as they are, and rebuild the book."""
    from .book import add_downloads, build_book, retitle, write_generated_pages
    from .report import run_title

    chapters = (DATA_NOTEBOOK, *ANALYSIS_NOTEBOOKS)
    unknown = sorted(set(only or ()) - set(chapters))
    if unknown:
        raise ConfigError(f"unknown chapter(s) {', '.join(unknown)}; the chapters are: {', '.join(chapters)}")

    t0 = time.time()
    root = Path(root or PACKAGE_ROOT).resolve()
    missing = [c for c in chapters if only and c not in only and not (root / GENERATED / f"{c}.ipynb").is_file()]
    if missing:
        raise StudyError(
            f"--only keeps the other chapters as they are, but {', '.join(missing)} were never executed in "
            f"{root / GENERATED}: build the whole book once first (make book)"
        )
    print(f"[study] profile {profile}: preparing data", flush=True)
    study = prepare(profile, overrides, data_dir, results_dir)
    print(f"[study] {study.label()}; data root {study.data_root}; {len(study.table)} images", flush=True)
    check_before_running(study)
    study.results.mkdir(parents=True, exist_ok=True)
    for stale in study.runs_dir.glob(".*.partial"):  # left by a run that was killed: never reused
        shutil.rmtree(stale, ignore_errors=True)
    gen = root / GENERATED
    base = notebook_params(study, profile, overrides, data_dir)
    log_path = study.results / "notebooks.log"
    with open(log_path, "a") as log:
        if not only or DATA_NOTEBOOK in only:
            print("[study] data exploration", flush=True)
            execute(DATA_NOTEBOOK, gen / f"{DATA_NOTEBOOK}.ipynb", base, root, log=log)
        if only:
            counts = {"trained": 0, "reused": len(study.runs())}  # says which runs are missing, if any
        else:
            print(f"[study] run matrix: {len(study.matrix())} training runs", flush=True)
            counts = run_matrix(study, base, root, gpus or [], log, jobs or study.cfg["jobs"])
        runs_gen = gen / "runs"
        shutil.rmtree(runs_gen, ignore_errors=True)
        runs_gen.mkdir(parents=True)
        runs = study.runs()  # loaded once: run pages and the generated pages read them
        for run in runs:
            d = Path(run["dir"])
            shutil.copy(d / f"{TRAIN_NOTEBOOK}.ipynb", runs_gen / f"{d.name}.ipynb")
            retitle(runs_gen / f"{d.name}.ipynb", run_title(run))
        for nb in ANALYSIS_NOTEBOOKS:
            if only and nb not in only:
                continue
            print(f"[study] {nb}", flush=True)
            execute(nb, gen / f"{nb}.ipynb", base, root, log=log)
    timings = {**counts, "wall_seconds": time.time() - t0}
    write_generated_pages(study, runs, timings, gen, chapters)
    add_downloads(gen)
    io.write_json(study.results / "study.json", {"profile": study.cfg, "data": study.data_info, **timings})
    result = {"study": study, **timings}
    if book:
        print("[study] building the book", flush=True)
        result["index"] = build_book(root)
        print(f"[study] book: {result['index']}", flush=True)
    print(
        f"[study] done in {(time.time() - t0) / 60:.1f} min ({counts['trained']} runs trained, "
        f"{counts['reused']} reused)",
        flush=True,
    )
    return result
