"""Feature perturbations of the paper's section 5.4."""
import pytest
import torch

from featinv.errors import FeatinvError
from featinv.analysis.perturb import NAMES, binarize, drop_least, dropout, perturbations


def _relu_features(seed=0, shape=(3, 8, 5, 5)):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).clamp_min(0)


def _norms(f):
    return f.flatten(1).norm(dim=1)


def test_binarize_keeps_signs_and_norm_with_one_magnitude():
    f = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    f[:, :5] = 0
    b = binarize(f)
    assert torch.equal(torch.sign(b), torch.sign(f))
    torch.testing.assert_close(_norms(b), _norms(f))
    for row in b:
        mags = row[row != 0].abs()
        torch.testing.assert_close(mags, torch.full_like(mags, float(mags[0])))


def test_dropout_zeroes_about_half_keeps_norm_and_is_seeded():
    f = torch.rand(2, 10000) + 0.1
    d1 = dropout(f, generator=torch.Generator().manual_seed(3))
    d2 = dropout(f, generator=torch.Generator().manual_seed(3))
    assert torch.equal(d1, d2)
    zero_frac = (d1 == 0).float().mean()
    assert 0.47 < zero_frac < 0.53
    torch.testing.assert_close(_norms(d1), _norms(f))


def test_drop_least_removes_exactly_the_smallest_half_of_the_non_zero_entries():
    f = _relu_features()
    out = drop_least(f)
    for row_in, row_out in zip(f.flatten(1), out.flatten(1)):
        nz = row_in[row_in != 0]
        kept = row_in[row_out != 0]
        assert kept.numel() == nz.numel() - int(0.5 * nz.numel())
        assert kept.min() >= nz.sort().values[int(0.5 * nz.numel()) - 1]  # only small ones gone
    torch.testing.assert_close(_norms(out), _norms(f))


@pytest.mark.parametrize("name", NAMES)
def test_every_perturbation_keeps_shape_and_norm(name):
    f = _relu_features(seed=2)
    out = perturbations(seed=0)[name](f)
    assert out.shape == f.shape
    torch.testing.assert_close(_norms(out), _norms(f))
    if name.endswith("binarize"):
        nz = out[out != 0]
        assert nz.numel() > 0 and (nz > 0).all()


def test_all_zero_features_stay_zero_and_unbatched_input_is_refused():
    assert torch.equal(binarize(torch.zeros(2, 7)), torch.zeros(2, 7))
    with pytest.raises(FeatinvError, match="batch"):
        binarize(torch.ones(5))
