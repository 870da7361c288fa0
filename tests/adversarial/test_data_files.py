"""Data files as untrusted input: images, ImageFolder, IDX (gzip bombs), CIFAR batches."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import limits
from cnnkit.data import CIFAR10, ImageFolder, read_idx
from cnnkit.data.images import decode_image
from cnnkit.limits import LimitError

# ----------------------------------------------------------------- images


def test_16bit_png_is_scaled_by_its_range_not_saturated(tmp_path: Path) -> None:
    raw = np.array([[0, 1000, 30000, 65535]], np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(raw).save(p)
    gray = decode_image(p, grayscale=True)
    np.testing.assert_allclose(gray[0], raw / 65535.0, rtol=1e-6)
    rgb = decode_image(p)
    assert rgb.shape == (3, 1, 4)
    np.testing.assert_allclose(rgb[1], raw / 65535.0, rtol=1e-6)


def test_16bit_png_resized(tmp_path: Path) -> None:
    p = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(p)
    out = decode_image(p, size=(4, 4), grayscale=True)
    np.testing.assert_allclose(out, 32768 / 65535.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "1", "CMYK", "L", "RGB", "YCbCr"])
@pytest.mark.parametrize("grayscale", [False, True])
def test_modes_convert_as_pil_does(tmp_path: Path, mode: str, grayscale: bool) -> None:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (5, 6, 4), dtype=np.uint8), mode="RGBA")
    im = base.convert(mode)
    p = tmp_path / ("x.png" if mode not in ("CMYK", "YCbCr") else "x.jpg")
    if mode in ("CMYK", "YCbCr"):
        im.save(p, quality=100)
    else:
        im.save(p)
    got = decode_image(p, grayscale=grayscale)
    with Image.open(p) as ref:
        want = np.asarray(ref.convert("L" if grayscale else "RGB"), np.float32) / 255
    want = want[None] if grayscale else want.transpose(2, 0, 1)
    np.testing.assert_array_equal(got, want)


def test_huge_dimensions_are_refused_from_the_header(tmp_path: Path) -> None:
    """A PNG header claiming 100,000 x 100,000 pixels; no pixel data is decoded."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)  # fmt: skip

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
    p = tmp_path / "bomb.png"
    p.write_bytes(png + chunk(b"IEND", b""))
    with pytest.raises(LimitError, match="MAX_IMAGE_PIXELS") as info:
        decode_image(p)
    assert str(p) in str(info.value) and "100000x100000" in str(info.value)


def test_image_pixel_limit_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "a.png"
    Image.new("RGB", (20, 10)).save(p)
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 199)
    with pytest.raises(LimitError, match="200 pixels exceeds the limit of 199"):
        decode_image(p)
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 200)
    assert decode_image(p).shape == (3, 10, 20)


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"x" * 40,
                                     b"\xff\xd8\xff\xe0" + b"\0" * 20])  # fmt: skip
def test_non_images_name_themselves(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "fake.png"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="cannot read image") as info:
        decode_image(p)
    assert str(p) in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"{p}: cannot read image"):
        decode_image(p)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such image file"):
        decode_image(tmp_path / "none.png")
    with pytest.raises(FileNotFoundError, match="is not a regular file"):
        decode_image(tmp_path)


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for c, n in counts.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (4, 4), color=10 * i).save(root / c / f"{i}.png")
    return root


def test_image_folder_refuses_an_empty_class_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", {"cat": 2, "dog": 0, "emu": 1})
    with pytest.raises(FileNotFoundError, match="dog hold no images") as info:
        ImageFolder(root)
    assert str(root / "dog") in str(info.value)


def test_image_folder_class_with_only_non_images_is_empty(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", {"cat": 2, "dog": 0})
    (root / "dog" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="hold no images"):
        ImageFolder(root)


def test_image_folder_non_image_with_image_name(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", {"cat": 2, "dog": 1})
    bad = root / "dog" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=f"{bad}: cannot read image"):
        ImageFolder(root)


def test_image_folder_palette_and_16bit(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", {"a": 1, "b": 0})
    Image.new("RGB", (4, 4), (255, 0, 0)).convert("P").save(root / "b" / "p.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(root / "b" / "h.png")
    ds = ImageFolder(root)
    h = next(i for i, (s, _) in enumerate(ds.samples) if s.endswith("h.png"))
    np.testing.assert_allclose(ds[h][0], 1.0)


# ----------------------------------------------------------------- IDX


def _idx(path: Path, dims: tuple[int, ...], payload: bytes | None = None, gz: bool = False,
         magic: int | None = None) -> Path:  # fmt: skip
    head = struct.pack(">I", magic if magic is not None else 0x800 + len(dims))
    head += b"".join(struct.pack(">I", d) for d in dims)
    body = payload if payload is not None else bytes(int(np.prod(dims)))
    data = head + body
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims,what", [((0, 28, 28), "zero images"),
                                       ((5, 0, 28), "a zero dimension"),
                                       ((5, 28, 0), "a zero dimension")])  # fmt: skip
def test_idx_zero_images_or_dimension(tmp_path: Path, gz: bool, dims: tuple, what: str) -> None:
    p = _idx(tmp_path / ("x.gz" if gz else "x"), dims, gz=gz)
    with pytest.raises(ValueError, match=what) as info:
        read_idx(p, 0x803)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("delta", [-1, -100, 1, 50])
def test_idx_count_disagrees_with_size(tmp_path: Path, gz: bool, delta: int) -> None:
    dims = (3, 4, 4)
    n = 48 + delta
    p = _idx(tmp_path / ("x.gz" if gz else "x"), dims, bytes(max(n, 0)), gz=gz)
    what = "truncated" if delta < 0 else "oversized"
    with pytest.raises(ValueError, match=f"{what} IDX file") as info:
        read_idx(p, 0x803)
    assert str(p) in str(info.value)


def test_idx_gzip_bomb_is_stopped_before_inflating(tmp_path: Path) -> None:
    """A header promising 4 GiB + 1 and a stream that would inflate forever: refused from the
    header (nothing inflated)."""
    p = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 65536, 256, 257))
        f.write(bytes(1 << 20))
    with pytest.raises(LimitError, match="MAX_DATA_BYTES") as info:
        read_idx(p, 0x803)
    assert str(p) in str(info.value)


def test_idx_gzip_payload_larger_than_header_reads_only_what_it_needs(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 1, 2, 2))
        f.write(bytes(50 << 20))  # 50 MB of zeros, 50 kB compressed
    with pytest.raises(ValueError, match="oversized IDX file"):
        read_idx(p, 0x803)


def test_idx_limit_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _idx(tmp_path / "x", (2, 3, 3))
    monkeypatch.setattr(limits, "MAX_DATA_BYTES", 17)
    with pytest.raises(LimitError, match="18 bytes exceeds the limit of 17"):
        read_idx(p, 0x803)
    monkeypatch.setattr(limits, "MAX_DATA_BYTES", 18)
    assert read_idx(p, 0x803).shape == (2, 3, 3)


@pytest.mark.parametrize("content", [b"", b"\x00\x00", b"\x1f\x8b\x08\x00garbage"])
def test_idx_garbage(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=str(p)):
        read_idx(p, 0x803)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    p = _idx(tmp_path / "x", (2,), magic=0x801)
    with pytest.raises(ValueError, match="bad IDX magic number"):
        read_idx(p, 0x803)


# ----------------------------------------------------------------- CIFAR


def _cifar(root: Path, meta: object, batch: object | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "batches.meta").write_bytes(pickle.dumps(meta))
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch"):  # fmt: skip
        (root / name).write_bytes(pickle.dumps(good if batch is None else batch))
    return root


GOOD_META = {b"label_names": [b"a", b"b"]}


@pytest.mark.parametrize("meta,msg", [
    ([1, 2], "expected a dict"),
    ("label_names", "expected a dict"),
    ({b"other": 1}, "missing key 'label_names'"),
    ({b"label_names": "ab"}, "field 'label_names': expected a list of strings"),
    ({b"label_names": 3}, "field 'label_names': expected a list of strings"),
    ({b"label_names": [1, 2]}, "field 'label_names': expected a list of strings"),
    ({b"label_names": []}, "field 'label_names' is empty"),
])  # fmt: skip
def test_cifar_meta_of_the_wrong_type(tmp_path: Path, meta: object, msg: str) -> None:
    root = _cifar(tmp_path / "c", meta)
    with pytest.raises(ValueError, match=msg) as info:
        CIFAR10(root, train=False)
    assert str(root / "batches.meta") in str(info.value)


@pytest.mark.parametrize("batch,msg", [
    ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "zero images"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "dtype uint8"),
    ({b"data": [[1, 2], [3]], b"labels": [0]}, "field 'data'"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "expected 2 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}, "field 'labels'"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 7]}, "7"),
    ([1, 2, 3], "expected a dict"),
])  # fmt: skip
def test_cifar_bad_batches(tmp_path: Path, batch: object, msg: str) -> None:
    root = _cifar(tmp_path / "c", GOOD_META, batch)
    with pytest.raises(ValueError, match=msg) as info:
        CIFAR10(root, train=False)
    assert str(root / "test_batch") in str(info.value)


def test_cifar_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _cifar(tmp_path / "c", GOOD_META)
    monkeypatch.setattr(limits, "MAX_DATA_BYTES", 100)
    with pytest.raises(LimitError, match="MAX_DATA_BYTES"):
        CIFAR10(root, train=False)
