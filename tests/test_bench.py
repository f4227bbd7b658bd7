from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alllib.evidence import bench


def test_pipeline_overhead_pools_rounds_and_reports_their_spread():
    pipeline = [[1.0, 1.1, 5.0], [1.2, 1.2, 1.2]]  # a stalled step in round 1 does not move its median
    memory = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    got = bench.overhead(pipeline, memory)
    # by hand: round medians 1.1 and 1.2 against 1.0; the six pooled periods have median (1.2 + 1.2) / 2
    assert got["lowest"] == pytest.approx(10.0)
    assert got["highest"] == pytest.approx(20.0)
    assert got["overall"] == pytest.approx(20.0)
    assert got["pipeline_s"] == pytest.approx(1.2) and got["memory_s"] == pytest.approx(1.0)
    assert bench.overhead([[0.9, 0.9]], [[1.0, 1.0]])["overall"] == pytest.approx(-10.0)  # faster than in-memory: noise


def _gpu_table(rate_train, rate_predict, sizes=(300, 450)):
    from alllib.method.models import BACKBONES

    return pd.DataFrame(
        [
            {
                "backend": "jax",
                "backbone": key,
                "input_size": size,
                "input_px": size,
                "precision": "fp32",
                "compile": "xla",
                "batch_size": 8,
                "train_images_per_s": rate_train,
                "predict_images_per_s": rate_predict,
                "status": "ok",
            }
            for size in sizes
            for key in BACKBONES
        ]
    )


def test_paper_matrix_hours_against_a_hand_count():
    from alllib.evidence import bench
    from alllib.method.dataset import manifest_training_table
    from alllib.method.preprocessing import subject_split
    from alllib.study.profile import load_profile

    split = subject_split(manifest_training_table(), 0)
    train = split[split["split"] == "train"]
    n_train = 2 * int(train["label"].value_counts().max())  # oversampling to the majority class
    n_val = int((split["split"] == "validation").sum())
    cfg = load_profile("paper", bench.NO_DATA)
    runs = sum(len(s) for s in cfg.runs.values()) * len(cfg.backbones)
    assert runs == 30 and len(split) == 10661

    h = bench.paper_matrix_hours(_gpu_table(100.0, 400.0)).iloc[0]
    assert (h["train images/epoch"], h["validation images"]) == (n_train, n_val)
    assert h["hours"] == round(runs * 200 * (n_train / 100 + n_val / 400) / 3600, 1)
    assert h["epochs within 8 h"] == int(8 * 200 / h["hours"]) and h["extrapolated (pixel ratio)"] == ""


def test_paper_matrix_hours_scales_a_missing_size_by_its_pixels():
    from alllib.evidence import bench

    only_300 = bench.paper_matrix_hours(_gpu_table(100.0, 400.0, sizes=(300,)), epochs=1).iloc[0]
    both = _gpu_table(100.0, 400.0)
    both.loc[both["input_size"] == 450, ["train_images_per_s", "predict_images_per_s"]] = [100 * 4 / 9, 400 * 4 / 9]
    assert only_300["hours"] == bench.paper_matrix_hours(both, epochs=1).iloc[0]["hours"]
    assert only_300["extrapolated (pixel ratio)"].count("from 300") == 5


def test_readme_gpu_table_is_the_recorded_one():
    from alllib.evidence import bench
    from alllib.evidence.recorded import recorded

    table = recorded("bench_gpu")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    shown = readme.split("<!-- bench_gpu -->\n")[1].split("\n<!-- /bench_gpu -->")[0]
    assert shown == bench.gpu_markdown(table)
    h = bench.paper_matrix_hours(table)
    xla = h[(h["backend"] == "jax") & (h["precision"] == "fp32")].iloc[0]
    assert f"about {xla['hours']:.0f} GPU hours" in readme and f"({xla['epochs within 8 h']} epochs per run" in readme


def test_gpu_benchmark_runs_a_case_on_cpu(tmp_path):
    from alllib.evidence import bench

    out = tmp_path / "gpu.csv"
    table = bench.gpu(
        "smoke",
        steps=1,
        warmup=1,
        backbones=["mobilenet"],
        sizes=(300,),
        precisions=("fp32",),
        concurrency=(1,),
        out=out,
    )
    assert list(table["status"]) == ["ok", "ok"] and table["compile"].iloc[1] == "graph"
    assert table["compile"].iloc[0] in ("xla", "graph (XLA unsupported)")  # TensorFlow on CPU may fall back
    assert (table["train_images_per_s"] > 0).all() and len(pd.read_csv(out)) == 2
    # each row is the case it names: the smoke profile's batch and tensor side (300 px x its input scale)
    from alllib.method.preprocessing import input_pixels
    from alllib.study.profile import load_profile

    cfg = load_profile("smoke", bench.NO_DATA)
    assert set(table["batch_size"]) == {cfg.training_for("mobilenet").batch_size}
    assert set(table["input_px"]) == {input_pixels(300, cfg.input_scale)}
    assert pd.read_csv(out)["backbone"].tolist() == ["mobilenet", "mobilenet"]
    # the time budget is kept: with none left, no case is started
    none = bench.gpu(
        "smoke",
        seconds=-1,
        steps=1,
        warmup=1,
        backbones=["mobilenet"],
        sizes=(300,),
        precisions=("fp32",),
        concurrency=(1,),
    )
    assert none.empty


def test_data_growth_recovers_a_power_law():
    from alllib.evidence import bench

    images = np.array([100, 1000, 10000])
    table = pd.DataFrame(
        [
            {"step": step, "images": n, "seconds": c * n**b, "added MB": 5, "scale": n / 10000}
            for step, c, b in (("linear", 1e-3, 1.0), ("quadratic", 1e-6, 2.0))
            for n in images
        ]
    )
    g = bench.data_growth(table).set_index("step")
    assert g.loc["linear", "growth exponent"] == 1.0 and g.loc["quadratic", "growth exponent"] == 2.0
    assert g.loc["linear", "s per 1000 images"] == 1.0  # 1e-3 s per image


def test_data_scaling_times_each_step_against_the_trees_own_manifest(synth_root):
    from alllib.evidence import bench

    table = bench.data_scaling([synth_root], steps=("verify full", "read_cnmc", "subject_split"))
    assert list(table["step"]) == ["verify full", "read_cnmc", "subject_split"]
    assert (table["images"] > 0).all() and (table["peak MB"] >= table["baseline MB"]).all()
    manifest = pd.read_csv(synth_root.parent / "own_manifest.tsv", sep="\t")
    assert len(manifest) == table["images"].iloc[0] and manifest["sha256"].str.len().eq(64).all()


def test_run_phases_average_per_backbone_and_size_and_shares_weigh_by_runs():
    from alllib.evidence import bench
    from alllib.study.runs import Run

    def run(display, size, steps, saving):
        phases = {"training steps": steps, "saving": saving}
        return Run.of(display=display, input_size=size, seed=0, phases=phases, wall_seconds=steps + saving)

    runs = [
        run("VGG-16", 300, 10, 2),
        run("VGG-16", 300, 20, 4),
        run("MobileNet", 300, 4, 0),
        Run.of(display="X", input_size=300, seed=0),
    ]
    table = bench.run_phases(runs)  # the run without phases (recorded before them) is left out
    assert list(table["backbone"]) == ["VGG-16", "MobileNet"] and list(table["runs"]) == [2, 1]
    assert table.loc[0, "training steps"] == 15 and table.loc[0, "wall per run"] == 18
    shares = bench.phase_shares(table)
    assert shares.loc["training steps", "seconds per run"] == pytest.approx(34 / 3, abs=0.05)
    assert shares.loc["saving", "share of run time"] == f"{6 / 40:.1%}"  # 6 of the 40 seconds, by runs
    assert "training steps took 85% of the 0.7 min" in bench.phase_sentence(table)
    assert "No run" in bench.phase_sentence(bench.run_phases([]))


def test_the_gpu_plan_measures_what_the_estimate_needs_first():
    from alllib.evidence import bench

    plan = bench.gpu_plan("jax", ["vgg16", "mobilenet"], [300, 450], ["fp32", "mixed"], (1, 2, 4))
    assert plan[:4] == [
        ("alone", "vgg16", 300, "fp32", "xla", 1),
        ("alone", "mobilenet", 300, "fp32", "xla", 1),
        ("alone", "vgg16", 300, "mixed", "xla", 1),
        ("alone", "mobilenet", 300, "mixed", "xla", 1),
    ]
    together = [c for c in plan if c[0] == "together"]
    assert [(c[1], c[5]) for c in together] == [("vgg16", 2), ("mobilenet", 2), ("vgg16", 4), ("mobilenet", 4)]
    assert {c[3] for c in together} == {"mixed"} and plan.index(together[-1]) < plan.index(plan[-1])
    assert plan[-2:] == [("alone", "vgg16", 300, "fp32", "no jit", 1), ("alone", "mobilenet", 300, "fp32", "no jit", 1)]
    assert len(plan) == 4 + 4 + 4 + 2  # each case once


def test_paper_matrix_hours_with_runs_side_by_side_against_a_hand_count():
    """Packing speed-ups: each backbone's runs are faster by its own measured factor; a backbone measured
    alone only takes the mean factor of the others at that packing, and the row says so."""
    from alllib.evidence import bench

    alone = _gpu_table(100.0, 400.0)
    alone["concurrent_runs"] = 1
    factor = {"vgg16": 2.0, "xception": 1.5, "mobilenet": 2.5, "inception_resnet_v2": 1.0}  # densenet121: none
    together = alone[alone["input_size"] == 300].copy()
    together = together[together["backbone"].isin(factor)]
    together["concurrent_runs"] = 4
    together["train_images_per_s"] = [100.0 * factor[b] for b in together["backbone"]]
    together["predict_images_per_s"] = float("nan")
    table = pd.concat([alone, together], ignore_index=True)
    speedup = bench.packing_speedup(table).set_index("backbone")["speedup"].to_dict()
    assert speedup == factor
    hours = bench.paper_matrix_hours(table, epochs=1)
    one, four = (hours[hours["runs per GPU"] == k].iloc[0] for k in (1, 4))
    assert one["hours"] == bench.paper_matrix_hours(_gpu_table(100.0, 400.0), epochs=1).iloc[0]["hours"]
    # equal rates: every backbone's six runs (one at 450 px, five at 300 px) cost the same
    per_backbone = 6 * (one["train images/epoch"] / 100 + one["validation images"] / 400) / 3600
    mean = sum(factor.values()) / len(factor)
    expected = sum(per_backbone / f for f in [*factor.values(), mean])
    assert four["hours"] == pytest.approx(expected, abs=0.051)  # hours are rounded to 0.1
    assert (
        four["speed-up assumed (mean of the others)"] == "densenet121"
        and one["speed-up assumed (mean of the others)"] == ""
    )


def test_several_runs_side_by_side_are_measured_together_on_cpu():
    """The concurrency case on CPU (TensorFlow): two worker processes compile, wait for each other, then
    train together; the row is their aggregate rate."""
    from alllib.evidence import bench

    row = bench.concurrent_case("smoke", "mobilenet", 300, "fp32", "graph", runs=2, window=1.0, warmup=1)
    assert row["status"] == "ok" and row["concurrent_runs"] == 2 and row["train_images_per_s"] > 0
