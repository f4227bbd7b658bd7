"""Section 4.1.3: the five backbones, fine-tuned as CNN_1..CNN_5.

Each model is built flat, in one functional graph: raw uint8-range RGB input -> the backbone's
own input preprocessing (a layer) -> the backbone's features -> global average pooling -> a
2-way softmax head (index 0 = Hem, 1 = ALL). Keeping the backbone flat (not nested as one layer)
lets Grad-CAM reach its last convolutional layer by name (tf-keras-vis issue #63).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from alllib.errors import ConfigError, WeightsUnavailable

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    key: str
    display: str  # name as in the paper's tables
    application: str  # keras.applications constructor
    preprocessing: str  # caffe | tf | torch (keras.applications.imagenet_utils modes)
    min_size: int  # smallest input side keras accepts without top
    last_conv: str  # layer Grad-CAM reads (the last convolutional activation)
    cpu_cost: float  # relative CPU seconds of one demo run at equal input size, measured on a 2-core
    # machine (graph tracing included); only the order in which the runner starts runs uses it


BACKBONES = {
    b.key: b
    for b in (
        Backbone("vgg16", "VGG-16", "VGG16", "caffe", 32, "block5_conv3", 1.0),
        Backbone("xception", "Xception", "Xception", "tf", 71, "block14_sepconv2_act", 0.9),
        Backbone("mobilenet", "MobileNet", "MobileNet", "tf", 32, "conv_pw_13_relu", 0.2),
        Backbone("inception_resnet_v2", "InceptionResNet-V2", "InceptionResNetV2", "tf", 75, "conv_7b_ac", 1.5),
        Backbone("densenet121", "DenseNet-121", "DenseNet121", "torch", 32, "relu", 0.9),
    )
}
DISPLAY_ORDER = [b.display for b in BACKBONES.values()]


def get_backbone(name: str) -> Backbone:
    key = str(name).lower().replace("-", "_")
    aliases = {b.display.lower().replace("-", "_"): b.key for b in BACKBONES.values()}
    key = aliases.get(key, key)
    if key not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    return BACKBONES[key]


def preprocess(x, mode: str):
    """The backbones' ImageNet input preprocessing, written out (pinned against keras' own functions
    in tests/test_models.py). `x`: float RGB in [0, 255]."""
    from keras import ops  # backend-neutral: the same layer runs under TensorFlow, JAX or PyTorch

    x = ops.cast(x, "float32")
    if mode == "caffe":
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, "float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - ops.convert_to_tensor(TORCH_MEAN, "float32")) / ops.convert_to_tensor(TORCH_STD, "float32")
    raise ConfigError(f"unknown preprocessing mode {mode!r}: expected caffe, tf or torch")


@functools.cache
def _layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="alllib")
    class BackbonePreprocessing(keras.layers.Layer):
        """Maps raw RGB [0, 255] to the input its backbone was trained on."""

        def __init__(self, mode: str, **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            return preprocess(x, self.mode)

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return BackbonePreprocessing


def preprocessing_layer(mode: str, name: str = "backbone_preprocessing"):
    return _layer_class()(mode, name=name)


IMAGENET_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "imagenet_weights.csv"


@functools.cache
def imagenet_manifest() -> dict[str, dict]:
    """The official ImageNet weights file of each backbone (without the classifier): its name in the
    Keras cache, where Keras downloads it from, and its hashes: md5 as Keras' source publishes it
    (none for MobileNet), sha256 where one has been recorded (tests/test_models.py keeps both in
    sync with Keras)."""
    with open(IMAGENET_WEIGHTS, newline="") as fh:
        return {row["backbone"]: row for row in csv.DictReader(fh)}


def weights_cache() -> Path:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "models"


def check_imagenet_file(path: Path, entry: dict) -> None:
    """Refuse a weights file that is not the official one (a truncated download would otherwise fail
    deep inside h5py), by its sha256 where recorded, else by Keras' md5."""
    for algo in ("sha256", "md5"):
        if entry.get(algo):
            h = hashlib.new(algo)
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            if h.hexdigest() != entry[algo]:
                raise WeightsUnavailable(
                    f"{path} is not the official ImageNet weights file of {entry['backbone']} ({algo} "
                    f"{h.hexdigest()}, expected {entry[algo]}; {path.stat().st_size} bytes): a cut-off or "
                    f"other download. Delete it; it is fetched again from {entry['origin']}"
                )
            return


def imagenet_file(bb: Backbone) -> Path:
    """The backbone's official ImageNet weights file: from the Keras cache when present (checked),
    else downloaded by Keras into it (Keras checks its md5)."""
    import keras

    entry = imagenet_manifest()[bb.key]
    path = weights_cache() / entry["file"]
    if not path.is_file():
        cache = weights_cache()
        fetched = keras.utils.get_file(
            entry["file"],
            entry["origin"],
            cache_dir=str(cache.parent),
            cache_subdir=cache.name,
            file_hash=entry["md5"] or None,
        )
        path = Path(fetched)
    check_imagenet_file(path, entry)
    return path


def initialisation(weights: str | None) -> str:
    """How a run's backbone started, in the book's words: 'ImageNet weights', 'random initialisation'
    or the weights file it was given."""
    if weights in (None, "none"):
        return "random initialisation"
    return "ImageNet weights" if weights == "imagenet" else f"weights {weights}"


def _resolve_weights(weights: str, bb: Backbone):
    """'imagenet' | 'none' | path to a weights file. ImageNet weights come from the Keras cache or a
    download (`imagenet_file`); when neither works, fail fast and name the alternatives (never fall
    back silently)."""
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            return str(imagenet_file(bb))
        except WeightsUnavailable:
            raise
        except Exception as exc:
            raise WeightsUnavailable(
                f"cannot obtain ImageNet weights for {bb.display} ({type(exc).__name__}: {exc}). This machine may be "
                f"offline. Either place the weights file in the Keras cache ({weights_cache()}/"
                f"{imagenet_manifest()[bb.key]['file']}) or pass weights=<path to the .h5 file>, or train from "
                "random initialisation with weights=none (the book then says so)."
            ) from None
        finally:
            socket.setdefaulttimeout(old_timeout)
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist: expected 'imagenet', 'none' or a .h5/.weights.h5 file")
    return str(path)


def build_model(backbone: str, input_px: int, weights: str = "none", num_classes: int = 2):
    """The flat fine-tuning model of one backbone for square inputs of `input_px` pixels."""
    import keras

    bb = get_backbone(backbone)
    if input_px < bb.min_size:
        raise ConfigError(f"{bb.display} needs inputs of at least {bb.min_size} px, got {input_px} px")
    w = _resolve_weights(weights, bb)
    inputs = keras.Input((input_px, input_px, 3), name="image")
    x = preprocessing_layer(bb.preprocessing)(inputs)
    base = getattr(keras.applications, bb.application)(include_top=False, weights=w, input_tensor=x)
    features = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
    # float32 whatever the policy: under mixed_float16 the softmax and the loss stay in full precision
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(features)
    model = keras.Model(inputs, outputs, name=bb.key)
    model.get_layer(bb.last_conv)  # raises if the registry's Grad-CAM layer name is wrong
    return model


def load_model(path):
    import keras

    preprocessing_layer("tf")  # registers the custom layer before deserialisation
    return keras.models.load_model(path, compile=False)


def count_batchnorm(model) -> int:
    import keras

    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def predict_batches(model, dataset, callbacks=None):
    """`model.predict` over a batched tf.data pipeline, its prediction step traced once for every batch size.

    Keras traces the step for the first batch's shape, and again, with the batch size relaxed, at the first
    smaller batch (an evaluation set's last one: 107 validation images in batches of 32 end with 11). For a
    deep network the second trace costs seconds at every run (measured here, one thread, 75 px: DenseNet-121
    about 3 s, InceptionResNet-V2 about 3.4 s). Traced first for the pipeline's own element spec, whose batch
    size is unknown, one trace serves every batch; the probabilities are bit for bit those of the two traces
    (tests/test_models.py)."""
    if not model.run_eagerly:
        model.make_predict_function()
        step = model.predict_function
        if getattr(step, "experimental_get_tracing_count", lambda: 1)() == 0:
            step.get_concrete_function([dataset.element_spec] * model.steps_per_execution)
    return model.predict(dataset, verbose=0, callbacks=callbacks)
