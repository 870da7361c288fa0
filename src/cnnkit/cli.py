"""The ``cnnkit`` command line: train, evaluate, predict (more commands register here).

Bad arguments and bad files give a one-line error and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
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
    p.add_argument(
        "--model",
        default="lenet5",
        help="lenet5 | mlp | smallvgg | smallresnet | miniinception | resnetcifar | tinyyolo",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="digits | mnist:PATH | fashion:PATH | cifar10:PATH | folder:PATH | "
        "digit-scenes:PATH (detection, with --model tinyyolo)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="default 10 (with --resume: the run's own)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (tinyyolo: 32)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate; default 1e-3 (tinyyolo: 2e-3); about 1e-3 suits adam, 0.05 sgd",
    )
    p.add_argument(
        "--optimizer",
        choices=["sgd", "adam", "adamw"],
        default=None,
        help="sgd has momentum 0.9; with --resume: the run's own (default: adam)",
    )
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty")
    p.add_argument(
        "--scheduler",
        choices=["none", "cosine", "step", "plateau"],
        default=None,
        help="learning-rate schedule, stepped once per epoch (default none; tinyyolo: cosine)",
    )
    p.add_argument(
        "--augment", action="store_true", help="random shifts (and flips for colour images)"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation, shuffling, split")
    p.add_argument("--out", required=True, help="run directory to create (runs/NAME)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its own settings: an interrupted one, or a "
        "finished one to a larger --epochs",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to OUT/tensorboard (needs tensorboardX)",
    )


@contextlib.contextmanager
def _resume_hint(out: str) -> Iterator[None]:
    """On Ctrl-C, say how to continue the run (once it has started in ``out``)."""
    try:
        yield
    except KeyboardInterrupt:
        from cnnkit.train.run import resume_command

        if (Path(out) / "config.json.running").exists():
            print(f"\ncnnkit train: interrupted; continue with: {resume_command(out)}",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(130) from None
        raise


@command("train", "train a zoo model and write a run directory")(_train_args)
def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit.detect.run import is_detection
    from cnnkit.train.run import train_run

    if args.epochs is not None and args.epochs < 1:
        raise CLIError(f"--epochs must be >= 1; got {args.epochs}")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.lr is not None and not args.lr > 0:
        raise CLIError(f"--lr must be > 0; got {args.lr}")
    if not args.weight_decay >= 0:
        raise CLIError(f"--weight-decay must be >= 0; got {args.weight_decay}")
    if args.tensorboard:
        _need_tensorboard()
    if not args.resume:  # a misspelt model is named before any data is loaded
        from cnnkit.models import model_key

        model_key(args.model)
    if _is_detection_run(args.out) if args.resume else is_detection(args.model, args.data):
        from cnnkit.detect.cli import run_train

        return run_train(args)
    if args.resume:
        _check_typed_resume_options(args)
    args.batch_size = 64 if args.batch_size is None else args.batch_size
    args.lr = 1e-3 if args.lr is None else args.lr
    args.scheduler = args.scheduler or "none"
    # a diverging run is reported by fit (NaN loss: epoch and batch), not by NumPy warnings
    with np.errstate(over="ignore", invalid="ignore"), _resume_hint(args.out):
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
    if s.get("rank", 0) != 0:  # mpiexec: rank 0 reports
        return 0
    if s.get("world_size", 1) > 1:
        n, b = s["world_size"], s["batch_size"]
        print(f"data parallel: {n} ranks x batch size {b} = global batch {n * b}")
    print(f"test accuracy {s['test_accuracy']:.2%} (loss {s['test_loss']:.4f})")
    print(f"diagnosis: {s['diagnosis_text']}")
    print(f"run directory: {args.out}")
    return 0


_SETTINGS = ("model", "data", "batch_size", "lr", "weight_decay", "seed", "scheduler", "augment")


def _typed_options(argv: Sequence[str], setup: Callable[[argparse.ArgumentParser], None]) -> set:
    """The settings (of :data:`_SETTINGS`) given on the command line ``argv`` (the
    subcommand's own arguments), found by parsing them again with every default unset,
    so that an option typed with its default value still counts as given."""
    unset = object()
    probe = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    setup(probe)
    probe.set_defaults(**dict.fromkeys(_SETTINGS, unset))
    try:
        ns, _ = probe.parse_known_args(list(argv))
    except (argparse.ArgumentError, SystemExit):
        return set()
    return {k for k in _SETTINGS if getattr(ns, k, unset) is not unset}


def _check_typed_resume_options(args: argparse.Namespace) -> None:
    """``--resume --lr 0.001`` for a run trained with 0.01 is an error naming both, even
    when the typed value is the option's default (``train_run`` alone cannot tell a
    default from a typed value)."""
    from cnnkit.train.run import _check_resume_options, read_config

    argv = list(getattr(args, "argv", []) or [])
    if "train" not in argv:
        return
    typed = _typed_options(argv[argv.index("train") + 1 :], _train_args)
    out = Path(args.out)
    cfg_path = out / "config.json.running"
    if not cfg_path.exists():
        cfg_path = out / "config.json"
    try:
        cfg = read_config(cfg_path, finished=False)
    except (OSError, ValueError):
        return  # train_run reports what is wrong with the run
    try:
        _check_resume_options(out, cfg_path, cfg, typed=True,
                              **{k: getattr(args, k) for k in sorted(typed)})  # fmt: skip
    except ValueError as e:
        raise CLIError(str(e)) from None


def _is_detection_run(out: str) -> bool:
    """Whether ``out`` holds an (interrupted) detection run."""
    from cnnkit.io.reading import read_regular_text

    for name in ("config.json.running", "config.json"):
        try:
            text = read_regular_text(Path(out) / name, "run configuration")
            return json.loads(text).get("task") == "detection"
        except (OSError, ValueError, AttributeError):
            continue
    return False


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


@command(
    "evaluate",
    "test loss, accuracy and per-class report of a trained run (detection: mAP@0.5, per-class AP)",
)(_evaluate_args)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnkit.train.loop import evaluate
    from cnnkit.train.run import load_data, load_run

    cfg, model = load_run(args.run)
    if cfg.get("task") == "detection":
        from cnnkit.detect.cli import run_evaluate

        return run_evaluate(args, cfg, model)
    try:
        splits = load_data(args.data or cfg["data"], seed=cfg.get("seed", 0))
    except (OSError, ValueError) as e:
        if args.data:
            raise
        # the spec came from the run's config.json: say so
        raise CLIError(f"{Path(args.run) / 'config.json'}: field 'data': {e}") from None
    _check_fits(cfg, splits)
    result = evaluate(model, splits.test, classes=splits.classes or None)
    print(result)
    print("confusion matrix (rows: true, columns: predicted)")
    print(result.confusion_matrix)
    print(f"evaluated on the {len(splits.test):,} test images of {splits.note}")
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
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show")
    p.add_argument(
        "--preprocess",
        choices=["auto", "mnist", "digits8", "fashion", "plain"],
        default="auto",
        help="auto: the run's data set's own preprocessing (digits: invert dark-on-light, "
        "crop, scale and centre as MNIST or scikit-learn's digits); plain: resize only",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def prepare_input(
    path: str | Path, channels: int, size: int, data: str = "", style: str = "auto"
) -> Any:
    """An image file made ready for a run's model (a
    :class:`cnnkit.data.preprocess.Prepared`: the array and the steps taken); ``style``
    ``auto`` picks the preprocessing of the run's data spec ``data``."""
    from cnnkit.data.preprocess import prepare_image, style_for

    if not Path(path).is_file():
        raise CLIError(f"{path}: no such image file")
    if style == "auto":
        style = style_for(data, size)
    try:
        return prepare_image(path, channels, size, style)
    except ValueError as e:
        raise CLIError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from None


def load_image(path: str | Path, channels: int, size: int, data: str = "") -> Any:
    """An image file as a float32 ``(channels, size, size)`` array in [0, 1], prepared as
    :func:`prepare_input` does for the run's data ``data`` (a plain resize without it)."""
    return prepare_input(path, channels, size, data).image


@command("predict", "top-k classes with probabilities for image files")(_predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit.train.loop import predict
    from cnnkit.train.run import load_run

    if args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1; got {args.top_k}")
    cfg, model = load_run(args.run)
    if cfg.get("task") == "detection":
        raise CLIError(f"{args.run} is a detection run: use `cnnkit detect {args.run} IMAGE ...`")
    prepared = [
        prepare_input(p, cfg["in_channels"], cfg["input_size"], cfg["data"], args.preprocess)
        for p in args.images
    ]
    probs = predict(model, np.stack([p.image for p in prepared]))
    classes = cfg.get("classes") or [str(i) for i in range(probs.shape[1])]
    if len(classes) != probs.shape[1]:
        raise CLIError(
            f"{Path(args.run) / 'config.json'}: field 'classes': expected {probs.shape[1]} "
            f"names (the model's outputs); got {len(classes)}"
        )
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, p, prep in zip(args.images, probs, prepared, strict=True):
        top = np.argsort(-p)[:k]
        results.append(
            {
                "image": path,
                "top": [[classes[i], float(p[i])] for i in top],
                "preprocessing": prep.steps,
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r, prep in zip(results, prepared, strict=True):
            print(r["image"] + ": " + ", ".join(f"{c} {pr:.1%}" for c, pr in r["top"]))
            print(f"  preprocessing: {prep.describe()}")
    return 0


def _detect_args(p: argparse.ArgumentParser) -> None:
    from cnnkit.detect.cli import detect_args

    detect_args(p)


@command("detect", "boxes, labels and scores of the objects in scene images (TinyYOLO runs)")(
    _detect_args
)
def cmd_detect(args: argparse.Namespace) -> int:
    from cnnkit.detect.cli import run_detect

    return run_detect(args)


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
    p.add_argument(
        "--top-patches",
        default=None,
        metavar="LAYER",
        help="also write top_patches.png: for each channel of LAYER (e.g. conv2 or "
        "features.4) the 9 test-set input patches that excite it most (default: off)",
    )


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
    if cfg.get("task") == "detection" and args.images:
        raise CLIError(
            f"{args.run} is a detection run: activation and saliency pictures are for "
            "classifiers; use --images 0 (filters and curves) and `cnnkit detect --draw`"
        )
    history_csv = Path(args.run) / "history.csv"
    if not history_csv.is_file():
        raise CLIError(f"{args.run}: no history.csv (not a run written by `cnnkit train`)")
    splits = load_data(cfg["data"], seed=cfg.get("seed", 0)) if args.images else None
    if splits is not None:
        _check_fits(cfg, splits)
        if args.images > len(splits.test):
            raise CLIError(
                f"--images must be at most the {len(splits.test):,} test images of "
                f"{cfg['data']}; got {args.images} (each image writes 3 pictures)"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    classes = cfg.get("classes") or [str(k) for k in range(cfg.get("num_classes", 0))]
    written = []
    if convs:
        written.append(out / "filters.png")
        viz.plot_filters(convs[0][1], written[-1], title=f"First-layer filters ({convs[0][0]})")
    n_images = args.images if splits is not None else 0
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
    if args.top_patches:
        from cnnkit.viz.patches import plot_top_patches, top_patches

        splits = splits or load_data(cfg["data"], seed=cfg.get("seed", 0))
        layer = _layer_alias(model, args.top_patches, "--top-patches")
        try:
            found = top_patches(model, splits.test, layer, k=9)
        except ValueError as e:
            raise CLIError(f"--top-patches {args.top_patches}: {e}") from None
        written.append(out / "top_patches.png")
        plot_top_patches(found, written[-1])
    written.append(out / "curves.png")
    viz.plot_history(
        History.from_csv(history_csv), written[-1], title=f"{cfg['model']} on {cfg['data']}"
    )
    for w in written:
        print(w)
    return 0


def _dream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `cnnkit train`")
    p.add_argument("image", nargs="?", default=None, help="start image (png, jpg, ...)")
    p.add_argument(
        "--test-image",
        type=int,
        default=None,
        metavar="INDEX",
        help="start from this image of the run's test set instead of an image file",
    )
    p.add_argument(
        "--layer",
        required=True,
        help="a dotted layer name (features.3) or an alias: convK / poolK / fcK = the K-th "
        "Conv2d / MaxPool2d / Linear",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output picture: original, dream and difference (.png, .jpg, .pdf, .svg, ...)",
    )
    p.add_argument("--steps", type=int, default=40, help="ascent steps per octave (default 40)")
    p.add_argument(
        "--lr",
        type=float,
        default=0.2,
        help="first step size as a fraction of the data range, decaying to a tenth "
        "(normalised gradient; default 0.2)",
    )
    p.add_argument("--octaves", type=int, default=3, help="number of scales (default 3)")
    p.add_argument("--octave-scale", type=float, default=1.4, help="default 1.4")
    p.add_argument(
        "--jitter",
        type=int,
        default=None,
        help="largest random shift in pixels per step (default: image side // 16)",
    )
    p.add_argument(
        "--keep",
        type=float,
        default=0.5,
        help="structure guard: the dream's correlation with the original stays >= KEEP "
        "(default 0.5; higher keeps more of the digit, e.g. 0.7 on 8x8 digits; -1 turns "
        "the guard off)",
    )
    p.add_argument("--channel", type=int, default=None, help="excite only this channel")
    p.add_argument("--objective", choices=["norm", "mean"], default="norm", help="default: L2 norm")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter (default 0)")


_ALIASES = (("conv", "Conv2d"), ("pool", "MaxPool2d"), ("fc", "Linear"))


def _aliased(model: Any) -> dict[str, list[str]]:
    """Per alias prefix (conv, pool, fc), the dotted names of its layers in order."""
    from cnnkit import nn

    named = list(model.named_modules())
    return {
        prefix: [n for n, m in named if isinstance(m, getattr(nn, cls_name))]
        for prefix, cls_name in _ALIASES
    }


def _layer_choices(model: Any) -> str:
    """What ``--layer`` accepts for ``model``: each alias with the layer it names, and
    that every dotted name (as ``cnnkit summary`` prints them) works too."""
    parts = [
        f"{prefix}{k} = {n}"
        for prefix, found in _aliased(model).items()
        for k, n in enumerate(found, 1)
    ]
    dotted = [n for n, _ in model.named_modules() if n]
    return (
        f"aliases: {', '.join(parts) or 'none'}; or a dotted name of any layer "
        f"({', '.join(dotted)})"
    )


def _layer_alias(model: Any, name: str, option: str = "--layer") -> str:
    """'conv2' -> the dotted name of the second Conv2d (a convenience for the CLI); other
    names are returned as they are. A name the model does not have is an error that
    lists what it has."""
    if name in dict(model.named_modules()):
        return name
    aliased = _aliased(model)
    for prefix, cls_name in _ALIASES:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            found = aliased[prefix]
            k = int(name[len(prefix) :])
            if not 1 <= k <= len(found):
                raise CLIError(
                    f"{option} {name}: the model has {len(found)} {cls_name} layers; "
                    f"{_layer_choices(model)}"
                )
            return found[k - 1]
    if isinstance(name, str) and not name.lstrip("-").isdigit():
        raise CLIError(f"{option} {name}: the model has no such layer; {_layer_choices(model)}")
    return name


@command("dream", "DeepDream: excite a layer by gradient ascent on an image")(_dream_args)
def cmd_dream(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnkit import backend, viz
    from cnnkit.train.run import load_run

    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1; got {args.steps}")
    if not -1 <= args.keep <= 1:
        raise CLIError(f"--keep must be a correlation in [-1, 1] (-1: no guard); got {args.keep}")
    if args.image is None and args.test_image is None:
        raise CLIError("give an image file or --test-image INDEX to start from")
    if args.image is not None and args.test_image is not None:
        raise CLIError("give an image file or --test-image INDEX, not both")
    cfg, model = load_run(args.run)
    if args.image is not None:
        img = load_image(args.image, cfg["in_channels"], cfg["input_size"], cfg["data"])
    else:
        from cnnkit.train.run import load_data

        test = load_data(cfg["data"], seed=cfg.get("seed", 0)).test
        if not 0 <= args.test_image < len(test):
            raise CLIError(f"--test-image must be in 0..{len(test) - 1}; got {args.test_image}")
        img = _sample(test[args.test_image])[0]
    layer = _layer_alias(model, args.layer)
    from cnnkit.viz.dream import data_range, layer_norm

    clip = data_range(cfg, cfg["in_channels"])
    before = layer_norm(model, img, layer, args.channel)
    backend.manual_seed(args.seed)
    try:
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
            clip=clip,
            objective=args.objective,
            keep=args.keep,
        )
    except ValueError as e:
        raise CLIError(str(e)) from None
    after = layer_norm(model, dreamed, layer, args.channel)
    corr = float(np.corrcoef(np.ravel(img), np.ravel(dreamed))[0, 1])
    ratio = after / max(before, 1e-12)
    what = layer if args.layer == layer else f"{args.layer} ({layer})"
    if args.channel is not None:
        what += f" channel {args.channel}"
    title = (
        f"DeepDream on {what}: L2 norm {before:.4g} -> {after:.4g} (x{ratio:.2f}), "
        f"correlation {corr:.2f}"
    )
    viz.plot_dream(img, dreamed, args.out, title=title, value_range=clip)
    lo, hi = float(np.min(clip[0])), float(np.max(clip[1]))
    print(
        f"{what}: activation L2 norm {before:.4g} -> {after:.4g} (x{ratio:.2f}); "
        f"correlation with the original {corr:.2f}; pixels in [{float(dreamed.min()):.3g}, "
        f"{float(dreamed.max()):.3g}] (data range [{lo:.3g}, {hi:.3g}]); wrote {args.out}"
    )
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


def _download_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=["mnist", "fashion"], help="MNIST or Fashion-MNIST")
    p.add_argument("--root", required=True, help="folder for the files (then --data mnist:ROOT)")
    p.add_argument(
        "--split",
        choices=["all", "train", "test"],
        default="all",
        help="test: only the 10,000 t10k images",
    )
    p.add_argument(
        "--mirror", action="append", default=[], metavar="URL",
        help="base URL to fetch from instead of the data set's own mirrors; repeatable",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("download", "fetch MNIST or Fashion-MNIST, checking MD5s and resuming")(_download_args)
def cmd_download(args: argparse.Namespace) -> int:
    from cnnkit.data.download import DownloadError, download_dataset

    try:
        files = download_dataset(
            args.dataset,
            args.root,
            split=args.split,
            mirrors=args.mirror or None,
            progress=not args.quiet,
            log=print,
        )
    except DownloadError as e:
        first, *each = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
        tried = f"{first} {'; '.join(each)}".strip()  # one clause per mirror tried
        raise CLIError(
            f"{tried}. Run the command again to resume; without internet access, copy the "
            f"data set's .gz files into {args.root} and run it again to check them"
        ) from None
    print(f"{len(files)} files in {args.root}; train with --data {args.dataset}:{args.root}")
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


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (or says it is required), as
    ``argparse.ArgumentDefaultsHelpFormatter`` does, also for options without help text;
    on/off flags are off unless given, and help that states its default is kept."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action.const, bool) and action.nargs == 0
        if (
            not action.option_strings
            or flag
            or action.default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        if action.required:
            return f"{text} (required)".lstrip()
        if action.default is None:
            return f"{text} (default: none)".lstrip()
        if action.default == []:
            return f"{text} (default: none)".lstrip()
        return f"{text} (default: %(default)s)".lstrip()


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


class _CommandParser(_Parser):
    """A subcommand's parser: an option it does not know is its error, named before any
    other (a missing required option included), with the closest option suggested."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        import difflib

        tokens = list(sys.argv[1:] if args is None else args)
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        for tok in tokens:
            if tok == "--":
                break
            name = tok.split("=", 1)[0]
            if (
                tok.startswith("--")
                and len(name) > 2
                and not any(k.startswith(name) for k in known)
            ):
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                self.error(
                    f"unrecognized option {name}" + (f"; did you mean {close[0]}?" if close else "")
                )
        ns, extras = super().parse_known_args(tokens, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = _Parser(
        prog="cnnkit",
        description="Train, inspect and use convolutional networks on NumPy.",
        formatter_class=_HelpFormatter,
    )
    from cnnkit import __version__

    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    sub.required = True
    for name, (setup, run) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=run.help,  # type: ignore[attr-defined]
            description=run.help,  # type: ignore[attr-defined]
            formatter_class=_HelpFormatter,
        )
        setup(p)
        for action in p._actions:  # options registered without help still show a default
            if action.help is None and action.option_strings:
                action.help = _HelpFormatter(name)._get_help_string(action)
        p.set_defaults(func=run)
    return parser


def _fail(command: str, e: BaseException) -> int:
    """Print ``e`` as one line on stderr; the exit status of a user error. An operating
    system error names its file first, in words (``runs/x: Permission denied``), not as
    Python's ``[Errno 13] ...``."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        text = f"{e.filename}: {e.strerror}"
        if e.filename2 is not None:
            text += f" (with {e.filename2})"
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
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit as e:  # a command that has said why it stops (Ctrl-C in train)
        return e.code if isinstance(e.code, int) else 1
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
