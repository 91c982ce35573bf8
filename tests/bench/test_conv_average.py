"""bench/conv_average.py: the averaged checkpoint it saves scores what it reports."""

import json

from eqfpga import checkpoint, data, trainer
from eqfpga.config import load_config, with_overrides


def test_average_of_two_epochs(tmp_path, bench):
    c = with_overrides(load_config("conv_mnist"), ["conv_channels=[2,2]", "fc_hidden=[8]", "batch_size=8",
                                                   "free_steps=4", "nudge_steps=2", "average_steps=1"])
    trainer.fit(c, tmp_path / "run", 2, mode="int", train_samples=32, test_samples=16, progress=False,
                log=lambda *a: None)
    run = tmp_path / "run"
    r = bench("conv_average.py", run / "epoch001.npz", run / "epoch002.npz", "--test-samples", "24",
              "--save", tmp_path / "mean.npz", "--json", tmp_path / "mean.json")
    doc = json.loads((tmp_path / "mean.json").read_text())
    assert [s["epoch"] for s in doc["sources"]] == [1, 2] and doc["sources"][0]["test_samples"] == 16
    mean = checkpoint.load(tmp_path / "mean.npz", c, "int")
    test = data.load("test").take(24)
    assert trainer.evaluate(mean, test.images, test.labels) == doc["test_accuracy"]
    assert "mean of 2 (int, mnist)" in r.stdout
    bad = bench("conv_average.py", run / "epoch009.npz", ok=False)
    assert bad.stderr.startswith("error: ") and "checkpoint not found" in bad.stderr
