"""Issue 3's bad input for every shallow feature: tiny, odd-sized, constant, NaN images."""
import pytest
import torch

import featinv
from featinv.errors import ShapeError

SHALLOW = ["hog", "lbp", "sift"]


@pytest.mark.parametrize("name", SHALLOW)
def test_smaller_than_one_cell_is_a_clear_error(name):
    ext = featinv.get_feature(name)
    side = ext.rule.smallest_side
    with pytest.raises(ShapeError, match=f"at least {side}x{side}"):
        ext(torch.rand(1, 3, side - 1, 50))


@pytest.mark.parametrize("name", SHALLOW)
@pytest.mark.parametrize("size", [(17, 200), (99, 131), (33, 47)])
def test_sizes_that_are_not_multiples_of_the_cell(name, size):
    ext = featinv.get_feature(name)
    out = ext(torch.rand(2, 3, *size))
    assert out.shape == (2, *ext.layout(*size).shape) and torch.isfinite(out).all()


@pytest.mark.parametrize("name, expected", [("hog", 0.0), ("sift", 0.0), ("lbp", None)])
def test_constant_images(name, expected):
    out = featinv.get_feature(name)(torch.full((1, 3, 64, 48), 0.3))
    assert torch.isfinite(out).all()
    if expected is not None:
        assert (out == expected).all()
    else:  # every pixel has the flat pattern: all the mass in bin 56, unit norm per cell
        assert torch.allclose(out[0, 56], torch.ones_like(out[0, 56]))


@pytest.mark.parametrize("name", SHALLOW)
def test_nan_is_a_clear_error(name):
    x = torch.rand(1, 3, 64, 64)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ShapeError, match="NaN or infinite"):
        featinv.get_feature(name)(x)
