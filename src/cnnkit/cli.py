"""The ``cnnkit`` command line: train, evaluate, predict (more commands register here).

Bad arguments and bad files give a one-line error and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {}


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def command(name: str, help: str) -> Callable:
    """Register ``fn(args) -> int`` as a subcommand with an argument-adding ``setup``."""

    def deco(setup: Callable[[argparse.ArgumentParser], None]) -> Callable:
        def wrap(run: Callable[..., int]) -> Callable[..., int]:
            COMMANDS[name] = (setup, run)
            run.help = help  # type: ignore[attr-defined]
            return run

        return wrap

    return deco


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet5", help="lenet5 | mlp | smallvgg | smallresnet")
    p.add_argument(
        "--data",
        default="digits",
        help="digits | mnist:PATH | fashion:PATH | cifar10:PATH | folder:PATH",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="default 10 (with --resume: the run's own)"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument(
        "--scheduler",
        choices=["none", "cosine", "step", "plateau"],
        default="none",
        help="learning-rate schedule, stepped once per epoch",
    )
    p.add_argument(
        "--augment", action="store_true", help="random shifts (and flips for colour images)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory to create (runs/NAME)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out with its own settings",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to OUT/tensorboard (needs tensorboardX)",
    )


@command("train", "train a zoo model and write a run directory")(_train_args)
def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit.train.run import train_run

    if args.epochs is not None and args.epochs < 1:
        raise CLIError(f"--epochs must be >= 1; got {args.epochs}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1; got {args.batch_size}")
    if not args.lr > 0:
        raise CLIError(f"--lr must be > 0; got {args.lr}")
    if not args.weight_decay >= 0:
        raise CLIError(f"--weight-decay must be >= 0; got {args.weight_decay}")
    if args.tensorboard:
        _need_tensorboard()
    # a diverging run is reported by fit (NaN loss: epoch and batch), not by NumPy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        s = train_run(
            args.out,
            model=args.model,
            data=args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            seed=args.seed,
            verbose=not args.quiet,
            resume=args.resume,
            scheduler=args.scheduler,
            augment=args.augment,
            tensorboard=args.tensorboard,
        )
    print(f"test accuracy {s['test_accuracy']:.2%} (loss {s['test_loss']:.4f})")
    print(f"diagnosis: {s['diagnosis_text']}")
    print(f"run directory: {args.out}")
    return 0


def _need_tensorboard() -> None:
    """--tensorboard without tensorboardX: a one-line error saying what to install."""
    from cnnkit.train.tensorboard import _writer_class

    try:
        _writer_class()
    except ImportError as e:
        raise CLIError(str(e)) from None


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("--data", default=None, help="data spec (default: the run's own)")


@command("evaluate", "test loss, accuracy and per-class report of a trained run")(_evaluate_args)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnkit.train.loop import evaluate
    from cnnkit.train.run import load_data, load_run

    cfg, model = load_run(args.run)
    splits = load_data(args.data or cfg["data"], seed=cfg.get("seed", 0))
    _check_fits(cfg, splits)
    result = evaluate(model, splits.test, classes=splits.classes or None)
    print(result)
    print("confusion matrix (rows: true, columns: predicted)")
    print(result.confusion_matrix)
    return 0


def _check_fits(cfg: dict[str, Any], splits: Any) -> None:
    """The data's image geometry must be what the run was trained on."""
    want = (cfg["in_channels"], cfg["input_size"])
    got = (splits.in_channels, splits.input_size)
    if want != got:
        raise CLIError(
            f"the run was trained on {want[0]}x{want[1]}x{want[1]} images; "
            f"{splits.spec} has {got[0]}x{got[1]}x{got[1]}"
        )


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def load_image(path: str | Path, channels: int, size: int) -> Any:
    """An image file as a float32 ``(channels, size, size)`` array in [0, 1], converted
    and resized as :class:`cnnkit.data.ImageFolder` does for training."""
    from cnnkit.data.folder import load_image as _load

    if not Path(path).is_file():
        raise CLIError(f"{path}: no such image file")
    try:
        return _load(path, (size, size), grayscale=channels == 1)
    except ValueError as e:
        raise CLIError(str(e)) from None


@command("predict", "top-k classes with probabilities for image files")(_predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit.train.loop import predict
    from cnnkit.train.run import load_run

    if args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1; got {args.top_k}")
    cfg, model = load_run(args.run)
    batch = np.stack([load_image(p, cfg["in_channels"], cfg["input_size"]) for p in args.images])
    probs = predict(model, batch)
    classes = cfg.get("classes") or [str(i) for i in range(probs.shape[1])]
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p)[:k]
        results.append({"image": path, "top": [[classes[i], float(p[i])] for i in top]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["image"] + ": " + ", ".join(f"{c} {pr:.1%}" for c, pr in r["top"]))
    return 0


def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="a run directory (or use --model)")
    p.add_argument("--model", help="zoo model name, e.g. lenet5")
    p.add_argument("--input", help="input size N,C,H,W (default: the run's, batch 1)")


def _parse_size(text: str) -> tuple[int, ...]:
    """'1,1,28,28' -> (1, 1, 28, 28)."""
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise CLIError(
            f"--input must be comma-separated integers like 1,1,28,28; got {text!r}"
        ) from None
    if not size or any(v < 1 for v in size):
        raise CLIError(f"--input sizes must be positive; got {text!r}")
    if len(size) not in (2, 4):
        raise CLIError(f"--input must be N,C,H,W (or N,FEATURES for an MLP); got {text!r}")
    return size


@command("summary", "layer table: shapes, parameters, receptive fields, MACs, memory")(
    _summary_args
)
def cmd_summary(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit.inspect.summary import summary

    if args.run and args.model:
        raise CLIError("give either a run directory or --model NAME, not both")
    if args.run:
        from cnnkit.train.run import load_run

        cfg, model = load_run(args.run)
        size = (1, cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    elif args.model:
        from cnnkit.models import get_model

        size = _parse_size(args.input) if args.input else (1, 1, 28, 28)
        kwargs: dict[str, Any] = {}
        if len(size) == 4 and args.model.lower() != "mlp":
            kwargs["in_channels"] = size[1]
            if args.model.lower() not in ("smallresnet", "resnet"):
                kwargs["input_size"] = size[-1]
        elif args.model.lower() == "mlp":
            kwargs["in_features"] = int(np.prod(size[1:]))
        model = get_model(args.model, **kwargs)
    else:
        raise CLIError("give a run directory or --model NAME")
    if args.input:
        size = _parse_size(args.input)
    try:
        table = summary(model, size)
    except Exception as e:  # a model that does not fit the input size, or a summary bug
        raise CLIError(f"cannot summarise {type(model).__name__} on input {size}: {e}") from None
    print(table)
    return 0


def _visualize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--images", type=int, default=3, help="test images to show (default 3)")


def _sample(item: Any) -> tuple[Any, int]:
    """A dataset item ``(image, label)`` as a NumPy image and an int label."""
    import numpy as np

    from cnnkit.tensor import Tensor

    x, y = item
    img = x.array if isinstance(x, Tensor) else np.asarray(x)
    label = y.array if isinstance(y, Tensor) else np.asarray(y)
    return img, int(label.reshape(-1)[0])


@command("visualize", "filters, activations, saliency maps and loss curves as PNGs")(
    _visualize_args
)
def cmd_visualize(args: argparse.Namespace) -> int:
    from cnnkit import nn, viz
    from cnnkit.train.history import History
    from cnnkit.train.run import load_data, load_run

    if args.images < 0:
        raise CLIError(f"--images must be >= 0; got {args.images}")
    cfg, model = load_run(args.run)
    history_csv = Path(args.run) / "history.csv"
    if not history_csv.is_file():
        raise CLIError(f"{args.run}: no history.csv (not a run written by `cnnkit train`)")
    splits = load_data(cfg["data"], seed=cfg.get("seed", 0)) if args.images else None
    if splits is not None:
        _check_fits(cfg, splits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    classes = cfg.get("classes") or [str(k) for k in range(cfg.get("num_classes", 0))]
    written = []
    if convs:
        written.append(out / "filters.png")
        viz.plot_filters(convs[0][1], written[-1], title=f"First-layer filters ({convs[0][0]})")
    n_images = min(args.images, len(splits.test)) if splits is not None else 0
    for i in range(n_images):
        img, label = _sample(splits.test[i])
        name = classes[label] if label < len(classes) else str(label)
        for alias, (layer, _) in zip(("conv1", "conv2"), convs, strict=False):
            written.append(out / f"activations_{i}_{alias}.png")
            viz.plot_activations(
                model, img, layer, written[-1], title=f"test image {i} (label {name})"
            )
        written.append(out / f"saliency_{i}.png")
        viz.plot_saliency(model, img, written[-1], target=label, class_name=name)
    written.append(out / "curves.png")
    viz.plot_history(
        History.from_csv(history_csv), written[-1], title=f"{cfg['model']} on {cfg['data']}"
    )
    for w in written:
        print(w)
    return 0


def _dream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("image", help="start image (png, jpg, ...)")
    p.add_argument(
        "--layer",
        required=True,
        help="a dotted layer name (features.3) or an alias: convK / poolK / fcK = the K-th "
        "Conv2d / MaxPool2d / Linear",
    )
    p.add_argument("--out", required=True, help="output PNG (original, dream, difference)")
    p.add_argument("--steps", type=int, default=20, help="ascent steps per octave")
    p.add_argument("--lr", type=float, default=0.05, help="step size (normalised gradient)")
    p.add_argument("--octaves", type=int, default=1)
    p.add_argument("--octave-scale", type=float, default=1.4)
    p.add_argument("--jitter", type=int, default=0, help="random shift in pixels per step")
    p.add_argument("--channel", type=int, default=None, help="excite only this channel")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter")


_ALIASES = (("conv", "Conv2d"), ("pool", "MaxPool2d"), ("fc", "Linear"))


def _layer_alias(model: Any, name: str) -> str:
    """'conv2' -> the dotted name of the second Conv2d (a convenience for the CLI); other
    names are returned as they are. An alias beyond the model's layers is an error."""
    from cnnkit import nn

    named = dict(model.named_modules())
    if name in named:
        return name
    for prefix, cls_name in _ALIASES:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            cls = getattr(nn, cls_name)
            found = [n for n, m in named.items() if isinstance(m, cls)]
            k = int(name[len(prefix) :])
            if not 1 <= k <= len(found):
                raise CLIError(
                    f"--layer {name}: the model has {len(found)} {cls_name} layers "
                    f"({', '.join(found) or 'none'})"
                )
            return found[k - 1]
    return name


@command("dream", "DeepDream: excite a layer by gradient ascent on an image")(_dream_args)
def cmd_dream(args: argparse.Namespace) -> int:
    from cnnkit import backend, viz
    from cnnkit.train.run import load_run

    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1; got {args.steps}")
    cfg, model = load_run(args.run)
    img = load_image(args.image, cfg["in_channels"], cfg["input_size"])
    layer = _layer_alias(model, args.layer)
    before = viz.layer_activation(model, img, layer, args.channel)
    backend.manual_seed(args.seed)
    dreamed = viz.deep_dream(
        model,
        img,
        layer,
        steps=args.steps,
        lr=args.lr,
        octaves=args.octaves,
        octave_scale=args.octave_scale,
        jitter=args.jitter,
        channel=args.channel,
    )
    after = viz.layer_activation(model, dreamed, layer, args.channel)
    what = layer if args.layer == layer else f"{args.layer} ({layer})"
    if args.channel is not None:
        what += f" channel {args.channel}"
    title = (
        f"DeepDream on {what}: mean activation {before:.3g} -> {after:.3g} "
        f"({args.steps} steps x {args.octaves} octaves)"
    )
    viz.plot_dream(img, dreamed, args.out, title=title)
    print(f"{what}: mean activation {before:.4g} -> {after:.4g}; wrote {args.out}")
    return 0


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet5", help="zoo model (default lenet5)")
    p.add_argument("--data", default="digits", help="data spec as for `cnnkit train`")
    p.add_argument("--epochs", default="5", help="comma-separated values (default 5)")
    p.add_argument("--lr", default="1e-3", help="comma-separated values (default 1e-3)")
    p.add_argument("--batch-size", default="64", help="comma-separated values (default 64)")
    p.add_argument("--dropout", default=None, help="comma-separated values")
    p.add_argument("--weight-decay", default=None, help="comma-separated values")
    p.add_argument(
        "--optimizer", default="adam", help="comma-separated: sgd, adam, adamw (default adam)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="any other hyper-parameter, e.g. model.activation=relu,tanh or "
        "'model.channels=[[6,16],[12,32]]' (a JSON list); repeatable",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--metric",
        default="val_acc",
        choices=["val_acc", "val_loss", "train_acc", "train_loss", "test_accuracy", "test_loss"],
        help="ranking column (default val_acc; losses: lower is better)",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="TensorBoard events per run, hyper-parameters side by side in the HParams tab",
    )
    p.add_argument("--out", required=True, help="folder for the runs and the results")


def _values(text: str | None, kind: type) -> list[Any] | None:
    """'0.1,0.01' -> [0.1, 0.01]."""
    if text is None:
        return None
    try:
        vals = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"cannot read {text!r} as a list of {kind.__name__}") from None
    if not vals:
        raise CLIError(f"no values in {text!r}")
    return vals


def _param(text: str) -> tuple[str, list[Any]]:
    """'model.activation=relu,tanh' -> ('model.activation', ['relu', 'tanh']); a JSON list
    after '=' is read as JSON; other values are JSON scalars or else strings."""
    key, sep, vals = text.partition("=")
    key = key.strip()
    if not sep or not key or not vals.strip():
        raise CLIError(f"--param must be KEY=VALUES, e.g. model.activation=relu,tanh; got {text!r}")
    if vals.strip().startswith("["):
        try:
            out = json.loads(vals)
        except json.JSONDecodeError as e:
            raise CLIError(f"--param {key}: not a JSON list ({e})") from None
        if not isinstance(out, list) or not out:
            raise CLIError(f"--param {key}: expected a non-empty JSON list")
        return key, [tuple(v) if isinstance(v, list) else v for v in out]

    def scalar(v: str) -> Any:
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v

    return key, [scalar(v.strip()) for v in vals.split(",") if v.strip()]


@command("grid", "grid search over hyper-parameters, one run directory each")(_grid_args)
def cmd_grid(args: argparse.Namespace) -> int:
    from cnnkit.train.grid import _split, grid_search

    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1; got {args.jobs}")
    grid: dict[str, list[Any]] = {}
    for key, text, kind in (
        ("epochs", args.epochs, int),
        ("lr", args.lr, float),
        ("batch_size", args.batch_size, int),
        ("dropout", args.dropout, float),
        ("weight_decay", args.weight_decay, float),
        ("optimizer", args.optimizer, str),
    ):
        vals = _values(text, kind)
        if vals:
            grid[key] = vals
    for text in args.param:
        key, vals = _param(text)
        grid[key] = vals
    if any(v < 1 for v in grid["epochs"]) or any(v < 1 for v in grid["batch_size"]):
        raise CLIError("--epochs and --batch-size must be >= 1")
    if any(not v > 0 for v in grid["lr"]):
        raise CLIError("--lr must be > 0")
    # settings with one value go to every run; only those that vary name the run folders
    base: dict[str, Any] = {"model": args.model, "data": args.data, "seed": args.seed}
    if args.tensorboard:
        _need_tensorboard()
        base["tensorboard"] = True
    _split({k: v[0] for k, v in grid.items()}, {})  # unknown names: a one-line error
    for key in [k for k, v in grid.items() if len(v) == 1]:
        value = grid.pop(key)[0]
        if key == "dropout" or key.startswith("model."):
            base.setdefault("model_kwargs", {})[key.removeprefix("model.")] = value
        else:
            base[key] = value
    if not grid:
        grid = {"seed": [args.seed]}
    grid_search(grid, args.out, base=base, jobs=args.jobs, metric=args.metric)
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("--onnx", metavar="PATH", help="write an ONNX model (opset 17)")
    p.add_argument(
        "--torch",
        metavar="PATH",
        help="write the state dict as safetensors (load with safetensors.torch.load_file)",
    )


@command("export", "write a trained run as ONNX and/or a PyTorch-loadable state dict")(_export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from cnnkit.train.run import load_run

    if not args.onnx and not args.torch:
        raise CLIError("nothing to export: give --onnx PATH and/or --torch PATH")
    cfg, model = load_run(args.run)
    model.eval()
    if args.torch:
        from cnnkit.io.torch_io import save_torch_state_dict

        print(f"wrote {save_torch_state_dict(args.torch, model)}")
    if args.onnx:
        try:
            from cnnkit.io.onnx_export import export_onnx
        except ImportError as e:
            raise CLIError(f"ONNX export is not available in this cnnkit ({e})") from None
        size = (1, cfg["in_channels"], cfg["input_size"], cfg["input_size"])
        export_onnx(model, args.onnx, size, opset=17)
        print(f"wrote {args.onnx}")
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    from cnnkit.serve.cli import add_arguments

    add_arguments(p)


@command("serve", "live dashboard of the runs in a folder, in the browser")(_serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from cnnkit.serve.cli import run

    return run(args)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = _Parser(
        prog="cnnkit", description="Train, inspect and use convolutional networks on NumPy."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (setup, run) in COMMANDS.items():
        p = sub.add_parser(name, help=run.help, description=run.help)  # type: ignore[attr-defined]
        setup(p)
        p.set_defaults(func=run)
    return parser


def _fail(command: str, e: BaseException) -> int:
    """Print ``e`` as one line on stderr; the exit status of a user error."""
    text = " ".join(str(e).split()) or type(e).__name__
    print(f"cnnkit {command}: error: {text}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cnnkit`` console script; returns the exit status
    (0 success, 2 bad arguments or files, 130 interrupted)."""
    import pickle

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, message already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"cnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, OSError, ValueError, TypeError, pickle.UnpicklingError) as e:
        return _fail(args.command, e)
    except Exception as e:
        from cnnkit.io.checkpoint import CheckpointError
        from cnnkit.train.loop import TrainingError

        if isinstance(e, (CheckpointError, TrainingError)):
            return _fail(args.command, e)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
