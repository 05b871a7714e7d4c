"""The paper's normalized error, PSNR and SSIM against independent computations."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from featinv.errors import ShapeError
from featinv.analysis.metrics import normalized_error, psnr, ssim


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 40, 36, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_ssim_matches_scikit_image(pair):
    x, y = pair
    ours = ssim(x, y)
    for i in range(len(x)):
        ref = structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0, data_range=1.0,
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


def test_ssim_in_chunks_equals_all_at_once(pair):
    x, y = pair
    assert torch.allclose(ssim(x, y, chunk=2), ssim(x, y, chunk=64), atol=1e-12)
    assert torch.allclose(ssim(x, x), torch.ones(len(x), dtype=torch.float64))


def test_psnr_matches_scikit_image(pair):
    x, y = pair
    ref = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0) for a, b in zip(x, y)]
    assert np.allclose(psnr(x, y).numpy(), ref, atol=1e-4)


def test_normalized_error_by_hand(pair):
    x, y = pair
    d = [(x[i] - y[i]).double().norm().item() for i in range(len(x))]
    pairs = [(x[i] - x[j]).double().norm().item() for i in range(len(x)) for j in range(i + 1, len(x))]
    assert normalized_error(x, y) == pytest.approx(np.mean(d) / np.mean(pairs), rel=1e-9)
    assert normalized_error(x, x) == 0


def test_normalized_error_needs_two_images():
    with pytest.raises(ShapeError):
        normalized_error(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
