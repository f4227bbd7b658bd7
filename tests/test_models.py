import numpy as np
import pytest

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


def test_imagenet_unavailable_fails_fast_and_names_alternatives(monkeypatch):
    import keras

    def offline(*a, **k):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "MobileNet", offline)
    with pytest.raises(WeightsUnavailable, match="weights=none") as err:
        models.build_model("mobilenet", 64, weights="imagenet")
    assert "Keras cache" in str(err.value) and "weights=<path" in str(err.value)


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
