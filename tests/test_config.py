import pytest

from alllib.errors import ConfigError
from alllib.results import paper
from alllib.study import profile as config


def test_paper_profile_is_the_papers_protocol():
    hp = paper.hyperparameters()
    tr = config.load_profile("paper", data_dir="/nonexistent/C-NMC_Leukemia").training
    assert tr.learning_rate == float(hp["initial_learning_rate"])
    assert tr.beta_1 == float(hp["adamax_beta_1"]) and tr.beta_2 == float(hp["adamax_beta_2"])
    assert tr.clr_base_lr == float(hp["clr_base_lr"]) and tr.clr_max_lr == float(hp["clr_max_lr"])
    assert tr.epochs == int(hp["max_epochs"]) and tr.patience == int(hp["early_stopping_patience"])
    assert tr.batch_size == int(hp["batch_size"])
    assert hp["clr_step_size"].startswith(f"{tr.clr_step_epochs} x iterations per epoch")
    assert tr.recalibrate_batchnorm is False and tr.run_eagerly is False
    cfg = config.load_profile("paper", data_dir="/x")
    assert cfg.weights == "imagenet" and cfg.input_scale == 1.0
    assert cfg.runs == {450: [0], 300: [0, 1, 2, 3, 4]}


def test_paper_profile_needs_data():
    with pytest.raises(ConfigError, match="DATA_DIR"):
        config.load_profile("paper")


@pytest.mark.parametrize("name", ["smoke", "demo"])
def test_cpu_profiles_run_every_backbone_offline(name):
    cfg = config.load_profile(name)
    assert cfg.weights == "none" and cfg.data.source == "synthetic"
    assert len(cfg.backbones) == 5 and set(cfg.runs) == {450, 300}
    assert len(cfg.runs[300]) >= 2


def test_overrides():
    cfg = config.load_profile("smoke", ["epochs=3", "training.batch_size=4", "input_scale=0.5"])
    assert cfg.training.epochs == 3 and cfg.training.batch_size == 4 and cfg.input_scale == 0.5


def test_per_backbone_training_settings(tmp_path):
    import yaml

    raw = yaml.safe_load(config.profile_path("smoke").read_text())
    raw["training"]["per_backbone"] = {"MobileNet": {"epochs": 5}, "vgg16": {"epochs": 3, "clr_max_lr": 2e-4}}
    path = tmp_path / "tuned.yml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config.load_profile(str(path))
    assert cfg.training_for("mobilenet").epochs == 5
    vgg = cfg.training_for("VGG-16")
    assert (vgg.epochs, vgg.clr_max_lr) == (3, 2e-4)
    dense = cfg.training_for("densenet121")
    assert (dense.epochs, dense.clr_max_lr) == (raw["training"]["epochs"], raw["training"]["clr_max_lr"])
    assert "per_backbone" not in vgg.model_dump()  # a run records the settings it used, and nothing else
    # the run key hashes the resolved settings: only the named backbones' runs change
    from alllib.study.runs import run_key

    plain = config.load_profile("smoke")
    assert run_key(cfg, "densenet121", 300, 0, "x") == run_key(plain, "densenet121", 300, 0, "x")
    assert run_key(cfg, "mobilenet", 300, 0, "x") != run_key(plain, "mobilenet", 300, 0, "x")
    # one entry can be overridden by its full path; a bare `epochs=N` sets every backbone
    assert config.load_profile(str(path), ["training.per_backbone.vgg16.epochs=7"]).training_for("vgg16").epochs == 7
    everyone = config.load_profile(str(path), ["epochs=2", "clr_max_lr=1e-3"])
    assert {(everyone.training_for(b).epochs, everyone.training_for(b).clr_max_lr) for b in plain.backbones} == {
        (2, 1e-3)
    }
    for bad, match in [
        ({"resnet50": {"epochs": 3}}, "unknown backbone 'resnet50'"),
        ({"mobilenet": {"epochs": 0}}, r"setting training.per_backbone.mobilenet.epochs = 0: input should be greater"),
        ({"vgg16": {"clr_max_lr": 1e-9}}, "must be below clr_max_lr"),
        ({"vgg16": {"learning_rat": 1e-3}}, r"unknown setting 'training.per_backbone.vgg16.learning_rat'"),
        ({"vgg16": 3}, "expected a mapping of backbone names to training settings"),
    ]:
        raw["training"]["per_backbone"] = bad
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=match):
            config.load_profile(str(path))


@pytest.mark.parametrize(
    "override,match",
    [
        ("epochs=0", r"setting training.epochs = 0: input should be greater than or equal to 1"),
        ("nonsense=1", "unknown setting 'nonsense'"),
        ("epochs", "must look like key=value"),
        ("input_scale=0.1", "Xception needs inputs of at least 71 px"),
        ("input_scale=2", r"setting input_scale = 2: input should be less than or equal to 1"),
        ("backbones=[resnet50]", "unknown backbone 'resnet50'"),
        ("backbones=[vgg16,vgg16]", r"names one backbone twice \(vgg16\): every run would be scheduled twice"),
        ("backbones=[vgg16,VGG-16]", r"names one backbone twice \(VGG-16, vgg16\)"),
        ("runs={}", r"setting runs = \{\}: expected at least one input size"),
        ("name=../..", r"setting name = '../..': a profile name names its folder results/<name>/"),
        ("name=a/b", "must be a plain name"),
        ("clr_max_lr=1e-8", "must be below clr_max_lr"),
        ("weights=/no/such/file.h5", "weights must be 'imagenet', 'none' or an existing weights file"),
        ("xla=true", "run_eagerly and xla exclude each other"),  # smoke runs eagerly
        # one per type of setting, as a new user would mistype them
        ("beta_1=abc", r"setting training.beta_1 = 'abc': input should be a valid number"),
        ("beta_2=abc", r"setting training.beta_2 = 'abc': input should be a valid number"),
        ("difficulty=abc", r"setting data.difficulty = 'abc': input should be a valid number"),
        ("synthetic_scale=abc", r"setting data.synthetic_scale = 'abc': input should be a valid number"),
        ("difficulty=", r"setting data.difficulty has no value"),
        (
            "bn_recalibration_images=abc",
            r"setting training.bn_recalibration_images = 'abc': input should be a valid integer",
        ),
        ("stats.bootstrap=abc", r"setting stats.bootstrap = 'abc': input should be a valid integer"),
        ("gradcam.images=abc", r"setting gradcam.images = 'abc': input should be a valid integer"),
        (
            "recalibrate_batchnorm=abc",
            r"setting training.recalibrate_batchnorm = 'abc': input should be a valid boolean",
        ),
        ("deterministic=abc", r"setting training.deterministic = 'abc': input should be a valid boolean"),
        ("augment.zoom=abc", r"setting augment.zoom = 'abc': input should be a valid number"),
        ("augment.zoom=1.5", r"setting augment.zoom = 1.5: input should be less than 1"),
        (
            "gradcam.method=gradcam+",
            r"setting gradcam.method = 'gradcam\+': input should be 'gradcam' or 'gradcam\+\+'",
        ),
        ("split=random", r"setting split = 'random': input should be 'fixed' or 'per_seed'"),
        ("runs={300: [-1]}", r"setting runs.300.0 = -1: input should be greater than or equal to 0"),
        ("runs={600: [0]}", r"may only name input sizes"),
        ("batch_size=2.5", r"setting training.batch_size = 2.5: input should be a valid integer"),
        ("description=[1]", r"setting description = \[1\]: input should be a valid string"),
    ],
)
def test_impossible_settings_are_named(override, match):
    with pytest.raises(ConfigError, match=match) as err:
        config.load_profile("smoke", [override])
    assert "\n" not in str(err.value)  # one line


def test_a_bare_backbone_name_is_a_list():
    assert config.load_profile("smoke", ["backbones=vgg16"]).backbones == ["vgg16"]
    assert config.load_profile("smoke", ["backbones=[VGG-16, MobileNet]"]).backbones == ["vgg16", "mobilenet"]


def test_every_profile_key_is_in_the_schema_with_a_meaning():
    import yaml

    table = config.settings_table()
    assert table["meaning"].str.len().gt(0).all() and table["type"].str.len().gt(0).all()
    keys = set(table["setting"])
    for name in config.PROFILES:
        raw = yaml.safe_load(config.profile_path(name).read_text())
        for path in config._leaf_paths(raw):
            if "per_backbone" not in path:
                assert ".".join(path) in keys, f"{name}: {'.'.join(path)} is not in the schema"


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        config.load_profile("fast")


def test_demo_difficulty_comes_from_the_recorded_calibration():
    from importlib import resources

    import pandas as pd

    cal = pd.read_csv(resources.files("alllib") / "data" / "calibration_demo.csv")
    assert {"difficulty", "backbone", "val_BA", "test_BA", "recorded", "commit"} <= set(cal.columns)
    cfg = config.load_profile("demo")
    chosen = cal[cal["difficulty"] == cfg.data.difficulty]
    assert len(chosen), "the demo's difficulty is not among the calibrated values"
    # the default is the one the calibration chooses on validation (test plays no part)
    from alllib.evidence.recorded import calibration_choice

    assert calibration_choice(cal) == cfg.data.difficulty


def test_method_notes_state_the_demo_per_backbone_settings():
    """book/method.md describes the demo's per-backbone departures in prose; this keeps the prose
    and the profile (the one source of the values) from drifting apart."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "book" / "method.md").read_text()
    cfg = config.load_profile("demo")
    per = cfg.training.per_backbone
    assert set(per) == {"vgg16", "mobilenet"}, "method.md describes VGG-16 and MobileNet only; update it"
    peak = float(re.search(r"\*VGG-16 peaks at ([0-9]+(?:\.[0-9]+)?e-[0-9]+)\*", text).group(1))
    assert peak == cfg.training_for("vgg16").clr_max_lr
    assert (
        float(re.search(r"a tenth of the paper's ([0-9]+(?:\.[0-9]+)?e-[0-9]+)", text).group(1))
        == cfg.training.clr_max_lr
    )
    epochs = re.search(r"\*MobileNet trains (\d+) epochs\*.*?where the others train (\d+)", text, re.S)
    assert int(epochs.group(1)) == cfg.training_for("mobilenet").epochs
    assert int(epochs.group(2)) == cfg.training.epochs
    from alllib.evidence.recorded import CALIBRATION_WINDOW

    assert f"between {CALIBRATION_WINDOW[0]} and {CALIBRATION_WINDOW[1]}" in text  # the calibration rule as coded
    step = cfg.training.clr_step_epochs
    assert cfg.training_for("mobilenet").epochs == 2 * step  # "one whole triangular2 cycle"
