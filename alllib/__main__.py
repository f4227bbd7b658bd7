"""Command line: `python -m alllib study|settings|verify|synthesize|calibrate|trial|predict|submit|export|bench ...`
(see --help). Each subcommand has a function that declares its arguments and one that runs it; the
library is imported inside the running one, so that a command loads only what it runs (TensorFlow,
matplotlib and submitit stay out of `settings` and `verify`)."""

from __future__ import annotations

import argparse
import sys

from alllib.errors import ConfigError, StudyError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1, refused by name otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="alllib", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (
        _study_parser,
        _settings_parser,
        _verify_parser,
        _synthesize_parser,
        _calibrate_parser,
        _trial_parser,
        _use_parsers,
        _bench_parser,
    ):
        add(sub)
    return ap


def _study_parser(sub) -> None:
    """`study`: the whole study and its book."""
    s = sub.add_parser(
        "study",
        help="run the study and build the book",
        epilog="Every setting a --set can change, with its type and meaning: python -m alllib settings",
    )
    s.add_argument("--profile", default="demo", help="smoke | demo | paper | path to a profile .yml")
    s.add_argument("--data-dir", help="the real data: path to C-NMC_Leukemia/ (default: synthetic)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. epochs=3")
    s.add_argument("--results", help="results folder (default: results/ in the project)")
    s.add_argument("--root", help="project root with _config.yml, _toc.yml, book/ and notebooks/")
    s.add_argument("--gpus", default="", help="comma-separated GPU ids: one training run per GPU side by side")
    s.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        help="with --gpus: training runs side by side on each GPU (default: the profile's executor.runs_per_gpu)",
    )
    s.add_argument(
        "--jobs",
        type=positive_int,
        help="CPU training runs, then analysis chapters, side by side (default: the profile's jobs)",
    )
    s.add_argument("--no-book", action="store_true", help="run the notebooks but do not build the HTML")
    s.add_argument(
        "--verify-runs",
        action="store_true",
        help="check the sha256 of every finished run's files before reusing it (sizes are always checked)",
    )
    s.add_argument(
        "--only",
        action="append",
        metavar="CHAPTER",
        help="execute only this chapter (e.g. 03_ensemble_ablation; repeatable) from the finished runs, then "
        "rebuild the book",
    )
    s.add_argument(
        "--executor",
        choices=["local", "slurm", "submitit_local"],
        help="where training runs execute (default: the profile's executor.kind, local); job options: "
        "--set partition=... gpus_per_job=... cpus_per_job=... mem_gb=... time_min=... array_parallelism=...",
    )
    s.set_defaults(run=_study)


def _settings_parser(sub) -> None:
    sub.add_parser(
        "settings", help="list every profile setting: key, type, meaning (the schema of alllib.study.profile)"
    ).set_defaults(run=_settings)


def _verify_parser(sub) -> None:
    """`verify`: a data root against the official manifest, or a study's finished runs against their records."""
    v = sub.add_parser(
        "verify", help="check a data root against the official C-NMC-2019 manifest, or a study's runs (--runs)"
    )
    v.add_argument("root", nargs="?", help="path to C-NMC_Leukemia/")
    v.add_argument("--full", action="store_true", help="compare sha256 (slow) instead of file sizes")
    v.add_argument(
        "--runs", metavar="RESULTS", help="instead: check every run of a study (e.g. results/demo), sizes and sha256"
    )
    v.set_defaults(run=_verify)


def _synthesize_parser(sub) -> None:
    """`synthesize`: the synthetic stand-in."""
    g = sub.add_parser("synthesize", help="write a synthetic C-NMC-like data set")
    g.add_argument("out", help="output folder (C-NMC_Leukemia/ and masks/ are created inside)")
    g.add_argument("--scale", type=float, default=0.08)
    g.add_argument("--difficulty", type=float, default=0.5)
    g.add_argument("--seed", type=int, default=2019)
    g.add_argument("--format", default="png", choices=["png", "bmp"])
    g.add_argument("--workers", type=int, help="processes drawing cells (default: one per CPU; the set is the same)")
    g.set_defaults(run=_synthesize)


def _calibrate_parser(sub) -> None:
    """`calibrate`: the synthetic difficulty, recorded."""
    c = sub.add_parser("calibrate", help="train two backbones at several synthetic difficulties and tabulate BA")
    c.add_argument("--profile", default="demo")
    c.add_argument("--difficulties", default="0.3,0.5")
    c.add_argument("--out", default=None, help="CSV to write (default: alllib/data/calibration_<profile>.csv)")
    c.set_defaults(run=_calibrate)


def _trial_parser(sub) -> None:
    """`trial`: a recorded comparison of settings."""
    t = sub.add_parser("trial", help="train backbones under several settings and tabulate BA (recorded evidence)")
    t.add_argument("--profile", default="demo")
    t.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="one variant's overrides (repeat for each variant); '' = the profile as it is",
    )
    t.add_argument("--backbones", default="vgg16")
    t.add_argument("--size", type=int, default=300, choices=[450, 300])
    t.add_argument("--seeds", default="0")
    t.add_argument("--out", help="CSV to write, e.g. alllib/data/trial_<topic>_<profile>.csv")
    t.set_defaults(run=_trial)


def _use_parsers(sub) -> None:
    """`predict`, `submit` and `export`: using a finished study's ensemble."""
    for name, helptext in (
        ("predict", "apply a finished study's ensemble to image files or folders (a CSV of probabilities)"),
        ("submit", "write the challenge's isbi_valid.predict and its zip for a test folder"),
        ("export", "write the ensemble as one Keras model (.keras) and a SavedModel with a serve() endpoint"),
    ):
        q = sub.add_parser(name, help=helptext)
        if name == "predict":
            q.add_argument("images", nargs="+", help="image files (BMP, PNG, JPEG) or folders of them")
            q.add_argument("--out", required=True, help="CSV to write (refused if it exists, unless --force)")
            q.add_argument("--cam", metavar="DIR", help="also write a Grad-CAM overlay PNG per image (the ensemble's)")
            q.add_argument("--cam-models", action="store_true", help="with --cam: one overlay per member too")
        elif name == "export":
            q.add_argument("--out-dir", required=True, help="where ensemble.keras and saved_model/ go")
        else:
            q.add_argument(
                "folder",
                nargs="?",
                help="the test folder (default: the study's testing_data/C-NMC_test_final_phase_data/; the "
                "preliminary folder checks the command against its labels)",
            )
            q.add_argument("--out-dir", required=True, help="where isbi_valid.predict and isbi_valid.zip go")
        q.add_argument("--study", help="a finished study's results folder, e.g. results/demo")
        q.add_argument("--profile", default="demo", help="or: the study's profile (with --data-dir, --results)")
        q.add_argument("--data-dir")
        q.add_argument("--results")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        q.add_argument(
            "--size", type=int, choices=[450, 300], help="default: the size the study found better on validation"
        )
        q.add_argument("--method", default="wen-kappa", choices=["wen-kappa", "wen-f1", "wen-auc", "soft-vote"])
        q.add_argument(
            "--weights-from",
            default="validation",
            choices=["validation", "test"],
            help="validation: leak-free (default); test: as the paper did",
        )
        q.add_argument("--seed", type=int, help="the runs' seed (default: the first seed at that size)")
        q.add_argument("--resize", action="store_true", help="resize images of other sizes to 450 x 450")
        q.add_argument("--batch-size", type=positive_int, default=32)
        q.add_argument("--force", action="store_true", help="replace existing output files")
        q.set_defaults(run=_use)


def _bench_parser(sub) -> None:
    """`bench`: throughput benchmarks."""
    b = sub.add_parser("bench", help="throughput benchmarks (input pipeline, training, ensemble ablation)")
    b.add_argument("what", choices=["pipeline", "training", "ensemble", "data", "gpu", "predict"])
    b.add_argument("--seconds", type=float, default=420.0, help="gpu: start no new case after this many seconds")
    b.add_argument("--sizes", default="300,450", help="gpu: input sizes (px), in the order measured")
    b.add_argument(
        "--roots",
        help="data: comma-separated synthetic trees (synthesize --format bmp --scale S) to time each step "
        "of the data layer on, with its peak memory (default: read and fingerprint a skeleton of the real tree)",
    )
    b.add_argument("--precisions", default="fp32,mixed", help="gpu: fp32 and/or mixed, in the order measured")
    b.add_argument(
        "--concurrency",
        default="1,2,4,8",
        help="gpu: training runs side by side on the one GPU (aggregate images/s; 1 = each case alone)",
    )
    b.add_argument("--profile", default="smoke")
    b.add_argument(
        "--out",
        help="also write the table as CSV, with the date, machine and commit (e.g. "
        "alllib/data/bench_training.csv, which the training chapter shows)",
    )
    b.set_defaults(run=_bench)


def _study(args) -> None:
    from alllib.pipeline import run_study

    run_study(
        args.profile,
        args.set + ([f"executor.kind={args.executor}"] if args.executor else []),
        args.data_dir,
        args.results,
        args.root,
        [g for g in args.gpus.split(",") if g],
        book=not args.no_book,
        jobs=args.jobs,
        runs_per_gpu=args.runs_per_gpu,
        only=args.only,
        verify_runs=args.verify_runs,
    )


def _settings(args) -> None:
    from alllib.study.profile import settings_table

    print(settings_table().to_string(index=False))


def _verify(args) -> int:
    from alllib.method.dataset import format_report, verify_manifest

    if (args.root is None) == (args.runs is None):
        raise ConfigError("verify takes a data root (C-NMC_Leukemia/) or --runs <results folder>, one of the two")
    if args.runs:
        from alllib.study.runs import verify_runs

        table = verify_runs(args.runs)
        print(table.to_string(index=False))
        return 1 if (table["state"] != "sound").any() else 0
    report = verify_manifest(args.root, full=args.full)
    print(format_report(report))
    return 0 if report["ok"] else 1


def _synthesize(args) -> None:
    from alllib.study.synthetic import synthesize

    print(synthesize(args.out, args.scale, args.difficulty, args.seed, args.format, workers=args.workers))


def _calibrate(args) -> None:
    from alllib.evidence.recorded import calibrate, recorded_path

    out = args.out or recorded_path(f"calibration_{args.profile}")
    difficulties = [float(d) for d in args.difficulties.split(",")]
    print(calibrate(args.profile, difficulties, out=out).to_string(index=False))


def _trial(args) -> None:
    from alllib.evidence.recorded import trial

    variants = [[o for o in v.split(",") if o] for v in args.vary]
    seeds = [int(x) for x in args.seeds.split(",")]
    print(
        trial(args.profile, variants, args.backbones.split(","), args.size, seeds, out=args.out).to_string(index=False)
    )


def _use(args) -> None:
    """predict, submit or export: the study's ensemble, then the one thing asked of it."""
    from alllib.book.notebook import quiet_tensorflow
    from alllib.use import predict as pr

    quiet_tensorflow()
    study = pr.open_study(args.study, args.profile, args.set, args.data_dir, args.results)
    ens = pr.load_ensemble(study, args.size, args.method, args.weights_from, args.seed)
    print(f"[predict] {ens.weights_source}; {pr.FINAL_CROP_NOTE}", file=sys.stderr)
    if study.data_info.get("synthetic"):
        print(
            "[predict] these models were trained on SYNTHETIC images: their outputs mean nothing clinically",
            file=sys.stderr,
        )
    {"export": _export, "predict": _predict, "submit": _submit}[args.cmd](args, study, ens)


def _export(args, study, ens) -> None:
    from alllib.use import predict as pr

    for key, value in pr.export(ens, args.out_dir, args.force).items():
        print(f"{key}: {value}")


def _predict(args, study, ens) -> None:
    from alllib.use import predict as pr

    files = pr.collect_images(args.images)
    pr.check_destination(args.out, "file", args.force)  # every destination refused before any work
    if args.cam:
        pr.check_destination(args.cam, "folder")
        pr.overlay_stems(files)
    table = pr.predict(ens, files, args.resize, args.batch_size)
    print(pr.write_table(table, args.out, args.force))  # the predictions first: an overlay failure keeps them
    if args.cam:
        images, maps = pr.cam_maps(ens, files, table, args.resize)
        written = pr.write_overlays(images, maps, files, args.cam, args.cam_models, args.force)
        print(f"[predict] {len(written)} overlays in {args.cam}", file=sys.stderr)


def _submit(args, study, ens) -> None:
    from alllib.method.dataset import FINAL_DIR
    from alllib.use import predict as pr

    folder = args.folder or str(study.data_root / FINAL_DIR)
    files = pr.collect_images([folder])
    pr.check_submission_names(files)  # names and the destination refused before any work
    pr.check_destination(args.out_dir, "folder")
    table = pr.predict(ens, files, args.resize, args.batch_size)
    for path in pr.submission(table, args.out_dir, args.force):
        print(path)


def _bench(args) -> None:
    from alllib.evidence import bench

    if args.what == "gpu":  # writes --out after every case itself
        sizes = [int(x) for x in args.sizes.split(",")]
        table = bench.gpu(
            args.profile,
            seconds=args.seconds,
            sizes=sizes,
            precisions=args.precisions.split(","),
            concurrency=tuple(int(k) for k in args.concurrency.split(",")),
            out=args.out,
        )
        print(table.to_string(index=False))
        print(bench.paper_matrix_hours(table, args.profile).to_string(index=False))
        return
    if args.what == "data" and args.roots:
        table = bench.data_scaling(args.roots.split(","))
    else:
        table = getattr(bench, args.what)(args.profile)
    print(table.to_string(index=False))
    if args.out:
        bench.record(table, args.out, args.profile)


if __name__ == "__main__":
    sys.exit(main())
