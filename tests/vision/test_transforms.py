"""RandomResizedCrop, ColorJitter, RandomErasing, RandomApply, RandomGrayscale and
GaussianBlur: the random parameters' ranges and the deterministic operations against
their documented formulas (torchvision's), PyTorch's conv2d and colorsys."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

import cnnkit as ck
from cnnkit.vision import transforms as T


def _rgb(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((3, h, w)).astype(np.float32)


def _pil(h: int = 20, w: int = 30, seed: int = 0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


# ------------------------------------------------------------------ RandomResizedCrop
def test_random_resized_crop_params_respect_scale_and_ratio() -> None:
    ck.manual_seed(0)
    img = _pil(60, 80)
    scale, ratio = (0.2, 0.6), (0.5, 2.0)
    areas, aspects = [], []
    for _ in range(500):
        top, left, h, w = T.RandomResizedCrop.get_params(img, scale, ratio)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        areas.append(h * w / (60 * 80))
        aspects.append(w / h)
    # rounding h and w moves the area and the aspect a little past the bounds
    assert 0.18 <= min(areas) and max(areas) <= 0.63
    assert 0.45 <= min(aspects) and max(aspects) <= 2.2
    assert np.ptp(areas) > 0.3  # the draws cover the range
    assert np.mean(np.log(aspects)) == pytest.approx(0.0, abs=0.1)  # log-uniform ratio


@pytest.mark.parametrize(("hw", "expected"), [((40, 100), (0, 23, 40, 53)),
                                              ((100, 40), (23, 0, 53, 40)),
                                              ((40, 45), (0, 0, 40, 45))])  # fmt: skip
def test_random_resized_crop_fallback_is_the_central_crop(hw, expected) -> None:
    img = ck.tensor(np.zeros((3, *hw), np.float32))
    # an area of at least 1.5 images never fits: torchvision's central fallback
    assert T.RandomResizedCrop.get_params(img, (1.5, 2.0), (3 / 4, 4 / 3)) == expected


def test_random_resized_crop_output_size_pil_and_tensor() -> None:
    t = T.RandomResizedCrop((12, 17))
    assert t(_pil()).size == (17, 12)
    out = T.RandomResizedCrop(9, scale=(1.0, 1.0), ratio=(1.5, 1.5))(ck.tensor(_rgb(20, 30)))
    assert out.shape == (3, 9, 9) and out.dtype == np.float32
    with pytest.raises(ValueError, match="RandomResizedCrop: scale should be"):
        T.RandomResizedCrop(8, scale=(0.9, 0.1))


# ------------------------------------------------------------------ ColorJitter
def _luma(x: np.ndarray) -> np.ndarray:
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def test_color_adjustments_follow_the_blend_formulas() -> None:
    x = _rgb()
    f = 1.7
    np.testing.assert_allclose(T.adjust_brightness(ck.tensor(x), f).numpy(),
                               np.clip(f * x, 0, 1), rtol=1e-6)  # fmt: skip
    mean = _luma(x).mean()
    np.testing.assert_allclose(T.adjust_contrast(ck.tensor(x), 0.4).numpy(),
                               np.clip(0.4 * x + 0.6 * mean, 0, 1), rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(T.adjust_saturation(ck.tensor(x), 0.0).numpy(),
                               np.repeat(_luma(x)[None], 3, 0), rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(T.adjust_saturation(ck.tensor(x), 1.0).numpy(), x, rtol=1e-6)


@pytest.mark.parametrize("hue", [0.0, 0.13, -0.4, 0.5])
def test_adjust_hue_matches_colorsys(hue: float) -> None:
    x = _rgb(6, 7).astype(np.float64)
    x[:, 0, 0] = [0.3, 0.3, 0.3]  # gray: no hue
    x[:, 0, 1] = [0.0, 0.0, 0.0]
    got = T.adjust_hue(ck.tensor(x), hue).numpy()
    for i in range(6):
        for j in range(7):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
            want = colorsys.hsv_to_rgb((h + hue) % 1.0, s, v)
            np.testing.assert_allclose(got[:, i, j], want, atol=1e-12)


def test_pil_and_tensor_color_adjustments_agree() -> None:
    img = _pil()
    x = np.asarray(img).transpose(2, 0, 1).astype(np.float32) / 255
    for fn, f, tol in [(T.adjust_brightness, 1.3, 1.5), (T.adjust_contrast, 0.6, 2.5),
                       (T.adjust_saturation, 0.3, 1.5), (T.adjust_hue, 0.2, 12)]:  # fmt: skip
        pil = np.asarray(fn(img, f)).transpose(2, 0, 1).astype(np.float32)
        ten = fn(ck.tensor(x), f).numpy() * 255
        # PIL works in uint8 (its hue has 256 steps: up to 6 levels per step when saturated)
        assert np.abs(pil - ten).max() <= tol, fn.__name__
        assert np.abs(pil - ten).mean() <= 1.0, fn.__name__
    assert np.array_equal(np.asarray(T.adjust_brightness(img, 0.5)),
                          np.asarray(ImageEnhance.Brightness(img).enhance(0.5)))  # fmt: skip


def test_color_jitter_draws_factors_in_range_and_applies_them() -> None:
    ck.manual_seed(0)
    cj = T.ColorJitter(brightness=0.4, contrast=(0.5, 0.9), saturation=0.2, hue=0.1)
    assert cj.brightness == (0.6, 1.4) and cj.contrast == (0.5, 0.9) and cj.hue == (-0.1, 0.1)
    for _ in range(200):
        order, b, c, s, h = cj.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue)
        assert sorted(order) == [0, 1, 2, 3]
        assert 0.6 <= b <= 1.4 and 0.5 <= c <= 0.9 and 0.8 <= s <= 1.2 and -0.1 <= h <= 0.1
    assert T.ColorJitter().get_params(None, None, None, None)[1:] == (None,) * 4
    x = ck.tensor(_rgb())
    assert np.array_equal(T.ColorJitter()(x).numpy(), x.numpy())  # nothing to change
    out = T.ColorJitter(brightness=(2.0, 2.0))(x)
    np.testing.assert_allclose(out.numpy(), np.clip(2 * x.numpy(), 0, 1))
    assert T.ColorJitter(0.5, 0.5, 0.5, 0.2)(_pil()).size == (30, 20)


def test_color_jitter_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="ColorJitter: brightness must be non-negative"):
        T.ColorJitter(brightness=-0.1)
    with pytest.raises(ValueError, match=r"ColorJitter: hue values must lie in \[-0.5, 0.5\]"):
        T.ColorJitter(hue=0.7)
    with pytest.raises(TypeError, match="ColorJitter: contrast must be a number or"):
        T.ColorJitter(contrast="high")
    with pytest.raises(TypeError, match="adjust_brightness: expected a PIL image or a float"):
        T.adjust_brightness(ck.tensor(np.zeros((3, 2, 2), np.uint8)), 1.2)


# ------------------------------------------------------------------ RandomErasing
def test_random_erasing_fills_one_rectangle_within_scale_and_ratio() -> None:
    ck.manual_seed(1)
    x = ck.tensor(np.ones((3, 40, 50), np.float32))
    t = T.RandomErasing(p=1.0, scale=(0.05, 0.2), ratio=(0.5, 2.0), value=(0.1, 0.2, 0.3))
    for _ in range(50):
        out = t(x).numpy()
        mask = out[0] != 1.0
        rows, cols = np.nonzero(mask)
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert mask.sum() == h * w  # one rectangle
        assert 0.04 <= h * w / 2000 <= 0.22 and 0.4 <= h / w <= 2.3
        for c, v in enumerate((0.1, 0.2, 0.3)):
            assert np.allclose(out[c][mask], v) and np.all(out[c][~mask] == 1.0)
    assert np.all(x.numpy() == 1.0)  # not in place


def test_random_erasing_random_values_probability_and_errors() -> None:
    ck.manual_seed(2)
    x = ck.tensor(np.zeros((1, 30, 30), np.float32))
    out = T.RandomErasing(p=1.0, value="random")(x).numpy()
    vals = out[out != 0]
    assert vals.size > 10 and abs(vals.mean()) < 1.0 and vals.std() > 0.5
    ones = ck.tensor(np.ones((1, 30, 30), np.float32))
    hits = sum(bool((T.RandomErasing(p=0.3)(ones).numpy() != 1).any()) for _ in range(1000))
    assert 240 <= hits <= 360
    assert T.RandomErasing(p=0.0)(ones) is ones
    with pytest.raises(TypeError, match=r"RandomErasing: expected a \(C, H, W\) tensor"):
        T.RandomErasing(p=1.0)(_pil())
    with pytest.raises(ValueError, match="RandomErasing: value must be a number"):
        T.RandomErasing(value="noise")
    with pytest.raises(ValueError, match="RandomErasing: value has 2 entries for 1 channels"):
        T.RandomErasing(p=1.0, value=(1.0, 2.0))(ones)


# ------------------------------------------------------------------ RandomApply, RandomGrayscale
def test_random_apply_all_or_nothing_with_probability_p() -> None:
    ck.manual_seed(3)
    t = T.RandomApply([lambda v: v + 1, lambda v: v * 10], p=0.25)
    outs = [t(1) for _ in range(2000)]
    seen = {o: outs.count(o) for o in set(outs)}
    assert set(seen) == {1, 20}  # both transforms, in order, or none
    assert 400 <= seen[20] <= 600
    assert "p=0.25" in repr(t)


def test_random_grayscale_keeps_channels() -> None:
    ck.manual_seed(4)
    x = ck.tensor(_rgb())
    g = T.RandomGrayscale(p=1.0)(x).numpy()
    assert g.shape == (3, 20, 30)
    np.testing.assert_allclose(g[0], _luma(x.numpy()), rtol=1e-6)
    assert np.array_equal(g[0], g[2])
    assert T.RandomGrayscale(p=1.0)(_pil()).mode == "RGB"
    gray_pil = _pil().convert("L")
    assert T.RandomGrayscale(p=1.0)(gray_pil).mode == "L"
    n = sum(T.RandomGrayscale(p=0.1)(x) is not x for _ in range(2000))
    assert 140 <= n <= 260


# ------------------------------------------------------------------ GaussianBlur
@pytest.mark.parametrize(("ks", "sigma"), [((5, 5), (1.3, 1.3)), ((3, 7), (0.6, 2.1))])
def test_gaussian_blur_matches_torch_conv_with_reflected_borders(ks, sigma) -> None:
    x = _rgb(11, 13).astype(np.float64)
    got = T.gaussian_blur(ck.tensor(x), ks, sigma).numpy()
    kx, ky = ks
    k2 = np.outer(T.gaussian_kernel1d(ky, sigma[1]), T.gaussian_kernel1d(kx, sigma[0]))
    xt = torch.nn.functional.pad(torch.tensor(x)[None], (kx // 2, kx // 2, ky // 2, ky // 2),
                                 mode="reflect")  # fmt: skip
    w = torch.tensor(k2).expand(3, 1, ky, kx)
    want = torch.nn.functional.conv2d(xt, w, groups=3)[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    xs = np.linspace(-(kx - 1) / 2, (kx - 1) / 2, kx)
    pdf = np.exp(-(xs**2) / (2 * sigma[0] ** 2))
    np.testing.assert_allclose(T.gaussian_kernel1d(kx, sigma[0]), pdf / pdf.sum())


def test_gaussian_blur_transform_pil_tensor_and_errors() -> None:
    ck.manual_seed(5)
    t = T.GaussianBlur(5, sigma=(0.5, 1.5))
    assert all(0.5 <= t.get_params(*t.sigma) <= 1.5 for _ in range(100))
    img = _pil()
    blurred = np.asarray(T.GaussianBlur(3, sigma=1.0)(img)).astype(np.float64)
    x = np.asarray(img).transpose(2, 0, 1).astype(np.float64)
    ref = T.gaussian_blur(ck.tensor(x), (3, 3), (1.0, 1.0)).numpy().transpose(1, 2, 0)
    assert np.abs(blurred - np.round(ref)).max() == 0
    assert T.GaussianBlur(3, 0.8)(ck.tensor(_rgb())).dtype == np.float32
    assert T.GaussianBlur((3, 5)).kernel_size == (3, 5)
    with pytest.raises(ValueError, match="GaussianBlur: kernel_size must be odd and positive"):
        T.GaussianBlur(4)
    with pytest.raises(ValueError, match="GaussianBlur: sigma must be positive"):
        T.GaussianBlur(3, sigma=0)
    with pytest.raises(ValueError, match="gaussian_blur: kernel"):
        T.gaussian_blur(ck.tensor(np.zeros((1, 2, 2), np.float32)), (5, 5), (1.0, 1.0))
