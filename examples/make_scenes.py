"""Write digit scenes as PNG files (inputs for `cnnkit detect`) and their boxes as JSON.

    python examples/make_scenes.py ../shared/data/mnist runs/scenes --n 4

writes ``runs/scenes/scene_0.png`` ... (96x96 grayscale test scenes: MNIST digits
8,000-9,999, never seen in training) and ``runs/scenes/truth.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cnnkit.data import DigitScenes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mnist", help="folder with the MNIST IDX files")
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=4, help="number of scenes (default 4)")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    scenes = DigitScenes(args.mnist, args.split, n=args.n, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = []
    for i in range(len(scenes)):
        image, target = scenes[i]
        path = out / f"scene_{i}.png"
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L").save(path)
        truth.append(
            {
                "image": str(path),
                "boxes": target["boxes"].tolist(),
                "labels": target["labels"].tolist(),
            }
        )
        print(f"{path}: digits {target['labels'].tolist()}")
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
