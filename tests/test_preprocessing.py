import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alllib.errors import ConfigError, DataError
from alllib.method import preprocessing as pp
from alllib.method.dataset import read_cnmc, training_subjects
from alllib.study.profile import Augment


def _real_like_table():
    """The real training folds' subjects and image counts, one row per image (no files needed)."""
    rows = []
    for rec in training_subjects().itertuples():
        rows += [{"split": "train_folds", "label": rec.label, "subject": rec.subject}] * rec.n_images
    return pd.DataFrame(rows)


def test_split_is_subject_disjoint_and_matches_table3():
    t = pp.subject_split(_real_like_table(), seed=0)
    train, val = t[t["split"] == "train"], t[t["split"] == "validation"]
    assert set(train["subject"]).isdisjoint(val["subject"])
    subjects = val.groupby("label")["subject"].nunique()
    assert subjects["all"] == 15 and subjects["hem"] == 7  # Table 3
    for label, total in (("all", 7272), ("hem", 3389)):
        share = (val["label"] == label).sum() / total
        assert abs(share - 0.2) < 0.01, f"{label}: validation share {share:.3f}"


def test_split_is_seed_stable_and_seed_dependent():
    t = _real_like_table()
    a, b, c = (pp.subject_split(t, s)["split"] for s in (1, 1, 2))
    assert a.equals(b) and not a.equals(c)


def test_split_on_generated_tree(synth_root):
    t = pp.subject_split(read_cnmc(synth_root), 0)
    assert set(t[t.split == "train"].subject).isdisjoint(t[t.split == "validation"].subject)
    assert t[t.split == "preliminary_test"].shape[0] > 0
    summary = pp.split_summary(t)
    assert list(summary["split"]) == ["train", "validation", "preliminary_test"]


def test_split_needs_two_subjects_per_class():
    t = pd.DataFrame({"split": "train_folds", "label": ["all", "all", "hem"], "subject": ["1", "2", "H1"]})
    with pytest.raises(DataError, match="class 'hem' has 1 subject"):
        pp.subject_split(t, 0)


def test_center_crop_against_numpy_slicing():
    x = np.random.default_rng(0).integers(0, 255, (2, 450, 450, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.center_crop(x, 300), x[:, 75:375, 75:375, :])
    np.testing.assert_array_equal(pp.center_crop(x[0], 450), x[0])
    with pytest.raises(ConfigError, match="cannot centre-crop 500 px out of a 450 px image"):
        pp.center_crop(x, 500)


def test_load_image_crops_like_numpy(synth_root):
    path = next((synth_root / "training_data/fold_0/all").iterdir())
    ref = np.asarray(Image.open(path))
    np.testing.assert_array_equal(pp.load_image(str(path), 300).numpy(), ref[75:375, 75:375])
    np.testing.assert_array_equal(pp.load_image(str(path), 450).numpy(), ref)
    small = pp.load_image(str(path), 300, 0.25).numpy()
    assert small.shape == (75, 75, 3) and small.dtype == np.uint8
    # crop first, then resize: the small tensor is the area-average of the crop
    expected = ref[75:375, 75:375].reshape(75, 4, 75, 4, 3).mean(axis=(1, 3))
    assert np.abs(small.astype(float) - expected).max() <= 1.0


def test_random_oversampling_counts():
    y = np.array([1] * 70 + [0] * 30)
    idx = pp.random_oversampling(y, seed=0)
    assert len(idx) == 140 and (y[idx] == 1).sum() == 70 and (y[idx] == 0).sum() == 70
    assert set(np.flatnonzero(y == 1)) <= set(idx)  # every original image is kept
    assert set(np.flatnonzero(y == 0)) <= set(idx)
    np.testing.assert_array_equal(idx, pp.random_oversampling(y, seed=0))
    with pytest.raises(DataError, match="two classes"):
        pp.random_oversampling(np.ones(5), 0)


def test_paper_oversampling_numbers():
    """Table 3 train split: 5822 ALL and 2703 Hem -> 5822 + 5822 = 11644 images per epoch."""
    y = np.array([1] * 5822 + [0] * 2703)
    assert len(pp.random_oversampling(y, 0)) == 11644


def test_augmentation_invariants_and_determinism():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3)), tf.uint8)
    cfg = Augment(rotation_deg=180, zoom=0.1, shift=0.1, flips=True)
    a = pp.augment(x, tf.constant([1, 2], tf.int64), cfg)
    b = pp.augment(x, tf.constant([1, 2], tf.int64), cfg)
    c = pp.augment(x, tf.constant([1, 3], tf.int64), cfg)
    assert a.shape == x.shape and a.dtype == tf.uint8
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_identity_augmentation_changes_nothing():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3)), tf.uint8)
    out = pp.augment(x, tf.constant([0, 0], tf.int64), Augment(rotation_deg=0, zoom=0.0, shift=0.0, flips=False))
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_flip_only_augmentation_is_a_flip():
    import tensorflow as tf

    x = np.random.default_rng(2).integers(0, 255, (16, 8, 8, 3)).astype(np.uint8)
    out = pp.augment(
        tf.constant(x), tf.constant([5, 5], tf.int64), Augment(rotation_deg=0, zoom=0.0, shift=0.0, flips=True)
    ).numpy()
    for o, i in zip(out, x):
        assert any(np.array_equal(o, f) for f in (i, i[:, ::-1], i[::-1], i[::-1, ::-1]))


def test_training_dataset_is_balanced_and_seeded(synth_root):
    t = pp.subject_split(read_cnmc(synth_root), 0)
    train = t[t.split == "train"]
    ds, n = pp.make_dataset(
        train, 300, 0.25, 8, seed=3, training=True, augment_cfg=Augment(rotation_deg=0, zoom=0.0, shift=0.0, flips=True)
    )
    assert n == 2 * (train.label == "all").sum()
    labels = np.concatenate([y.numpy()[:, 1] for _, y in ds.take(int(np.ceil(n / 8)))])[:n]
    assert abs(labels.mean() - 0.5) < 0.1
    ds2, _ = pp.make_dataset(
        train,
        300,
        0.25,
        8,
        seed=3,
        training=True,
        augment_cfg=Augment(rotation_deg=30, zoom=0.0, shift=0.0, flips=True),
    )
    ds3, _ = pp.make_dataset(
        train,
        300,
        0.25,
        8,
        seed=3,
        training=True,
        augment_cfg=Augment(rotation_deg=30, zoom=0.0, shift=0.0, flips=True),
    )
    np.testing.assert_array_equal(next(iter(ds2))[0].numpy(), next(iter(ds3))[0].numpy())


def test_decoded_cache_yields_the_same_batches_as_streaming(synth_root):
    t = pp.subject_split(read_cnmc(synth_root), 0)
    train = t[t.split == "train"].groupby("label").head(6)
    aug = Augment(rotation_deg=30, zoom=0.1, shift=0.1, flips=True)
    streamed, n = pp.make_dataset(train, 300, 0.25, 4, seed=5, training=True, augment_cfg=aug)
    cached, n2 = pp.make_dataset(train, 300, 0.25, 4, seed=5, training=True, augment_cfg=aug, cache=True)
    assert n == n2
    for (xs, ys), (xc, yc) in zip(streamed.take(2 * n // 4 + 1), cached.take(2 * n // 4 + 1)):  # two epochs
        np.testing.assert_array_equal(xs.numpy(), xc.numpy())
        np.testing.assert_array_equal(ys.numpy(), yc.numpy())
    # evaluation: one pass in table order, repeatable, the same pixels as load_arrays
    val, _ = pp.make_dataset(train, 450, 0.25, 5, cache=True)
    once = np.concatenate([x.numpy() for x, _ in val])
    again = np.concatenate([x.numpy() for x, _ in val])
    np.testing.assert_array_equal(once, again)
    np.testing.assert_array_equal(once, pp.load_arrays(train, 450, 0.25))
    assert once.shape == (12, 112, 112, 3)
    assert pp.cached_bytes(12, 450, 0.25) == once.nbytes


def test_cache_streams_sets_larger_than_the_memory_limit(synth_root, monkeypatch):
    t = pp.subject_split(read_cnmc(synth_root), 0)
    train = t[t.split == "train"].head(4)
    monkeypatch.setattr(pp, "MEMORY_CACHE_MB", 0)
    monkeypatch.setattr(pp, "decode_images", lambda *a, **k: pytest.fail("decoded into memory above the limit"))
    ds, _ = pp.make_dataset(train, 300, 0.25, 4, cache=True)
    assert next(iter(ds))[0].shape == (4, 75, 75, 3)


def test_unknown_input_size(synth_root):
    with pytest.raises(ConfigError, match="450 \\(full\\) or 300"):
        pp.make_dataset(read_cnmc(synth_root), 224, 1.0, 8)
