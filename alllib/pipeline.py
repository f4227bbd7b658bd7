"""The whole study, as `make book` runs it: data -> data-exploration chapter -> the run matrix of
training notebooks -> the analysis chapters -> the generated pages -> the book
(`python -m alllib study`).

The runner (`alllib.study.runner`) executes notebooks and schedules the run matrix; this module puts
the study's pieces in order and makes each executed notebook a book page (`alllib.book.postprocess`),
so nothing below the book imports it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from alllib import io
from alllib.book.pages import (
    BUILD,
    CHECK,
    DATA,
    LOADING,
    PAGES,
    STARTUP,
    STUDY_PHASES_PAGE,
    TRAINING,
    analysis_phase,
    build_book,
    chapter_phase,
    matrix_markdown,
    study_phases_markdown,
    write_generated_pages,
)
from alllib.book.postprocess import for_the_book
from alllib.book.report import run_title
from alllib.errors import ConfigError, StudyError
from alllib.evidence import recorded
from alllib.provenance import Phases, process_seconds
from alllib.results import summaries
from alllib.study.prepare import PACKAGE_ROOT, Study, prepare
from alllib.study.runner import (
    ANALYSIS_NOTEBOOKS,
    CHAPTERS,
    DATA_NOTEBOOK,
    GENERATED,
    TRAIN_NOTEBOOK,
    execute,
    notebook_params,
    run_matrix,
    schedule_after,
)
from alllib.study.runs import remove_leftovers


def check_before_running(study: Study) -> None:
    """What would otherwise fail late, refused before any notebook runs: a study needs two backbones
    for its ensembles, and every labelled image must open as a 450 x 450 RGB picture."""
    if len(study.cfg.backbones) < 2:
        raise ConfigError(
            f"profile {study.cfg.name!r}: setting backbones = {study.cfg.backbones!r}: a study "
            "needs at least two backbones (its ensembles combine them); to train one backbone alone "
            "use `python -m alllib trial`"
        )
    print(f"[study] checking {int(study.table['label'].notna().sum())} labelled images", flush=True)
    study.image_checks()


CHAPTER_DIR = "chapters"  # under the study's results folder


@contextlib.contextmanager
def book_lock(root: Path):
    """The lock on the project's book (book/_generated and _build): one study writes its pages and
    builds at a time; another waits, saying so once."""
    gen = Path(root) / GENERATED
    gen.mkdir(parents=True, exist_ok=True)
    with io.held(gen / ".lock", f"[study] another study is writing the book in {gen}: waiting for it"):
        yield


def publish(study: Study, runs, executed: Path, root: Path, timings: dict, chapters) -> Path:
    """This study's executed chapters and run notebooks made into the book's pages (book/_generated),
    with the generated pages; returns that folder. The caller holds the book's lock."""
    gen = root / GENERATED
    for nb in chapters:
        if (executed / f"{nb}.ipynb").is_file():
            shutil.copy(executed / f"{nb}.ipynb", gen / f"{nb}.ipynb")
            for_the_book(gen / f"{nb}.ipynb", gen)
    runs_gen = gen / "runs"
    shutil.rmtree(runs_gen, ignore_errors=True)
    runs_gen.mkdir(parents=True)
    for run in runs:
        d = run.folder
        shutil.copy(d / f"{TRAIN_NOTEBOOK}.ipynb", runs_gen / f"{d.name}.ipynb")
        for_the_book(runs_gen / f"{d.name}.ipynb", gen, title=run_title(run))
    write_generated_pages(study, runs, timings, gen, chapters)
    io.write_text(gen / "budget.md", recorded.budget_markdown())  # the compute a reproducer budgets
    return gen


def execute_chapters(chapters: list[str], executed: Path, base: dict, root: Path, log, width: int) -> dict:
    """Execute the analysis chapters, `width` side by side (the profile's `jobs`, as for the run matrix), a
    chapter that reads another's summary only once that one has finished (`summaries.chapter_needs`). Each
    chapter is its own papermill kernel, so side by side they compute what they compute one after another;
    only the wall time shrinks (their start-up, plotting and Python overlap). Returns each chapter's own
    seconds. A failed chapter stops the chapters not yet started; the error names the chapter and its cell."""
    needs = {c: summaries.chapter_needs().get(c, set()) & set(chapters) for c in chapters}
    seconds: dict[str, float] = {}

    def one(nb):
        print(f"[study] {nb}", flush=True)
        t = time.perf_counter()
        execute(nb, executed / f"{nb}.ipynb", base, root, log=log)
        seconds[nb] = time.perf_counter() - t

    waited_for = set().union(*needs.values()) if needs else set()
    first = sorted(chapters, key=lambda c: c not in waited_for)  # what others wait for starts first
    failures = schedule_after(first, needs, width, one)
    if failures:
        raise failures[0][1]  # execute's StudyError: the notebook, its failing cell, the partial notebook kept
    return {nb: seconds[nb] for nb in chapters}


def run_study(
    profile: str = "demo",
    overrides=(),
    data_dir=None,
    results_dir=None,
    root=None,
    gpus: list[str] | None = None,
    book: bool = True,
    jobs: int | None = None,
    runs_per_gpu: int | None = None,
    only: list[str] | None = None,
    verify_runs: bool = False,
) -> dict:
    """Data chapter, the run matrix (finished runs reused), the analysis chapters, the generated pages,
    the book. `only`: execute just these chapters (e.g. ["03_ensemble_ablation"]) from the finished runs,
    keep the other executed chapters as they are, and rebuild the book. `verify_runs`: check the sha256
    of every finished run's files before reusing it (sizes are always checked).

    Chapters execute into the study's results folder (results/<profile>/chapters); only then, under
    the book's lock, do they become the book's pages, so that studies run side by side in one project
    never mix their pages."""
    chapters = CHAPTERS
    unknown = sorted(set(only or ()) - set(chapters))
    if unknown:
        raise ConfigError(f"unknown chapter(s) {', '.join(unknown)}; the chapters are: {', '.join(chapters)}")

    if runs_per_gpu and not gpus:
        raise ConfigError(
            f"--runs-per-gpu {runs_per_gpu} packs runs onto GPUs, but no --gpus were given (e.g. --gpus 0,1); "
            "on CPU, --jobs sets the runs side by side"
        )
    t0 = time.time()
    phases = Phases()  # the study's own phases (book.pages: STARTUP ... BUILD), from the process's start to the book
    phases.add(STARTUP, process_seconds() or 0.0)
    since_startup = time.perf_counter()  # the total is start-up plus this clock: /proc's ticks are 10 ms coarse
    root = Path(root or PACKAGE_ROOT).resolve()
    print(f"[study] profile {profile}: preparing data", flush=True)
    with phases(DATA):
        study = prepare(profile, overrides, data_dir, results_dir)
    executed = study.results / CHAPTER_DIR  # this study's executed chapters, before they become pages
    missing = [c for c in chapters if only and c not in only and not (executed / f"{c}.ipynb").is_file()]
    if missing:
        raise StudyError(
            f"--only keeps the other chapters as they are, but {', '.join(missing)} were never executed for "
            f"this study ({executed}): build the whole book once first (make book)"
        )
    print(f"[study] {study.label()}; data root {study.data_root}; {len(study.table)} images", flush=True)
    with phases(CHECK):
        check_before_running(study)
    study.results.mkdir(parents=True, exist_ok=True)
    remove_leftovers(study.runs_dir)
    base = notebook_params(study, profile, overrides, data_dir)
    log_path = study.results / "notebooks.log"
    timed: dict = {}  # the run matrix's places and each executed run's seconds from the runner's side
    with open(log_path, "a") as log:
        if not only or DATA_NOTEBOOK in only:
            print("[study] data exploration", flush=True)
            with phases(chapter_phase(DATA_NOTEBOOK)):
                execute(DATA_NOTEBOOK, executed / f"{DATA_NOTEBOOK}.ipynb", base, root, log=log)
        if only:
            counts = {"trained": 0, "reused": len(study.runs())}  # says which runs are missing, if any
        else:
            print(f"[study] run matrix: {len(study.matrix())} training runs", flush=True)
            with phases(TRAINING):
                counts = run_matrix(
                    study,
                    base,
                    root,
                    gpus or [],
                    log,
                    jobs or study.cfg.jobs,
                    hashes=verify_runs,
                    runs_per_gpu=runs_per_gpu,
                    timed=timed,
                )
        with phases(LOADING):
            runs = study.runs()  # loaded once: run pages and the generated pages read them
        matrix = matrix_markdown(
            timed, phases.seconds.get(TRAINING, 0.0), {r.run_id: getattr(r, "wall_seconds", 0.0) for r in runs}
        )
        todo = [nb for nb in ANALYSIS_NOTEBOOKS if not only or nb in only]
        width = max(1, jobs or study.cfg.jobs)
        with phases(analysis_phase(width)):
            chapter_seconds = execute_chapters(todo, executed, base, root, log, width)
    timings = {**counts, "wall_seconds": time.time() - t0}
    record = {"profile": study.cfg.record(), "data": study.data_info, **timings, "only": only or []}
    record["chapters"] = chapter_seconds  # each analysis chapter's own seconds (side by side, they overlap)
    record["matrix"] = timed
    io.write_json(study.results / "study.json", {**record, "phases": phases.seconds})
    with book_lock(root):  # the book's pages are one study's at a time
        gen = root / GENERATED
        with phases(PAGES):
            publish(study, runs, executed, root, timings, chapters)
            io.write_text(
                gen / STUDY_PHASES_PAGE, study_phases_markdown(phases.seconds, None, only, chapter_seconds, matrix)
            )
        result = {"study": study, **timings}
        if book:
            print("[study] building the book", flush=True)
            with phases(BUILD):
                result["index"] = build_book(root)
            total = phases.seconds[STARTUP] + time.perf_counter() - since_startup
            io.write_json(study.results / "study.json", {**record, "phases": phases.seconds, "process_seconds": total})
            # the table, now with the book build, into its page: Sphinx rebuilds that page alone
            t_again = time.time()
            io.write_text(
                gen / STUDY_PHASES_PAGE, study_phases_markdown(phases.seconds, total, only, chapter_seconds, matrix)
            )
            build_book(root)
            print(
                f"[study] book: {result['index']} (the study's phases: {STUDY_PHASES_PAGE}; writing them into the "
                f"book took {time.time() - t_again:.0f} s more)",
                flush=True,
            )
        result["phases"] = dict(phases.seconds)
    print(
        f"[study] done in {(time.time() - t0) / 60:.1f} min ({counts['trained']} runs trained, "
        f"{counts['reused']} reused)",
        flush=True,
    )
    return result
