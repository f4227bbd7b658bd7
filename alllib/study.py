"""The study runner: data -> data-exploration notebook -> the run matrix of training notebooks ->
the analysis notebooks -> the book. `make book` calls `python -m alllib study`.

Every notebook is executed by papermill in its own kernel (a subprocess, so that several GPUs can
each take one training run at a time). A finished training run is recognised by its key (backbone,
size, seed, profile settings, data fingerprint) and reused; an interrupted study resumes where it
stopped; a failed notebook stops the study with its path and failing cell and is kept for reading.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from . import io
from .config import input_pixels, load_profile, training_for
from .errors import StudyError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
GENERATED = Path("book") / "_generated"
ANALYSIS_NOTEBOOKS = ("02_fine_tuning_overview", "03_ensemble_ablation", "04_variance", "05_gradcam",
                      "00_results_summary")


def default_results_dir() -> Path:
    return PACKAGE_ROOT / "results"


@dataclass
class Study:
    cfg: dict
    results: Path
    data_root: Path
    table: pd.DataFrame = field(repr=False)
    data_info: dict

    @property
    def runs_dir(self) -> Path:
        return self.results / "runs"

    @property
    def synthetic(self) -> bool:
        return bool(self.data_info["synthetic"])

    def label(self) -> str:
        """What every table and figure says about its data."""
        w = self.cfg["weights"]
        init = "ImageNet weights" if w == "imagenet" else ("random initialisation" if w == "none" else f"weights {w}")
        data = "SYNTHETIC C-NMC-like data" if self.synthetic else "C-NMC-2019 (real data)"
        return f"{data} | profile {self.cfg['name']} | {init}"

    def matrix(self) -> list[tuple[str, int, int]]:
        """(backbone, input size, seed) of every training run, seed-major so early runs complete
        ensembles; within a seed the longest runs first, so parallel jobs finish close together."""
        from .models import BACKBONES

        seeds = sorted(set(itertools.chain.from_iterable(self.cfg["runs"].values())))
        runs = [(bb, size, seed) for seed in seeds for size in sorted(self.cfg["runs"], reverse=True)
                if seed in self.cfg["runs"][size] for bb in self.cfg["backbones"]]
        cost = lambda r: (input_pixels(r[1], self.cfg["input_scale"]) ** 2 * BACKBONES[r[0]].cpu_cost  # noqa: E731
                          * training_for(self.cfg, r[0])["epochs"])
        return sorted(runs, key=lambda r: (seeds.index(r[2]), -cost(r)))

    def run_dir(self, backbone: str, size: int, seed: int) -> Path:
        from .training import run_id, run_key

        return self.runs_dir / run_id(run_key(self.cfg, backbone, size, seed, self.data_info["fingerprint"]))

    def runs(self, require_all: bool = True) -> list[dict]:
        from .training import is_complete, load_run

        out, missing = [], []
        for bb, size, seed in self.matrix():
            d = self.run_dir(bb, size, seed)
            (out.append(load_run(d)) if is_complete(d) else missing.append(d.name))
        if missing and require_all:
            raise StudyError(f"{len(missing)} training runs of profile {self.cfg['name']!r} are not finished "
                             f"(e.g. {missing[0]} under {self.runs_dir}); run `make book PROFILE={self.cfg['name']}` first")
        return out


def prepare(profile: str = "demo", overrides=(), data_dir: str | None = None, results_dir=None,
            progress: bool = True) -> Study:
    """Resolve the profile and the data (generating the synthetic set once when no data is given)."""
    from .dataset import data_fingerprint, is_synthetic, read_cnmc
    from .synthetic import ensure_synthetic

    cfg = load_profile(profile, list(overrides or ()), data_dir)
    results = Path(results_dir) if results_dir else default_results_dir()
    results = results / cfg["name"]
    if cfg["data"]["source"] == "synthetic":
        root = ensure_synthetic(results.parent / "data", cfg["data"], progress=progress)
    else:
        root = Path(cfg["data"]["root"])
    table = read_cnmc(root)
    info = {"root": str(root), "fingerprint": data_fingerprint(table, root), "synthetic": is_synthetic(root)}
    if info["synthetic"]:
        info["generator"] = json.loads((root / "SYNTHETIC.json").read_text())
    return Study(cfg, results, root, table, info)


# ---------------------------------------------------------------- notebook execution

def _failing_cell(notebook: Path) -> str:
    """Index, error and last traceback lines of the first cell with an error output."""
    import re

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
    cmd = [sys.executable, "-m", "papermill", str(src), str(partial), "-y", yaml.safe_dump(params),
           "--cwd", str(root / "notebooks"), "--no-progress-bar", "--kernel", "python3", "--log-output"]
    if log is not None:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {notebook} {json.dumps(params)}\n")
        log.flush()
    proc = subprocess.run(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}, stdout=log if log is not None else subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        failed = output.with_name(output.stem + ".failed.ipynb")
        if partial.exists():
            os.replace(partial, failed)
            where = _failing_cell(failed)
        else:
            where = "start-up (no notebook was written)\n" + (proc.stdout or "")[-2000:]
        raise StudyError(f"notebook {src.name} failed at {where}\nThe partial notebook is kept at {failed}"
                         + (f"; the full log is {log.name}" if log is not None else ""))
    _hide_injected_parameters(partial)
    os.replace(partial, output)
    output.with_name(output.stem + ".failed.ipynb").unlink(missing_ok=True)   # an earlier failure, now mended


def _hide_injected_parameters(path: Path) -> None:
    """Fold the cell papermill injects (this build's parameters) in the book, like the defaults cell."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["hide-cell"]
    path.write_text(json.dumps(nb, indent=1))


def cpu_threads(jobs: int) -> dict[str, str]:
    """Environment that gives each of `jobs` side-by-side CPU training kernels an equal share of the
    cores. TensorFlow's default (every kernel sized for all cores) oversubscribes them: measured on
    the 2-core machine, a VGG-16 step took 2.0 s next to another kernel's graph tracing, 1.2 s with
    one thread each. Empty for a single job (TensorFlow's default then uses every core)."""
    if jobs <= 1:
        return {}
    per_job = max(1, (os.cpu_count() or 1) // jobs)
    return {"TF_NUM_INTRAOP_THREADS": str(per_job), "TF_NUM_INTEROP_THREADS": str(per_job)}


def _run_matrix(study: Study, base_params: dict, root: Path, gpus: list[str], log, jobs: int = 1) -> dict:
    """Execute the training notebook for every run of the matrix that is not finished yet. With GPUs,
    one run per GPU at a time; on CPU, `jobs` runs side by side (on a 2-core machine two kernels
    overlap one run's single-threaded graph tracing with the other's training)."""
    from tqdm.auto import tqdm

    from .training import is_complete

    todo, reused = [], 0
    for bb, size, seed in study.matrix():
        d = study.run_dir(bb, size, seed)
        if is_complete(d) and (d / "02_train.ipynb").is_file():
            reused += 1
        else:
            todo.append((bb, size, seed, d))
    bar = tqdm(total=len(study.matrix()), initial=reused, desc="training runs", unit="run", file=sys.stdout,
               dynamic_ncols=False, ncols=100)
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
            execute("02_train", out, {**base_params, "backbone": bb, "input_size": size, "seed": seed}, root,
                    env={"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else threads or None, log=log)
            os.replace(out, d / "02_train.ipynb")
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


def build_book(root: Path) -> Path:
    """jupyter-book build with MathJax served from the build itself (works offline)."""
    import jupyter_server_mathjax

    static = root / "book" / "_static" / "mathjax"
    if not (static / "MathJax.js").is_file():
        src = Path(jupyter_server_mathjax.__file__).parent / "static"
        tmp = static.with_name("mathjax.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        os.replace(tmp, static)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        raise StudyError("jupyter-book build failed:\n" + "\n".join((proc.stdout + proc.stderr).splitlines()[-30:]))
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise StudyError(f"jupyter-book build produced no {index}")
    return index


def provenance_markdown(study: Study, timings: dict) -> str:
    from .training import environment

    env = environment()
    cfg = study.cfg
    lines = [
        "| | |", "|---|---|",
        f"| Data | **{'SYNTHETIC C-NMC-like data generated by `alllib.synthetic`' if study.synthetic else 'real C-NMC-2019'}** |",
        f"| Data root | `{study.data_root}` |",
        f"| Data fingerprint | `{study.data_info['fingerprint']}` ({len(study.table)} images) |",
        f"| Profile | `{cfg['name']}`: {cfg['description']} |",
        f"| Initialisation | {'ImageNet weights' if cfg['weights'] == 'imagenet' else 'random (no ImageNet weights: offline profile)' if cfg['weights'] == 'none' else cfg['weights']} |",
        f"| Input tensors | 450 px and 300 px crops x input scale {cfg['input_scale']} |",
        f"| Training runs | {len(study.matrix())} ({timings.get('trained', 0)} trained in this build, {timings.get('reused', 0)} reused) |",
        f"| Code | alllib, git commit `{env['git_commit']}`; TensorFlow {env['tensorflow']}, Keras {env['keras']} |",
        f"| Built | {time.strftime('%Y-%m-%d %H:%M:%S')} in {timings.get('wall_seconds', 0) / 60:.1f} min on {env['cpus']} CPUs, GPUs: {', '.join(env['gpus'])} |",
    ]
    if study.synthetic:
        g = study.data_info["generator"]
        lines.append(f"| Synthetic generator | scale {g['scale']}, difficulty {g['difficulty']}, seed {g['seed']} |")
    warn = ("```{warning}\nThis book was built from **synthetic** data. Its numbers say whether the pipeline works, "
            "not how well CNNs diagnose ALL. Run `make book PROFILE=paper DATA_DIR=/path/to/C-NMC_Leukemia` on the "
            "real data for that.\n```\n\n") if study.synthetic else ""
    return warn + "\n".join(lines) + "\n"


def run_study(profile: str = "demo", overrides=(), data_dir=None, results_dir=None, root=None,
              gpus: list[str] | None = None, book: bool = True, jobs: int | None = None) -> dict:
    t0 = time.time()
    root = Path(root or PACKAGE_ROOT).resolve()
    print(f"[study] profile {profile}: preparing data", flush=True)
    study = prepare(profile, overrides, data_dir, results_dir)
    print(f"[study] {study.label()}; data root {study.data_root}; {len(study.table)} images", flush=True)
    study.results.mkdir(parents=True, exist_ok=True)
    for stale in study.runs_dir.glob(".*.partial"):  # left by a run that was killed: never reused
        shutil.rmtree(stale, ignore_errors=True)
    gen = root / GENERATED
    base = {"profile": profile, "overrides": list(overrides or ()), "data_dir": data_dir,
            "results_dir": str(study.results.parent.resolve())}
    log_path = study.results / "notebooks.log"
    with open(log_path, "a") as log:
        print("[study] data exploration", flush=True)
        execute("01_data_exploration", gen / "01_data_exploration.ipynb", base, root, log=log)
        print(f"[study] run matrix: {len(study.matrix())} training runs", flush=True)
        counts = _run_matrix(study, base, root, gpus or [], log, jobs or study.cfg.get("jobs", 1))
        runs_gen = gen / "runs"
        shutil.rmtree(runs_gen, ignore_errors=True)
        runs_gen.mkdir(parents=True)
        for bb, size, seed in study.matrix():
            shutil.copy(study.run_dir(bb, size, seed) / "02_train.ipynb", runs_gen / f"{study.run_dir(bb, size, seed).name}.ipynb")
        for nb in ANALYSIS_NOTEBOOKS:
            print(f"[study] {nb}", flush=True)
            execute(nb, gen / f"{nb}.ipynb", base, root, log=log)
    timings = {**counts, "wall_seconds": time.time() - t0}
    io.write_text(gen / "provenance.md", provenance_markdown(study, timings))
    io.write_json(study.results / "study.json", {"profile": study.cfg, "data": study.data_info, **timings})
    result = {"study": study, **timings}
    if book:
        print("[study] building the book", flush=True)
        result["index"] = build_book(root)
        print(f"[study] book: {result['index']}", flush=True)
    print(f"[study] done in {(time.time() - t0) / 60:.1f} min ({counts['trained']} runs trained, "
          f"{counts['reused']} reused)", flush=True)
    return result


def stamp(table: pd.DataFrame, profile: str, machine: bool = False) -> pd.DataFrame:
    """`table` with when, with which profile and code (and, with `machine`, on how many CPUs and
    which GPUs) it was measured: the provenance of a recorded calibration or benchmark CSV."""
    from .training import environment

    env = environment()
    where = {"cpus": env["cpus"], "gpus": ", ".join(env["gpus"])} if machine else {}
    return table.assign(profile=profile, recorded=time.strftime("%Y-%m-%d"), **where, commit=env["git_commit"])


STAMP_COLUMNS = ("profile", "recorded", "cpus", "gpus", "commit")


def recorded_path(name: str) -> Path:
    """Where the recorded table `name` (written by `calibrate`, `trial` or `bench --out`) lives:
    alllib/data/<name>.csv, shipped with the package."""
    return Path(__file__).resolve().parent / "data" / f"{name}.csv"


def recorded(name: str) -> pd.DataFrame | None:
    """The recorded table `name`, or None when none was recorded."""
    path = recorded_path(name)
    return pd.read_csv(path) if path.is_file() else None


def recorded_note(table: pd.DataFrame) -> str:
    """Where a recorded table comes from, in words: the `stamp` columns."""
    first = table.iloc[0]
    where = f" on {first['cpus']} CPUs (GPU: {first['gpus']})" if "cpus" in table else ""
    return f"Recorded {first['recorded']} with the `{first['profile']}` profile{where} at commit `{first['commit']}`."


def trial(profile: str, variants, backbones, size: int = 300, seeds=(0,), results_dir=None, out=None,
          base=(), data_dir=None) -> pd.DataFrame:
    """Compare settings with the profile's training protocol: for each variant (a list of `key=value`
    overrides, after the common `base` overrides) train `backbones` at `size` px for every seed
    through the ordinary runner (cached like any run) and tabulate validation and test balanced
    accuracy. Written to `out` (CSV) with the date and code version, so the book shows the recorded
    evidence behind a profile's choices."""
    from .metrics import evaluate

    rows = []
    for variant in variants:
        variant = list(variant)
        overrides = list(base) + variant + [f"backbones=[{','.join(backbones)}]",
                                            f"runs={{{size}: [{','.join(map(str, seeds))}]}}"]
        study = prepare(profile, overrides, data_dir, results_dir=results_dir)
        study.results.mkdir(parents=True, exist_ok=True)
        params = {"profile": profile, "overrides": overrides, "data_dir": data_dir,
                  "results_dir": str(study.results.parent.resolve())}
        with open(study.results / "notebooks.log", "a") as log:
            _run_matrix(study, params, PACKAGE_ROOT, [], log, study.cfg.get("jobs", 1))
        for run in study.runs():
            p = run["predictions"]
            val, test = p[p["split"] == "validation"], p[p["split"] == "preliminary_test"]
            rows.append({"setting": " ".join(variant) or "profile as is", "backbone": run["display"], "seed": run["seed"],
                         "input_px": run["input_px"], "clr_max_lr": run["training"]["clr_max_lr"],
                         "epochs": run["epochs_run"], "best_epoch": run["best_epoch"],
                         "val_BA": evaluate(val["y"], val["p_all"])["BA"], "test_BA": evaluate(test["y"], test["p_all"])["BA"]})
    table = stamp(pd.DataFrame(rows), profile)
    if out:
        io.write_csv(out, table)
    return table


def calibrate(profile: str = "demo", difficulties=(0.3, 0.5), backbones=("vgg16", "mobilenet"), size: int = 300,
              seed: int = 0, results_dir=None, out=None) -> pd.DataFrame:
    """Calibrate the synthetic difficulty with the profile's training settings: a `trial` of
    `backbones` at `size` px for each difficulty, so the book can show what the default was chosen from."""
    table = trial(profile, [[f"difficulty={d}"] for d in difficulties], backbones, size, (seed,), results_dir)
    table.insert(0, "difficulty", table.pop("setting").str.split("=").str[1].astype(float))
    if out:
        io.write_csv(out, table)
    return table
