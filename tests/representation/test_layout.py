import pytest

from featinv import CellGrid, ComputedGrid, FixedVector, GridLayout, ShapeError, VectorLayout
from featinv.representation.layout import layout_from_json


@pytest.mark.parametrize("rounding,n,cells", [
    ("floor", 99, 6), ("ceil", 99, 7), ("half_up", 99, 12), ("half_up", 131, 16),
    ("half_up", 133, 17), ("floor", 128, 8), ("ceil", 128, 8)])
def test_cell_grid_rounding(rounding, n, cells):
    cell = 8 if rounding == "half_up" else 16
    assert CellGrid(10, cell, rounding)(n, n).height == cells


def test_cell_grid_layout_and_formula():
    rule = CellGrid(31, 8, "half_up")
    assert rule(128, 128) == GridLayout(31, 16, 16)
    assert rule(99, 131).shape == (31, 12, 16)
    assert rule.describe() == "31 x floor((H+4)/8) x floor((W+4)/8)"
    assert rule.smallest_side == 4  # floor((4+4)/8) == 1


def test_too_small_image_is_refused_clearly():
    with pytest.raises(ShapeError, match="too small.*at least 16x16"):
        CellGrid(58, 16)(15, 100)


def test_layouts_are_checked_data():
    with pytest.raises(ValueError):
        GridLayout(0, 4, 4)
    with pytest.raises(ValueError):
        VectorLayout(-3)
    with pytest.raises(ValueError):
        CellGrid(3, 8, rounding="round")


@pytest.mark.parametrize("layout", [GridLayout(3, 4, 5), GridLayout(133, 32, 32, sparse=True),
                                    VectorLayout(1000)])
def test_json_round_trip(layout):
    assert layout_from_json(layout.to_json()) == layout


def test_malformed_json_layout():
    with pytest.raises(ValueError):
        layout_from_json({"kind": "cube", "channels": 3})
    with pytest.raises(ValueError):
        layout_from_json({"kind": "grid", "channels": 3})


def test_vector_and_computed_rules():
    assert FixedVector(1000)(227, 300) == VectorLayout(1000)
    rule = ComputedGrid(lambda h, w: GridLayout(4, h // 2 - 1, w // 2 - 1), "4 x (H/2-1) x (W/2-1)",
                        min_size=4)
    assert rule(10, 20).shape == (4, 4, 9)
    with pytest.raises(ShapeError):
        rule(3, 20)


def test_extractor_refuses_images_below_the_declared_minimum():
    import torch

    import featinv

    hog = featinv.get_feature("hog")
    with pytest.raises(ShapeError, match="too small"):
        hog(torch.rand(1, 3, 3, 64))
