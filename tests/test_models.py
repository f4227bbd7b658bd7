import re
from pathlib import Path

import numpy as np
import pytest

from alllib import io
from alllib.errors import ConfigError, WeightsUnavailable
from alllib.method import models


@pytest.mark.parametrize(
    "key,module",
    [
        ("vgg16", "vgg16"),
        ("xception", "xception"),
        ("mobilenet", "mobilenet"),
        ("inception_resnet_v2", "inception_resnet_v2"),
        ("densenet121", "densenet"),
    ],
)
def test_preprocessing_matches_keras(key, module):
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = np.asarray(models.preprocess(x, models.BACKBONES[key].preprocessing))
    ref = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=1e-5, atol=1e-4)


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet50': expected one of vgg16, xception"):
        models.get_backbone("resnet50")


def test_aliases():
    assert models.get_backbone("DenseNet-121").key == "densenet121"
    assert models.get_backbone("InceptionResNet-V2").key == "inception_resnet_v2"


def test_too_small_input():
    with pytest.raises(ConfigError, match="InceptionResNet-V2 needs inputs of at least 75 px, got 64 px"):
        models.build_model("inception_resnet_v2", 64)


def test_unknown_preprocessing_mode():
    with pytest.raises(ConfigError, match="unknown preprocessing mode 'yolo'"):
        models.preprocess(np.zeros((1, 2, 2, 3)), "yolo")


def test_imagenet_unavailable_fails_fast_and_names_alternatives(monkeypatch, tmp_path):
    import keras

    def offline(*a, **k):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailable, match="weights=none") as err:
        models.build_model("mobilenet", 64, weights="imagenet")
    assert f"Keras cache ({tmp_path / 'models'}/mobilenet_1_0_224_tf_no_top.h5)" in str(err.value)
    assert "weights=<path" in str(err.value)


def _official_like(key: str, px: int, cache: Path):
    """A weights file with the exact name and layer structure Keras downloads for `key` (Keras'
    own legacy HDF5 writer, the format of the official files), from the architecture with random
    values, in the cache `cache`; returns the backbone it was written from."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    bb = models.BACKBONES[key]
    keras.utils.set_random_seed(1)
    base = getattr(keras.applications, bb.application)(include_top=False, weights=None, input_shape=(px, px, 3))
    path = cache / models.imagenet_manifest()[key]["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    return base, path


@pytest.mark.parametrize("key", list(models.BACKBONES))
def test_imagenet_weights_load_from_the_keras_cache_offline(key, tmp_path, monkeypatch):
    """`weights: imagenet` with the official file in the Keras cache: loaded, with no network, and
    every backbone layer holds the file's values; a file that is not the official one is refused by
    name before h5py sees it."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("went to the network"))
    px = max(models.BACKBONES[key].min_size, 75)
    base, path = _official_like(key, px, tmp_path / "models")
    entry = {**models.imagenet_manifest()[key], "sha256": io.sha256(path)}  # as if recorded for this file
    monkeypatch.setattr(models, "imagenet_manifest", lambda: {key: entry})
    model = models.build_model(key, px, weights="imagenet")
    # in order, as Keras' loader matches them (auto-named layers such as conv2d_4 differ between builds)
    written = [layer for layer in base.layers if layer.weights]
    built = [layer for layer in model.layers if layer.weights and layer.name != "predictions"]
    assert len(written) == len(built) > 10
    for a, b in zip(written, built):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)
    with open(path, "r+b") as fh:  # a cut-off download
        fh.truncate(path.stat().st_size // 3)
    with pytest.raises(
        WeightsUnavailable, match=f"{path} is not the official ImageNet weights file of {key} .*Delete it"
    ):
        models.build_model(key, px, weights="imagenet")


def test_the_weights_manifest_agrees_with_keras():
    """File names, origins and md5 as the installed Keras' application modules give them."""
    import importlib

    modules = {
        "vgg16": "vgg16",
        "xception": "xception",
        "mobilenet": "mobilenet",
        "inception_resnet_v2": "inception_resnet_v2",
        "densenet121": "densenet",
    }
    manifest = models.imagenet_manifest()
    assert set(manifest) == set(models.BACKBONES)
    for key, entry in manifest.items():
        source = Path(importlib.import_module(f"keras.src.applications.{modules[key]}").__file__).read_text()
        source = re.sub(r'"\s*\n\s*(f?)"', "", source)  # adjacent string literals joined, as Python joins them
        assert entry["origin"].endswith("/" + entry["file"])
        assert entry["origin"].rsplit("/", 2)[-2] in source and (entry["md5"] in source if entry["md5"] else True)
        if key == "mobilenet":  # Keras builds the name and publishes no hash
            assert '"mobilenet_%s_%d_tf_no_top.h5"' in source and "file_hash" not in source
        else:
            assert entry["file"] in source


def test_missing_weights_file():
    with pytest.raises(ConfigError, match="weights file /no/such.h5 does not exist"):
        models.build_model("mobilenet", 64, weights="/no/such.h5")


@pytest.mark.parametrize("key", list(models.BACKBONES))
def test_flat_model_with_registry_layer(key):
    """Registry layer names exist in the built model, the backbone is flat (not one nested layer),
    and the Grad-CAM layer is the last 4-D activation before pooling."""
    import keras

    bb = models.BACKBONES[key]
    m = models.build_model(key, max(bb.min_size, 75))
    assert not any(isinstance(layer, keras.Model) for layer in m.layers)
    conv = m.get_layer(bb.last_conv)
    assert len(conv.output.shape) == 4
    names = [layer.name for layer in m.layers]
    after = names[names.index(bb.last_conv) + 1 :]
    assert all(len(m.get_layer(n).output.shape) != 4 or "pool" in n for n in after)
    assert m.output.shape[-1] == 2 and m.layers[1].name == "backbone_preprocessing"


def test_saved_model_round_trip(tmp_path):
    m = models.build_model("mobilenet", 40)
    x = np.random.default_rng(0).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    m.save(tmp_path / "m.keras")
    again = models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def _conv_bn_model(px=16):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((px, px, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_predict_batches_traces_once_and_predicts_the_same():
    import tensorflow as tf

    x = np.random.default_rng(1).uniform(0, 255, (11, 16, 16, 3)).astype("uint8")
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)  # 4, 4, 3: the last batch is smaller

    plain = _conv_bn_model()
    expected = plain.predict(ds, verbose=0)
    assert plain.predict_function.experimental_get_tracing_count() == 2  # what the helper saves: Keras retraces
    from_array = plain.predict(x, batch_size=4, verbose=0)  # the array path the TTA used before

    once = _conv_bn_model()
    got = models.predict_batches(once, ds)
    again = models.predict_batches(once, ds.map(lambda v: v[:, ::-1]))  # a second view: same spec, no new trace
    assert once.predict_function.experimental_get_tracing_count() == 1
    assert np.array_equal(got, expected) and np.array_equal(got, from_array)  # bit for bit
    assert np.array_equal(again, plain.predict(ds.map(lambda v: v[:, ::-1]), verbose=0))
