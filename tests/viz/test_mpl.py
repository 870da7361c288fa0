"""Pictures are written in the format their file name asks for."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.viz import plot_dream
from cnnkit.viz._mpl import pyplot, save_figure


@pytest.mark.parametrize(
    "name, magic",
    [("a.png", b"\x89PNG"), ("a.jpg", b"\xff\xd8\xff"), ("a.JPEG", b"\xff\xd8\xff"),
     ("a.pdf", b"%PDF"), ("a.svg", b"<?xml"), ("noext", b"\x89PNG")],
)  # fmt: skip
def test_the_suffix_picks_the_format(tmp_path, name, magic):
    fig = pyplot().figure()
    path = save_figure(fig, tmp_path / name)
    assert path.read_bytes().startswith(magic)


def test_a_suffix_matplotlib_cannot_write_is_refused_and_nothing_is_left(tmp_path):
    img = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"cannot write a picture as \.docx; use one of .*\.jpg"):
        plot_dream(img, img, tmp_path / "dream.docx")
    assert list(tmp_path.iterdir()) == []
    assert pyplot().get_fignums() == []  # the figure was closed
