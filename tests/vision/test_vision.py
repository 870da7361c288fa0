"""cnnkit.vision: torchvision's datasets (folder layouts), transforms and utils."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnkit as ck
from cnnkit.vision import datasets, transforms, utils
from tests.compat._data import write_cifar, write_mnist


def test_mnist_and_cifar_in_torchvision_layouts(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", n_train=100, gz=True)
    write_mnist(tmp_path, "FashionMNIST", n_train=100)
    write_cifar(tmp_path, n_train=50, n_test=20)
    m = datasets.MNIST(tmp_path, train=True, target_transform=lambda t: t + 100)
    img, target = m[0]
    assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28)
    assert m.data.shape == (100, 28, 28) and m.data.dtype == np.uint8 and target >= 100
    np.testing.assert_array_equal(np.asarray(img), m.data[0].numpy())
    f = datasets.FashionMNIST(tmp_path, train=False, transform=transforms.ToTensor())
    x, _ = f[0]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and f.classes[9] == "Ankle boot"
    c = datasets.CIFAR10(tmp_path, train=True)
    im, t = c[3]
    assert im.mode == "RGB" and c.data.shape == (50, 32, 32, 3) and isinstance(t, int)
    assert c.classes[0] == "airplane"
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasets.MNIST(tmp_path / "nowhere")


def test_image_folder(tmp_path: Path) -> None:
    for cls, colour in [("cat", (255, 0, 0)), ("dog", (0, 255, 0))]:
        (tmp_path / cls).mkdir()
        for k in range(2):
            Image.new("RGB", (5 + k, 4), colour).save(tmp_path / cls / f"{k}.png")
    ds = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    x, y = ds[3]
    assert y == 1 and x.shape == (3, 4, 6) and x.numpy()[1].min() == 1.0


def test_to_tensor_normalize_and_to_pil() -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    t = transforms.ToTensor()(Image.fromarray(arr))
    np.testing.assert_allclose(t.numpy(), arr.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    n = transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))(t)
    np.testing.assert_allclose(n.numpy()[0], (t.numpy()[0] - 0.5) / 0.25, rtol=1e-6)
    back = transforms.ToPILImage()(t)
    np.testing.assert_array_equal(np.asarray(back), arr)
    with pytest.raises(TypeError, match="ToTensor first"):
        transforms.Normalize((0.5,), (0.5,))(Image.fromarray(arr))


def test_geometric_transforms_follow_torchvision_rules() -> None:
    img = Image.fromarray(np.arange(6 * 8, dtype=np.uint8).reshape(6, 8))
    assert transforms.Resize(3)(img).size == (4, 3)  # smaller edge -> 3, aspect kept
    assert transforms.Resize((5, 7))(img).size == (7, 5)
    c = np.asarray(transforms.CenterCrop(4)(img))
    np.testing.assert_array_equal(c, np.asarray(img)[1:5, 2:6])
    ck.manual_seed(0)
    r = transforms.RandomCrop(6, padding=2)(img)
    assert r.size == (6, 6)
    flipped = np.asarray(transforms.RandomHorizontalFlip(p=1.0)(img))
    np.testing.assert_array_equal(flipped, np.asarray(img)[:, ::-1])
    rot = transforms.RandomRotation((90, 90))(img)
    np.testing.assert_array_equal(np.asarray(rot), np.asarray(img.rotate(90)))
    g = transforms.Grayscale(3)(Image.new("RGB", (2, 2), (10, 200, 30)))
    assert g.mode == "RGB" and np.asarray(g)[0, 0, 0] == np.asarray(g)[0, 0, 2]
    assert transforms.Lambda(lambda x: x.size)(img) == (8, 6)


def test_make_grid_and_save_image(tmp_path: Path) -> None:
    batch = ck.rand(5, 1, 4, 4)
    grid = utils.make_grid(batch, nrow=3, padding=2, pad_value=1.0)
    # torchvision: (3, ymaps*(H+p)+p, xmaps*(W+p)+p), one channel repeated three times
    assert grid.shape == (3, 2 * 6 + 2, 3 * 6 + 2)
    np.testing.assert_array_equal(grid.numpy()[:, 2:6, 2:6], np.repeat(batch.numpy()[0], 3, 0))
    assert grid.numpy()[0, 0, 0] == 1.0
    utils.save_image(batch, tmp_path / "g.png", nrow=5)
    assert Image.open(tmp_path / "g.png").size == (5 * 6 + 2, 6 + 2)
