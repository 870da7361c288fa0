"""Pictures as people have them -> the digit data sets' conventions (data/preprocess.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import Digits
from cnnkit.data.preprocess import (
    prepare_digit,
    prepare_image,
    read_image,
    style_for,
    to_grayscale,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digit.png"


def ring(h: int = 300, w: int = 200, top: int = 40, left: int = 30) -> np.ndarray:
    """A dark '0' (an elliptic ring 100 tall, 60 wide) on light paper, off-centre."""
    ys, xs = np.mgrid[0:h, 0:w]
    r = ((ys - (top + 50)) / 50) ** 2 + ((xs - (left + 30)) / 30) ** 2
    ink = (r <= 1) & (r >= 0.55)
    return np.where(ink, 0.1, 0.9).astype(np.float32)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : x.shape[0], 0 : x.shape[1]]
    return float((x * ys).sum() / x.sum()), float((x * xs).sum() / x.sum())


def bbox(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(x.any(axis=1))[0], np.nonzero(x.any(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_mnist_convention_on_a_dark_digit_on_paper():
    sheet = ring()
    h, w = bbox(sheet < 0.5)  # 101 x 61
    p = prepare_digit(sheet, 28)
    x = p.image[0]
    assert p.image.shape == (1, 28, 28) and p.image.dtype == np.float32
    assert bbox(x > 0) == (20, round(w * 20 / h))  # scaled into the 20x20 box, aspect kept
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert x.max() == pytest.approx(1.0) and x[0, 0] == 0 and x.min() >= 0
    text = "; ".join(p.steps)
    assert "inverted" in text and f"cropped to the digit ({w}x{h} of 200x300 pixels)" in text
    assert "scaled into a 20x20 box (12x20) and centred by its centre of mass in 28x28" in text


@pytest.mark.parametrize("light", ["left-to-right", "corner"])
def test_paper_lit_unevenly_is_not_taken_for_ink(light):
    # a photo of paper: 0.95 on the bright side falling to 0.7 (the same ring of ink);
    # one background level would leave the darker edge as a band of "digit" and the
    # crop would take the whole height or width
    sheet = ring(h=300, w=320, top=60, left=200)
    ys, xs = np.mgrid[0:300, 0:320]
    fall = xs / 319 if light == "left-to-right" else (xs / 319 + ys / 299) / 2
    shaded = sheet * (0.95 - 0.25 * fall) / 0.9
    h, w = bbox(sheet < 0.5)
    p = prepare_digit(shaded.astype(np.float32), 28)
    text = "; ".join(p.steps)
    assert f"cropped to the digit ({w}x{h} of 320x300 pixels)" in text, text
    assert "uneven background" in text and "fitted to the picture's border" in text
    even = prepare_digit(sheet, 28).image[0]
    shifted = [np.roll(p.image[0], (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    # the same ring; its centre of mass may round to the next pixel
    assert max(np.corrcoef(s.ravel(), even.ravel())[0, 1] for s in shifted) > 0.95
    # a stroke that runs across the picture, through the border, does not bend the fit:
    # the crop is the ring's rows and the stroke's full width, nothing above or below
    sheet[150:156, :] = 0.1
    q = prepare_digit((sheet * (0.95 - 0.25 * fall) / 0.9).astype(np.float32), 28)
    assert f"cropped to the digit (320x{h} of 320x300 pixels)" in "; ".join(q.steps)


def test_light_on_dark_is_not_inverted_and_a_ready_image_is_kept():
    p = prepare_digit(1 - ring(), 28)
    assert not any("inverted" in s for s in p.steps)
    np.testing.assert_allclose(p.image, prepare_digit(ring(), 28).image, atol=1e-6)
    ready = p.image[0].copy()
    q = prepare_digit(ready, 28)
    np.testing.assert_array_equal(q.image[0], ready)
    assert q.steps == ["already 28x28 light-on-dark: used as it is"]


def test_mnist_round_trip_through_a_photo_like_picture(mnist_dir):
    # MNIST's own images, enlarged 4x, inverted to ink on paper and put off-centre in a
    # bigger sheet: preprocessing must give back (nearly) the original
    from cnnkit.data import MNIST

    images = MNIST(mnist_dir, train=False).data[:40, 0]
    corr = []
    for k, img in enumerate(images):
        big = np.asarray(Image.fromarray(img).resize((112, 112), Image.Resampling.BILINEAR))
        sheet = np.ones((180, 160), dtype=np.float32)
        top, left = 10 + k % 40, 5 + (3 * k) % 40
        sheet[top : top + 112, left : left + 112] = 1 - np.clip(big, 0, 1)
        out = prepare_digit(sheet, 28).image[0]
        corr.append(np.corrcoef(out.ravel(), img.ravel())[0, 1])
    assert np.median(corr) > 0.9, np.round(corr, 2)
    assert min(corr) > 0.6  # thin strokes: a one-pixel shift costs ~0.15


def test_sklearn_digits_convention_round_trip():
    digits = Digits(split="all").data[:60, 0]
    corr = []
    for k, img in enumerate(digits):
        big = np.kron(img, np.ones((12, 12), dtype=np.float32))  # 96x96 blocks
        sheet = np.ones((140, 150), dtype=np.float32)
        sheet[20 + k % 20 : 116 + k % 20, 30:126] = 1 - big
        p = prepare_digit(sheet, 8)
        assert p.image.shape == (1, 8, 8)
        corr.append(np.corrcoef(p.image[0].ravel(), img.ravel())[0, 1])
    assert np.median(corr) > 0.85, np.round(corr, 2)
    assert "4x4 blocks" in p.steps[-1]


def test_no_digit_and_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="no digit found"):
        prepare_digit(np.full((40, 40), 0.8, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected a 2-D \(H, W\) picture; got shape \(2, 3, 4\)"):
        prepare_digit(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="unknown style"):
        prepare_image(ring(), 1, 28, "nist")
    with pytest.raises(ValueError, match="does not fit a 28x28 input"):
        prepare_image(ring(), 1, 28, "digits8")


# --- reading files: every common pixel format to the same greys ------------------------


@pytest.fixture
def grey() -> np.ndarray:
    """8-bit greys of a dark ring on light paper."""
    return np.round(ring(60, 50, 5, 10) * 255).astype(np.uint8)


def _save(im: Image.Image, path: Path) -> Path:
    im.save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1", "LA", "RGBA", "CMYK"])
def test_every_8bit_mode_reads_as_the_same_greys(tmp_path, grey, mode):
    if mode == "1":
        grey = np.where(grey > 128, 255, 0).astype(np.uint8)
    im = Image.fromarray(grey).convert(mode)
    ext = "tif" if mode == "CMYK" else "png"
    if mode == "CMYK":
        arr, _ = read_image(_save(im, tmp_path / f"x.{ext}"))
        assert np.abs(to_grayscale(arr) * 255 - grey).max() <= 1
        return
    arr, steps = read_image(_save(im, tmp_path / f"x.{ext}"))
    assert arr.shape == (60, 50, 1)  # grey stored as RGB/palette comes back as one channel
    np.testing.assert_array_equal(np.round(arr[..., 0] * 255), grey)
    assert steps == []  # opaque alpha: nothing to composite


def test_16bit_greys_are_scaled_by_their_range_not_clipped(tmp_path):
    values = np.array([[0, 1000, 20000], [40000, 60000, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    arr, steps = read_image(path)
    np.testing.assert_allclose(arr[..., 0], values / 65535, rtol=1e-6)
    assert steps == ["16-bit greyscale divided by 65,535"]
    # a 16-bit digit photo prepares like its 8-bit twin
    g8 = ring()
    g16 = np.round(g8 * 65535).astype(np.uint16)
    p8 = prepare_image(_save(Image.fromarray(np.round(g8 * 255).astype(np.uint8)),
                             tmp_path / "a.png"), 1, 28, "mnist")  # fmt: skip
    p16 = prepare_image(_save(Image.fromarray(g16), tmp_path / "b.png"), 1, 28, "mnist")
    np.testing.assert_allclose(p16.image, p8.image, atol=0.02)


@pytest.mark.parametrize("stroke", ["dark", "light"])
def test_transparent_canvas_is_filled_to_contrast_with_the_strokes(tmp_path, stroke):
    ink = ring(60, 50, 5, 10) < 0.5
    rgba = np.zeros((60, 50, 4), dtype=np.uint8)
    rgba[..., :3] = 20 if stroke == "dark" else 240
    rgba[..., 3] = np.where(ink, 255, 0)
    arr, steps = read_image(_save(Image.fromarray(rgba), tmp_path / "c.png"))
    g = to_grayscale(arr)
    bg, fg = g[~ink].mean(), g[ink].mean()
    if stroke == "dark":
        assert bg == 1.0 and fg < 0.1 and "white" in steps[0]
    else:
        assert bg == 0.0 and fg > 0.9 and "black" in steps[0]
    # either way the model sees the same light-on-dark digit
    p = prepare_image(tmp_path / "c.png", 1, 28, "mnist")
    assert p.image[0, 0, 0] == 0 and p.image.max() == pytest.approx(1.0)


def test_palette_with_transparency_and_grey_alpha(tmp_path, grey):
    la = Image.fromarray(np.stack([grey, np.where(grey < 128, 255, 0).astype(np.uint8)], -1))
    arr, steps = read_image(_save(la, tmp_path / "la.png"))
    assert arr.shape[-1] == 1 and "white" in steps[0]
    assert arr[..., 0][grey >= 128].min() == 1.0
    pal = Image.fromarray(grey).convert("P")
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])  # the paper's palette entry
    arr, steps = read_image(_save(pal, tmp_path / "p.png"))
    assert "transparent background filled with white" in steps[0]
    assert to_grayscale(arr)[0, 0] == 1.0


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read image"):
        read_image(bad)


def test_plain_style_matches_training_conversion_and_colour(tmp_path):
    from cnnkit.data.folder import load_image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = _save(Image.fromarray(rgb), tmp_path / "rgb.png")
    p = prepare_image(path, 3, 12, "plain")
    np.testing.assert_array_equal(p.image, load_image(path, (12, 12)))
    assert p.steps == ["resized 40x30 -> 12x12"]


def test_style_for_run_data():
    assert style_for("digits", 8) == "digits8"
    assert style_for("mnist:../data", 28) == "mnist"
    assert style_for("fashion:x", 28) == "fashion"
    assert style_for("cifar10:x", 32) == "plain"
    assert style_for("folder:x", 64) == "plain"


def test_the_shipped_example_digit_is_dark_on_light_rgb():
    with Image.open(EXAMPLE) as im:
        assert im.mode == "RGB"
    p = prepare_image(EXAMPLE, 1, 28, "mnist")
    assert any("inverted" in s for s in p.steps)
    assert any("colour -> greyscale" in s for s in p.steps)
    cy, cx = centre_of_mass(p.image[0])
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_a_canvas_array_with_alpha_prepares_like_the_drawing():
    # the dashboard's draw-a-digit canvas: black strokes, transparent elsewhere (uint8 RGBA)
    ink = ring(120, 100, 10, 20) < 0.5
    rgba = np.zeros((120, 100, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(ink, 255, 0)
    p = prepare_image(rgba, 1, 28, "mnist")
    q = prepare_image(np.where(ink, 0.0, 1.0).astype(np.float32), 1, 28, "mnist")
    np.testing.assert_allclose(p.image, q.image, atol=1e-6)
    assert p.steps[0] == "transparent background filled with white (the strokes are dark)"
    with pytest.raises(ValueError, match=r"C = 1, 2 \(grey \+ alpha\), 3 or 4"):
        prepare_image(np.zeros((5, 5, 5)), 1, 28, "mnist")


def test_fashion_convention_trims_scales_the_longest_side_and_centres():
    # a dark 60x30 bag on a white 200x150 photo -> light on black, 28 tall, centred
    photo = np.ones((200, 150), dtype=np.float32)
    photo[50:110, 20:50] = 0.2
    p = prepare_image(photo, 1, 28, "fashion")
    x = p.image[0]
    assert bbox(x > 0.05) == (28, 14)
    cols = np.nonzero((x > 0.05).any(axis=0))[0]
    assert (cols.min(), cols.max()) == (7, 20)  # (28 - 14) / 2 on each side
    assert x.max() == pytest.approx(0.8, abs=0.02) and x[0, 0] == 0
    assert [s.split(" (")[0] for s in p.steps] == [
        "inverted",
        "trimmed to the object",
        "longest side scaled to 28 and centred in 28x28",
    ]
