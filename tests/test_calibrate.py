import numpy as np
import pytest

from eqfpga import calibrate, data
from eqfpga.config import ConfigError, load_config, shipped_configs



@pytest.fixture(scope="module")
def mnist():
    return data.load("train").take(calibrate.SAMPLES).images


def test_every_shipped_configuration_calibrates_to_its_own_shift_on_mnist(mnist):
    for name in shipped_configs():
        c = load_config(name)
        assert calibrate.input_shift(c, mnist) == c.input_shift, name
        assert calibrate.calibrated(c, mnist, "mnist") is c


def test_more_ink_means_a_larger_shift(mnist):
    c = load_config("up5k-160")
    # the same digits with every stroke pixel doubled in width: about twice the ink
    thick = np.maximum(mnist, np.roll(mnist.reshape(-1, 28, 28), 1, axis=2).reshape(len(mnist), -1))
    thicker = np.maximum(thick, np.roll(thick.reshape(-1, 28, 28), 1, axis=1).reshape(len(mnist), -1))
    assert calibrate.input_shift(c, thicker) == c.input_shift + 1
    faint = mnist // 4
    assert calibrate.input_shift(c, faint) == c.input_shift - 2


def test_fashion_mnist_gets_one_more_shift_and_it_is_recorded():
    from eqfpga.trainer import SHARED_DATA
    folder = SHARED_DATA / "fashion-mnist"
    if not folder.is_dir():
        pytest.skip("Fashion-MNIST is not beside the repository")
    images = data.load("train", "fashion-mnist", folder).take(calibrate.SAMPLES).images
    for name in ("up5k-160", "conv_fashion"):
        c = load_config(name)
        got = calibrate.calibrated(c, images, "fashion-mnist")
        assert got.input_shift == c.input_shift + 1
        assert "calibrated on fashion-mnist" in got.description and got.model_hash != c.model_hash


def test_blank_images_are_refused_in_one_line():
    c = load_config("up5k")
    with pytest.raises(ConfigError, match="blank"):
        calibrate.input_shift(c, np.zeros((10, 784), np.uint8))
