import numpy as np
import pytest

from alllib.errors import ConfigError
from alllib.method import models
from alllib.results import gradcam


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


def _tape_gradcam(model, images, classes, layer):
    """Grad-CAM written out with a GradientTape: the class logit (softmax removed), gradients
    averaged over space as channel weights, ReLU of the weighted sum, min-max normalised."""
    import keras
    import tensorflow as tf

    feat = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("predictions").input])
    dense = model.get_layer("predictions")
    x = tf.constant(images, tf.float32)
    with tf.GradientTape() as tape:
        A, pooled = feat(x)
        logits = tf.matmul(pooled, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    g = tape.gradient(score, A).numpy()
    cam = np.maximum((g.mean(axis=(1, 2), keepdims=True) * A.numpy()).sum(-1), 0)
    return gradcam.normalise(cam)


def test_map_matches_gradient_tape_computation():
    model = _tiny_model()
    images = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    classes = np.array([0, 1, 1, 0, 1])
    ours = gradcam.class_activation_maps(model, images, classes, "conv_b", expand=False, batch_size=2)
    ref = _tape_gradcam(model, images, classes, "conv_b")
    assert ours.shape == ref.shape == (5, 8, 8)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_map_shape_and_range():
    model = _tiny_model()
    images = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    for method in gradcam.METHODS:
        maps = gradcam.class_activation_maps(model, images, [1, 1, 0], "conv_b", method=method)
        assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
        assert maps.min() >= 0 and maps.max() <= 1


def test_unknown_method_and_layer():
    model = _tiny_model()
    x = np.zeros((1, 16, 16, 3), "float32")
    with pytest.raises(ConfigError, match="unknown Grad-CAM method 'cam'"):
        gradcam.class_activation_maps(model, x, [0], "conv_b", method="cam")
    with pytest.raises(ValueError):
        gradcam.class_activation_maps(model, x, [0], "block14_sepconv2_act")


def test_ensemble_map_of_one_model_is_that_map():
    m = np.random.default_rng(0).random((3, 10, 10)).astype("float32")
    np.testing.assert_allclose(gradcam.ensemble_map([m], [0.7]), gradcam.normalise(m), atol=1e-6)


def test_ensemble_map_weights():
    a = np.zeros((1, 4, 4), "float32")
    a[0, 0, 0] = 1
    b = np.zeros((1, 4, 4), "float32")
    b[0, 3, 3] = 1
    e = gradcam.ensemble_map([a, b], [3, 1])
    assert e[0, 0, 0] == pytest.approx(1.0) and e[0, 3, 3] == pytest.approx(1 / 3)
    small = np.zeros((1, 2, 2), "float32")
    small[0, 0, 0] = 1
    assert gradcam.ensemble_map([a, small], [1, 1]).shape == (1, 4, 4)  # resized to the first map
    with pytest.raises(ConfigError, match="one positive-sum weight per map"):
        gradcam.ensemble_map([a, b], [1])


def test_concentration_measures():
    inside = np.zeros((1, 10, 10))
    inside[0, 4:6, 4:6] = 1
    spread = np.ones((1, 10, 10))
    mask = np.zeros((1, 10, 10))
    mask[0, 3:7, 3:7] = 1
    c = gradcam.concentration(np.concatenate([inside, spread]), np.concatenate([mask, mask]))
    assert c["energy_in_cell"].tolist() == pytest.approx([1.0, 0.16])
    assert c["entropy"][1] == pytest.approx(1.0) and c["entropy"][0] == pytest.approx(np.log(4) / np.log(100))
    assert gradcam.concentration(np.zeros((1, 3, 3)), np.ones((1, 3, 3)))["entropy"].isna().all()


@pytest.mark.parametrize("name", sorted(models.BACKBONES))
def test_the_registry_names_each_backbone_s_last_convolutional_feature_map(name):
    """Grad-CAM reads the registry's `last_conv` layer: it must be in the built model, give a spatial
    (4-D) map, and no layer after it may give one except pooling (else Grad-CAM would look too early)."""
    import keras

    bb = models.BACKBONES[name]
    m = models.build_model(name, max(bb.min_size, 75))
    names = [layer.name for layer in m.layers]
    assert bb.last_conv in names
    at = names.index(bb.last_conv)
    assert len(m.get_layer(bb.last_conv).output.shape) == 4
    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D)
    later = [
        layer.name
        for layer in m.layers[at + 1 :]
        if len(getattr(layer.output, "shape", ())) == 4 and not isinstance(layer, pooling)
    ]
    assert later == [], f"{name}: spatial layers after {bb.last_conv}: {later}"


def test_gradcam_on_a_registry_model():
    m = models.build_model("mobilenet", 64)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    layer = models.BACKBONES["mobilenet"].last_conv
    maps = gradcam.class_activation_maps(m, x, [0, 1], layer)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    # Grad-CAM written out (Selvaraju et al.): the class's pre-softmax score, its gradient at the layer,
    # channel weights = the gradient's spatial mean, map = ReLU of the weighted sum, scaled to [0, 1]
    import keras
    import tensorflow as tf

    probe = keras.Model(m.inputs, [m.get_layer(layer).output, m.get_layer("predictions").input])
    dense = m.get_layer("predictions")
    with tf.GradientTape() as tape:
        fmap, features = probe(x)
        logits = tf.matmul(features, dense.kernel) + dense.bias
        score = tf.reduce_sum(logits * tf.one_hot([0, 1], 2))  # image 0 scored as Hem, image 1 as ALL
    grads = tape.gradient(score, fmap).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * fmap.numpy()).sum(-1), 0)
    coarse = gradcam.class_activation_maps(m, x, [0, 1], layer, expand=False)
    assert coarse.shape == cam.shape
    np.testing.assert_allclose(coarse, gradcam.normalise(cam), atol=1e-4)
