"""The golden model's numbers, pinned: digests of predictions, spike counts, weights and LFSR
positions recorded from the model as it is, so that a refactoring of the model (one layered
network for FC stacks and convolutions) is shown to change nothing.

Recorded with ``EQFPGA_RECORD_REGRESSION=1 python -m pytest tests/golden/test_regression.py``;
a digest that differs is a change of the spec, never a tolerance.
"""

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from eqfpga import checkpoint, data, trainer
from eqfpga.config import load_config
from eqfpga.golden import network, train

RECORD = Path(__file__).with_name("regression.json")
CONV_CHECKPOINT = Path(__file__).parent / "data" / "conv_mnist_int.npz"
TRAIN_SAMPLES = 1000
CONV_IMAGES = 1000


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, np.int64))
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:32]


def fc_training(ck) -> dict:
    """Weights, biases and LFSR positions after the first ``TRAIN_SAMPLES`` samples of epoch 0
    (the trainer's order and augmentation)."""
    c = ck.config
    split = data.load("train")
    xs, ys = trainer.epoch_samples(c, split.images, split.labels, 0)
    p, streams, rule = copy.deepcopy(ck.params), copy.deepcopy(ck.streams), c.at_epoch(0)
    predictions = []
    for k in range(TRAIN_SAMPLES):
        predictions.append(train.train_sample(xs[k], int(ys[k]), p, rule, streams).prediction)
    return {"weights": digest(p.w1, p.w2, p.b1, p.b2), "streams": streams.as_list(),
            "train_predictions": digest(predictions)}


def measure(name: str) -> dict:
    if name == "up5k-shipped":
        ck = checkpoint.load(checkpoint.shipped())
        test = data.load("test")
        pred, counts = network.predict(test.images, ck.params, ck.config)
        return {"test_predictions": digest(pred), "test_spike_counts": digest(counts),
                "test_correct": int(np.sum(pred == test.labels)), **fc_training(ck)}
    if name in ("ecp5", "orangecrab"):
        return fc_training(trainer.fresh(load_config(name)))
    if name == "conv":
        ck = checkpoint.load(CONV_CHECKPOINT)
        c, test = ck.config, data.load("test").take(CONV_IMAGES)
        pred = network.predict(test.images, ck.params, c)[0]
        split = data.load("train")
        order, aug = trainer.epoch_order(c, 0, len(split)), trainer.epoch_augmentation(c, 0, len(split))
        images, labels = trainer.batch_images(split, order, aug, 0, c.batch_size)
        batch_pred = trainer.train_step(ck, c.at_epoch(0), images, labels)
        arrays = ck.params.arrays()
        return {"test_predictions": digest(pred), "test_correct": int(np.sum(pred == test.labels)),
                "batch_predictions": digest(batch_pred),
                "weights": digest(*(arrays[k] for k in sorted(arrays))),
                "streams": [int(s) for s in ck.streams]}
    raise KeyError(name)


CASES = ["up5k-shipped", "ecp5", "orangecrab", "conv"]


@pytest.mark.parametrize("name", CASES)
def test_golden_model_is_unchanged(name):
    got = measure(name)
    if os.environ.get("EQFPGA_RECORD_REGRESSION"):
        recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        recorded[name] = got
        RECORD.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(RECORD.read_text())[name]
