"""The dashboard's JSON API and its run-folder reading, through Starlette's TestClient."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the [dashboard] extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="starlette's TestClient needs httpx2 (the test extra)")

from PIL import Image
from starlette.testclient import TestClient

from cnnkit.serve import create_app, inference, runs
from cnnkit.train import History, diagnose

from .conftest import MNIST_DIR, fake_records, make_runs, write_history


@pytest.fixture
def root(tmp_path: Path, trained_run: Path) -> Path:
    return make_runs(tmp_path / "runs", trained_run)


@pytest.fixture
def client(root: Path) -> TestClient:
    return TestClient(create_app(root))


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def png_url(img: np.ndarray) -> str:
    """A gray [0, 1] picture as the canvas sends it."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_run_list_kinds_and_states(client: TestClient) -> None:
    listed = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(listed) == {"digits", "grid", "grid/lr=0.01", "grid/lr=0.03", "grid/lr=0.1",
                           "writing", "yolo", "broken"}  # fmt: skip
    assert listed["grid"]["kind"] == "group" and listed["grid"]["grid"] is True
    assert listed["grid"]["runs"] == 3
    assert listed["digits"]["status"] == "finished" and listed["digits"]["epochs"] == 2
    assert listed["writing"]["status"] == "running"
    assert listed["writing"]["epochs"] == 2  # the third row is cut off mid-write
    assert listed["yolo"]["detection"] is True and listed["digits"]["detection"] is False


def test_history_and_diagnosis_match_the_run(client: TestClient, trained_run: Path) -> None:
    h = client.get("/api/run/digits/history").json()
    want = History.from_csv(trained_run / "history.csv")
    assert h["records"] == want.records
    assert h["diagnosis"]["text"] == str(diagnose(want))
    assert h["status"] == "finished" and h["total_epochs"] == 2


def test_a_run_being_written_never_fails(client: TestClient, root: Path) -> None:
    h = client.get("/api/run/writing/history").json()
    assert [r["epoch"] for r in h["records"]] == [1, 2]
    info = client.get("/api/run/writing")
    assert info.status_code == 200 and info.json()["config"] == {}  # half-written JSON
    for what in ("summary", "filters", "activations"):
        r = client.get(f"/api/run/writing/{what}")
        assert r.status_code == 200 and r.json()["available"] is False
    for what in ("", "/history", "/summary", "/filters", "/activations"):
        r = client.get("/api/run/broken" + what)
        assert r.status_code == 200, what
    assert client.get("/api/run/broken/history").json()["records"] == []
    # the next epoch lands: it is there on the next request
    write_history(root / "writing" / "history.csv", fake_records(4))
    assert len(client.get("/api/run/writing/history").json()["records"]) == 4


def test_summary_filters_activations(client: TestClient, trained_run: Path) -> None:
    from cnnkit.inspect.summary import summary
    from cnnkit.train.run import load_run

    _, model = load_run(trained_run)
    s = client.get("/api/run/digits/summary").json()
    want = summary(model, (1, 1, 8, 8))
    assert s["total_params"] == want.total_params and s["total_macs"] == want.total_macs
    assert [r["name"] for r in s["rows"]] == [r.name for r in want.rows]
    f = client.get("/api/run/digits/filters").json()
    assert f["layer"] == "features.0" and f["shape"] == [6, 5, 5]
    tiles = np.frombuffer(base64.b64decode(f["b64"]), np.uint8).reshape(6, 5, 5)
    w = model.features[0].weight.numpy()[:, 0]
    lo, hi = w.min(axis=(1, 2), keepdims=True), w.max(axis=(1, 2), keepdims=True)
    # each filter on its own range; the encoding stretches the whole set to 0..255
    np.testing.assert_allclose(tiles / 255.0, (w - lo) / (hi - lo), atol=1 / 255 + 1e-6)
    a = client.get("/api/run/digits/activations?index=3").json()
    assert a["available"] and [L["name"] for L in a["layers"]] == ["features.0", "features.3"]
    assert a["layers"][0]["shape"] == [6, 8, 8] and a["layers"][1]["shape"] == [16, 4, 4]
    from cnnkit.data import Digits
    from cnnkit.viz.conv_maps import conv_activations

    x, y = Digits("test")[3]
    maps, out = conv_activations(model, np.asarray(x))
    assert a["label"] == str(int(y))
    assert a["layers"][1]["max"] == pytest.approx(float(maps[1][1].max()), rel=1e-5)
    p = np.exp(out - out.max()) / np.exp(out - out.max()).sum()
    assert a["top"][0] == [str(int(np.argmax(p))), pytest.approx(float(p.max()), rel=1e-5)]


def test_group_view_and_results_table(client: TestClient) -> None:
    g = client.get("/api/run/grid").json()
    assert g["kind"] == "group" and g["results_file"] is True
    assert [c["run"] for c in g["curves"]] == ["lr=0.01", "lr=0.03", "lr=0.1"]
    assert g["curves"][0]["val_acc"] == [r["val_acc"] for r in fake_records(4)]
    assert g["curves"][2]["val_acc"] == [r["val_acc"] for r in fake_records(4, scale=3)]
    assert g["results"][0] == {"run": "lr=0.01", "lr": 0.01, "val_acc": 0.86, "status": "trained"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/run/..%2F..%2Fetc/history",
        "/api/run/%2Fetc",
        "/api/run/digits%2F..%2F..%2F..%2Fetc",
        "/file/..%2Fsecret.png",
        "/file/%2Fetc%2Fpasswd",
        "/file/digits/config.json",  # not a picture
        "/run/..%2Foutside",
        "/api/run/link/history",  # a symbolic link out of the folder
        "/api/run/nothing-here",
        "/api/run/grid/summary",  # a group is no run
    ],
)
def test_outside_or_missing_is_404(client: TestClient, root: Path, url: str) -> None:
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    write_history(outside / "history.csv", fake_records(2))
    Image.new("L", (4, 4)).save(root.parent / "secret.png")
    os.symlink(outside, root / "link")
    r = client.get(url)
    assert r.status_code == 404, url
    assert "epoch" not in r.text and "root:" not in r.text


def test_pictures_are_served(client: TestClient, root: Path) -> None:
    r = client.get("/file/yolo/detections.png")
    assert r.status_code == 200 and r.content == (root / "yolo" / "detections.png").read_bytes()
    info = client.get("/api/run/yolo").json()
    assert info["detection"] and "detections.png" in info["pictures"] and not info["drawable"]


def test_deleted_run_disappears(client: TestClient, root: Path) -> None:
    assert client.get("/api/run/digits/history").status_code == 200
    shutil.rmtree(root / "digits")
    assert "digits" not in [r["name"] for r in client.get("/api/runs").json()["runs"]]
    assert client.get("/api/run/digits/history").status_code == 404


def test_read_only(client: TestClient, root: Path) -> None:
    before = tree(root)
    blob = np.zeros((80, 80))
    blob[20:60, 36:44] = 1.0  # a "1"
    for url in (
        "/",
        "/run/digits",
        "/run/grid",
        "/api/runs",
        "/api/run/digits",
        "/api/run/digits/summary",
        "/api/run/digits/filters",
        "/api/run/digits/activations",
        "/api/run/grid",
        "/file/yolo/detections.png",
    ):
        assert client.get(url).status_code == 200, url  # fmt: skip
    assert client.post("/api/run/digits/predict", json={"image": png_url(blob)}).status_code == 200
    assert tree(root) == before


def test_predict_a_drawing(client: TestClient, trained_run: Path) -> None:
    from cnnkit.train.loop import predict
    from cnnkit.train.run import load_run

    img = np.zeros((140, 140))
    img[30:110, 64:76] = 1.0
    r = client.post("/api/run/digits/predict", json={"image": png_url(img)}).json()
    x = inference.digits8(img)
    assert np.asarray(r["input"]["shape"]).tolist() == [1, 8, 8]
    _, model = load_run(trained_run)
    p = predict(model, x[None])[0]
    assert r["top"][0][1] == pytest.approx(float(p.max()), rel=1e-5)
    assert r["top"][0][0] == str(int(np.argmax(p)))
    empty = client.post("/api/run/digits/predict", json={"image": png_url(np.zeros((50, 50)))})
    assert empty.json() == {"available": False, "reason": "the canvas is empty"}


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        (b"not json", 400, "expected JSON"),
        (b'{"image": 3}', 400, "expected JSON"),
        (b'{"image": "data:text/plain;base64,aGk="}', 400, "data:image/png"),
        (b'{"image": "data:image/png;base64,aGVsbG8="}', 400, "not a readable PNG"),
    ],
)
def test_predict_bad_input(client: TestClient, body: bytes, status: int, match: str) -> None:
    r = client.post("/api/run/digits/predict", content=body)
    assert r.status_code == status and match in r.json()["error"]


def test_predict_needs_a_digit_model(client: TestClient) -> None:
    r = client.post("/api/run/yolo/predict", json={"image": png_url(np.ones((8, 8)))})
    assert r.status_code == 400 and "1x28x28 or 1x8x8" in r.json()["error"]


def test_create_app_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder of runs"):
        create_app(tmp_path / "missing")


# -------------------------------------------------------------- drawn digits as the data


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST test set at {MNIST_DIR}")
def test_mnist_preparation_reproduces_mnist_digits() -> None:
    """Real MNIST digits, enlarged 10x as if drawn on the canvas, come back as MNIST."""
    from cnnkit.data import MNIST

    data = MNIST(MNIST_DIR, train=False).data[:200, 0]
    errs, shifts = [], []
    for img in data:
        big = np.kron(img, np.ones((10, 10)))
        got = inference.mnist_digit(big)[0]
        assert got.shape == (28, 28) and 0.0 <= got.min() and got.max() <= 1.0
        ys, xs = np.nonzero(got > 0.1)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21  # fits the 20x20 box
        m = got.sum()
        cy = (got.sum(1) * np.arange(28)).sum() / m
        cx = (got.sum(0) * np.arange(28)).sum() / m
        shifts.append(max(abs(cy - 14), abs(cx - 14)))
        errs.append(np.abs(got - img).mean())
    assert max(shifts) <= 0.5  # centre of mass at the centre, to the pixel
    assert np.median(errs) < 0.06  # the same picture, up to resampling


def test_digits8_preparation() -> None:
    bar = np.zeros((200, 200))
    bar[20:180, 90:110] = 1.0  # a tall thin stroke: a "1"
    got = inference.digits8(bar)[0]
    assert got.shape == (8, 8)
    assert got[:, :3].sum() == 0 and got[:, 5:].sum() == 0  # thin and centred
    assert np.all(got[:, 3:5].sum(axis=1) > 0)  # fills the height, as the digits do
    assert set(np.unique(got * 16)) <= set(range(17))  # counts of 16 pixels
    assert inference.digits8(np.zeros((10, 10))) is None
    assert inference.mnist_digit(np.zeros((10, 10))) is None


def test_half_written_history_rows() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.csv"
        write_history(p, fake_records(3), cut=1)  # only the newline missing: row 3 unsure
        assert [r["epoch"] for r in runs.read_history(p)] == [1, 2]
        p.write_text("epoch,train_loss\n1,0.5\n2,nan\n3,x\n")
        rows = runs.read_history(p)
        assert [r["epoch"] for r in rows] == [1, 2]
        assert runs.read_history(Path(d) / "missing.csv") == []


def test_assets_ship_in_the_wheel_and_need_no_internet() -> None:
    """Every file the page loads is package data, and none of them fetches from elsewhere."""
    import fnmatch
    import re
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["cnnkit.serve"]
    static = repo / "src" / "cnnkit" / "serve" / "static"
    files = sorted(p.relative_to(static.parent).as_posix() for p in static.iterdir())
    assert {"static/app.html", "static/app.js", "static/app.css"} <= set(files)
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) for pat in patterns), f"{f} is not package data"
        text = (static.parent / f).read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), f
        assert not re.search(r"(fetch|import)\(\s*[\"'`]https?:", text), f
        assert "url(http" not in text, f


def test_cli_serve_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cnnkit.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "no such folder of runs" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be 0..65535" in capsys.readouterr().err
    write_history(tmp_path / "history.csv", fake_records(1))
    assert main(["serve", str(tmp_path)]) == 2
    assert "is one run directory; give the folder that holds the runs" in capsys.readouterr().err


def test_serve_defaults_to_this_machine_only() -> None:
    from cnnkit.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.runs_dir, args.host, args.port) == ("runs", "127.0.0.1", 8000)


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason=f"no MNIST IDX files at {MNIST_DIR} for digit scenes")  # fmt: skip
def test_a_detection_run_shows_test_scenes_with_their_boxes(tmp_path: Path) -> None:
    import cnnkit as ck
    from cnnkit import io as ckio
    from cnnkit.data import DigitScenes
    from cnnkit.models import TinyYOLO

    run = tmp_path / "runs" / "yolo"
    run.mkdir(parents=True)
    ck.manual_seed(3)
    model = TinyYOLO()
    model.eval()
    classes = [str(k) for k in range(10)]
    cfg = {"task": "detection", "model": "tinyyolo", "data": f"digit-scenes:{MNIST_DIR}",
           "seed": 0, "test_scenes": 20, "in_channels": 1, "input_size": 96,
           "num_classes": 10, "classes": classes}  # fmt: skip
    (run / "config.json").write_text(json.dumps(cfg))
    ckio.save(run / "model.safetensors", model)
    a = TestClient(create_app(tmp_path / "runs")).get("/api/run/yolo/activations?index=23").json()
    assert a["available"] and a["index"] == 23
    x, target = DigitScenes(MNIST_DIR, "test", n=20, seed=0)[3]  # 23 wraps round to 3
    x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    assert a["input"]["shape"] == [1, 96, 96]
    labels = [str(int(k)) for k in np.asarray(target["labels"])]
    assert a["label"] == f"{len(labels)} digits: " + ", ".join(labels)
    assert [t["label"] for t in a["truth"]] == labels
    np.testing.assert_allclose([t["box"] for t in a["truth"]], np.asarray(target["boxes"]))
    det = model.detect(x[None], conf_threshold=0.25)[0]
    assert [b["label"] for b in a["boxes"]] == [str(int(k)) for k in det["labels"]]
    np.testing.assert_allclose([b["score"] for b in a["boxes"]], det["scores"], atol=5e-4)
    if len(det["boxes"]):
        np.testing.assert_allclose([b["box"] for b in a["boxes"]], det["boxes"], atol=0.05)
    assert a["layers"] and "top" not in a  # maps of the scene; no class ranking for a scene
