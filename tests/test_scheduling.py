"""Placing training runs (alllib.study.runner), tested on CPU with stand-in runs: several runs per GPU
(`--gpus 0,1 --runs-per-gpu N`), each seeing only its GPU and taking memory as it grows; a failed run frees
its place; and several runs packed into one Slurm job (`executor.runs_per_job`)."""

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from alllib import pipeline
from alllib.errors import ConfigError, StudyError
from alllib.study import runner


def test_slots_take_each_gpu_in_turn_then_share_it():
    assert runner.slots_for(["0", "1"], 2) == ["0", "1", "0", "1"]
    assert runner.slots_for(["3"], 3) == ["3", "3", "3"]
    assert runner.slots_for([], 4, jobs=2) == [None, None]  # on CPU, jobs places; runs per GPU means nothing
    with pytest.raises(ConfigError, match="runs per GPU \\(0\\)"):
        runner.slots_for(["0"], 0)


def test_a_run_on_a_gpu_sees_only_that_gpu_and_takes_memory_as_it_grows():
    env = runner.slot_env("1", {"TF_NUM_INTRAOP_THREADS": "1"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and "TF_NUM_INTRAOP_THREADS" not in env
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert runner.slot_env(None, {"TF_NUM_INTRAOP_THREADS": "1"}) == {"TF_NUM_INTRAOP_THREADS": "1"}


def _stand_in(fail=(), seconds=0.05):
    """A stand-in for training: records where each job ran and how many jobs held each slot at once."""
    lock = threading.Lock()
    state = {"held": Counter(), "most": Counter(), "at_once": 0, "most_at_once": 0, "ran": []}

    def train(job, slot):
        with lock:
            state["held"][slot] += 1
            state["at_once"] += 1
            state["most"][slot] = max(state["most"][slot], state["held"][slot])
            state["most_at_once"] = max(state["most_at_once"], state["at_once"])
            state["ran"].append((job, slot))
        time.sleep(seconds)
        with lock:
            state["held"][slot] -= 1
            state["at_once"] -= 1
        if job in fail:
            raise RuntimeError(f"run {job} ran out of memory")

    return train, state


@pytest.mark.parametrize("gpus,per_gpu", [(["0", "1"], 2), (["0"], 3), (["0", "1", "2"], 1)])
def test_every_run_is_placed_once_and_no_slot_holds_two(gpus, per_gpu):
    slots = runner.slots_for(gpus, per_gpu)
    train, state = _stand_in()
    assert runner.schedule(list(range(10)), slots, train) == []
    assert sorted(job for job, _ in state["ran"]) == list(range(10))
    assert set(Counter(slot for _, slot in state["ran"])) == set(gpus)  # every GPU took runs
    assert state["most_at_once"] == len(slots)  # ten runs of 50 ms: the pool ran them side by side
    assert all(state["most"][g] == per_gpu for g in gpus)  # a GPU holds runs_per_gpu runs at once, never more


def test_a_failed_run_frees_its_slot_and_the_others_still_run():
    slots = runner.slots_for(["0"], 1)
    train, state = _stand_in(fail={1})
    done = []
    failures = runner.schedule([0, 1, 2, 3], slots, train, done=lambda job, slot, error: done.append((job, error)))
    assert [job for job, _ in failures] == [1] and "out of memory" in str(failures[0][1])
    assert [job for job, _ in state["ran"]] == [0, 1, 2, 3]  # the run after the failure took its slot
    assert [(job, error is not None) for job, error in done] == [(0, False), (1, True), (2, False), (3, False)]


def test_run_matrix_places_runs_on_gpus_and_names_every_failed_run(monkeypatch, synth_root, tmp_path):
    from alllib.study.prepare import prepare

    study = prepare("smoke", ["backbones=[mobilenet,vgg16]"], str(synth_root), tmp_path, progress=False)
    seen, lock = [], threading.Lock()

    def train_in_kernel(d, params, root, output, env, log, hashes=False):
        with lock:
            seen.append((d.name, env["CUDA_VISIBLE_DEVICES"]))
        if params["backbone"] == "vgg16" and params["seed"] == 0:
            raise StudyError(f"notebook train_run.ipynb failed at cell In [3] ({d.name})")

    monkeypatch.setattr(runner, "train_in_kernel", train_in_kernel)
    with pytest.raises(StudyError) as err:
        runner.run_matrix(study, {}, Path("."), ["0", "1"], None, runs_per_gpu=2)
    n = len(study.matrix())
    assert len(seen) == n and {g for _, g in seen} == {"0", "1"}  # every run had its turn, on both GPUs
    failed = [d for d, _ in seen if d.startswith(("vgg16_300px_seed0_", "vgg16_450px_seed0_"))]
    assert str(err.value).startswith(f"{len(failed)} of {n} training runs failed")
    assert all(f"- {d}: notebook train_run.ipynb failed at cell In [3]" in str(err.value) for d in failed)


def test_run_matrix_times_each_run_it_executes_and_counts_its_places(monkeypatch, synth_root, tmp_path):
    from alllib.study.prepare import prepare

    study = prepare("smoke", ["backbones=[mobilenet,vgg16]"], str(synth_root), tmp_path, progress=False)
    other = study.run_dir("vgg16", 300, 0).name  # trained meanwhile by another process: not executed here

    def train_in_kernel(d, params, root, output, env, log, hashes=False):
        if d.name == other:
            return False
        time.sleep(0.05)
        return True

    monkeypatch.setattr(runner, "train_in_kernel", train_in_kernel)
    timed: dict = {}
    runner.run_matrix(study, {}, Path("."), [], None, jobs=2, timed=timed)
    names = {study.run_dir(*run).name for run in study.matrix()}
    assert timed["slots"] == 2 and set(timed["runs"]) == names - {other}
    assert all(0.05 <= s < 5 for s in timed["runs"].values())  # the runner's own clock around each kernel


def test_runs_per_gpu_without_gpus_is_refused_up_front(tmp_path):
    with pytest.raises(ConfigError, match="--runs-per-gpu 2 .* no --gpus"):
        pipeline.run_study("smoke", runs_per_gpu=2, root=tmp_path, results_dir=tmp_path / "results")


class _Run:
    def __init__(self, name, fail=False):
        self.run_dir, self.fail, self.ran = Path(name), fail, False

    def _packed(self):
        self.ran = True
        if self.fail:
            raise StudyError(f"{self.run_dir} diverged")


def test_a_packed_job_trains_its_runs_side_by_side_and_fails_naming_the_failed_one():
    assert runner.packs(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    runs = [_Run("a"), _Run("b", fail=True), _Run("c")]
    with pytest.raises(StudyError, match=r"1 of 3 runs of this job failed:\n- b: b diverged"):
        runner.PackedTrainingJob(runs)()
    assert all(r.ran for r in runs)
    assert runner.PackedTrainingJob([_Run("a"), _Run("c")])() == "a,c"


# ---------------------------------------------------------------- the analysis chapters, side by side


def test_chapters_side_by_side_wait_for_the_summaries_they_read():
    """Two at a time, a job never starts before the jobs it needs have ended, and never more than two run."""
    needs = {"e": {"a", "b"}, "f": {"a"}}
    started, ended, running, most = [], [], set(), [0]
    lock = threading.Lock()

    def run(job):
        with lock:
            assert needs.get(job, set()) <= set(ended), f"{job} started before {needs[job] - set(ended)}"
            started.append(job)
            running.add(job)
            most[0] = max(most[0], len(running))
        time.sleep({"a": 0.2, "b": 0.05}.get(job, 0.01))
        with lock:
            running.discard(job)
            ended.append(job)

    assert runner.schedule_after(["a", "b", "c", "d", "e", "f"], needs, 2, run) == []
    assert sorted(started) == list("abcdef") and most[0] == 2
    assert started[:2] == ["a", "b"] and started.index("e") > ended.index("a")  # e waited for the long a
    assert started.index("c") < started.index("e")  # a ready job is not held back by a waiting one


def test_a_failed_chapter_stops_the_chapters_not_yet_started():
    started = []

    def run(job):
        started.append(job)
        if job == "a":
            raise StudyError("notebook a failed at cell 3")

    failures = runner.schedule_after(["a", "b", "c"], {"b": {"a"}}, 1, run)
    assert [(j, str(e)) for j, e in failures] == [("a", "notebook a failed at cell 3")] and started == ["a"]
    with pytest.raises(ConfigError, match="circle"):
        runner.schedule_after(["a", "b"], {"a": {"b"}, "b": {"a"}}, 2, run)
    with pytest.raises(ConfigError, match="not scheduled.*'z'"):
        runner.schedule_after(["a"], {"a": {"z"}}, 2, run)


def test_the_chapters_wait_for_exactly_the_summaries_their_notebooks_read():
    """summaries.READ_BY, which orders the chapters, against each notebook's own summaries.read calls."""
    import json
    import re

    from alllib.results import summaries

    read = {}
    for chapter in runner.CHAPTERS:
        nb = json.loads((Path(runner.PACKAGE_ROOT) / "notebooks" / f"{chapter}.ipynb").read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        for kind in re.findall(r"summaries\.read\(\s*summaries\.(\w+)", code):
            read.setdefault(chapter, set()).add(summaries.WRITTEN_BY[getattr(summaries, kind)])
    assert read == summaries.chapter_needs()
    assert read["06_results_summary"] == {"03_ensemble_ablation", "04_variance", "05_gradcam"}


def test_the_study_runs_the_analysis_chapters_through_the_scheduler(monkeypatch, tmp_path):
    """pipeline.execute_chapters: every chapter executed once, the results summary after its three writers
    (one at a time here, so that the order is the scheduler's)."""
    order = []
    monkeypatch.setattr(pipeline, "execute", lambda nb, out, base, root, log=None: order.append(nb))
    seconds = pipeline.execute_chapters(runner.ANALYSIS_NOTEBOOKS, tmp_path, {}, tmp_path, None, 1)
    assert sorted(order) == sorted(runner.ANALYSIS_NOTEBOOKS) and list(seconds) == list(runner.ANALYSIS_NOTEBOOKS)
    assert order[:3] == ["03_ensemble_ablation", "04_variance", "05_gradcam"]  # what others wait for starts first
    assert order.index("06_results_summary") > max(order.index(c) for c in ("03_ensemble_ablation", "05_gradcam"))
