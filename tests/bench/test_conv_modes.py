"""bench/conv_modes.py: one checkpoint's weights scored in each model, as convert() makes them."""

import json

from eqfpga import checkpoint, data, trainer
from eqfpga.config import load_config, with_overrides

SMALL = ["conv_channels=[2,2]", "fc_hidden=[8]", "batch_size=8", "free_steps=4", "nudge_steps=2", "average_steps=1"]


def test_float_weights_scored_in_the_integer_model(tmp_path, bench):
    c = with_overrides(load_config("conv_mnist"), SMALL)
    trainer.fit(c, tmp_path / "run", 1, mode="float", train_samples=32, test_samples=16, progress=False,
                log=lambda *a: None)
    ck = tmp_path / "run" / "epoch001.npz"
    r = bench("conv_modes.py", ck, "--config", "conv_fashion_fine", "--set", *SMALL, "--modes", "int", "float",
              "--test-samples", "24", "--json", tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [r["mode"] for r in doc["results"]] == ["int", "float"] and doc["recorded_test_accuracy"] is not None
    fine = with_overrides(load_config("conv_fashion_fine"), SMALL)
    test = data.load("test").take(24)
    as_int = trainer.convert(checkpoint.load(ck), fine, "int")
    assert doc["results"][0]["test_accuracy"] == trainer.evaluate(as_int, test.images, test.labels)
    assert "as int" in r.stdout
    other = bench("conv_modes.py", ck, "--config", "conv_mnist", "--json", tmp_path / "x.json", ok=False)
    assert other.stderr.startswith("error: ") and "they differ in layers)" in other.stderr
    assert not (tmp_path / "x.json").exists()
    missing = bench("conv_modes.py", tmp_path / "none.npz", ok=False)
    assert missing.stderr.startswith("error: ") and "checkpoint not found" in missing.stderr
