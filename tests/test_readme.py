"""The README runs as written: its shell and Python blocks, in order, on a fresh clone.

The slow test clones this repository (its working tree as it would be committed: tracked
files with their uncommitted changes, and untracked files that git does not ignore) into
a temporary folder, with ``../shared`` beside it as a symlink and a ``.venv`` of its own
that sees the packages of the environment running the tests (a ``.pth`` file naming that
environment's site-packages, and links to its commands such as ``mpiexec``): so the
README's ``make demo`` and ``pip install -e ...`` really install cnnkit, into the clone's
environment, without downloading the dependencies again and without re-pointing the
environment running the tests at the clone. It then runs every
```` ```bash ```` block as typed, one after the other in one plain ``bash`` whose
``PATH`` does not hold the environment (so ``source .venv/bin/activate`` must do its
job), and every ```` ```python ```` block with the ``python`` that activation put on
the ``PATH``, each as a script of its own (a Python block must be self-contained). A
block preceded by ``<!-- readme-test: skip (REASON) -->`` is not run.

Checked: every command exits 0 (bash's ERR trap stops at the first that does not, and
says which), the files a block names (``--out``/``--onnx``/``--torch``/``--root``
arguments, ``runs/...`` paths) exist afterwards, and ``git status`` in the clone is
clean. Downloads: a ``cnnkit download mnist --root DIR`` command finds the MNIST files
of ``../shared/data/mnist`` already in ``DIR`` (placed there by the test), verifies their
checksums and fetches nothing, so the test needs no network.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
OUTPUT_OPTIONS = ("--out", "--onnx", "--torch", "--root")
MARK = "@@readme-block"


@dataclass
class Block:
    """One fenced code block of the README."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the reason, when marked to be skipped


def readme_blocks(text: str) -> list[Block]:
    """The fenced ``bash``/``sh``/``python`` blocks of a Markdown text, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m["lang"].lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang in ("bash", "sh", "shell", "python", "py"):
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = SKIP.match(lines[k].strip()) if k >= 0 else None
            blocks.append(
                Block(
                    "python" if lang.startswith("py") else "bash",
                    "\n".join(lines[start + 1 : j]) + "\n",
                    start + 1,
                    marker["reason"] if marker else None,
                )
            )
        i = j + 1
    return blocks


def named_outputs(block: Block) -> list[str]:
    """Paths a block says it writes: values of --out/--onnx/--torch/--root, and (in
    Python) string literals under runs/."""
    if block.lang == "python":
        return re.findall(r"""["'](runs/[^"']+)["']""", block.code)
    out = []
    for line in block.code.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        out += [words[k + 1] for k, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS]
    return out


def test_blocks_and_skip_markers_are_found() -> None:
    text = (
        "intro\n```bash\necho one\n```\n\n<!-- readme-test: skip (needs a GPU) -->\n\n"
        "```bash\nnvidia-smi\n```\n```python\nprint(1)\n```\n```text\nnot code\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.lang, b.code, b.skip) for b in blocks] == [
        ("bash", "echo one\n", None),
        ("bash", "nvidia-smi\n", "needs a GPU"),
        ("python", "print(1)\n", None),
    ]
    assert [b.line for b in blocks] == [2, 8, 11]
    cmd = Block("bash", "cnnkit train --out runs/a \\\n  --epochs 2  # --out x\n", 1, None)
    assert named_outputs(cmd) == ["runs/a"]
    assert named_outputs(Block("python", 'plot(h, "runs/c.png")\n', 1, None)) == ["runs/c.png"]


def test_the_readme_has_runnable_blocks_and_every_skip_says_why() -> None:
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.skip is None]
    assert any("source .venv/bin/activate" in b.code for b in runnable)
    assert sum(b.lang == "bash" for b in runnable) >= 2
    assert all(b.skip.strip() for b in blocks if b.skip is not None)
    text = README.read_text()
    assert text.count("readme-test: skip") == sum(b.skip is not None for b in blocks), (
        "a skip marker that is not right above a code block"
    )


def _clone(dest: Path) -> Path:
    """A clone of this repository's working tree as it would be committed."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of cnnkit")
    clone = dest / "cnnkit"
    subprocess.run([git, "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    diff = subprocess.run([git, "-C", str(ROOT), "diff", "HEAD", "--binary"],
                          check=True, capture_output=True, timeout=60).stdout  # fmt: skip
    if diff.strip():
        subprocess.run([git, "-C", str(clone), "apply", "--whitespace=nowarn"], input=diff,
                       check=True, timeout=60)  # fmt: skip
    untracked = subprocess.run(
        [git, "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "-z"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, untracked):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    return clone


def _clone_venv(venv: Path) -> None:
    """A virtual environment for the clone that sees the test environment's packages.

    Its own ``python``, ``pip`` and ``activate``; the test environment's site-packages on
    its path through a ``.pth`` file (not a site directory of its own, so that
    environment's editable cnnkit is not picked up: the clone installs its own); links to
    the test environment's other commands (``mpiexec``, ``tensorboard``, ...) and to the
    shared libraries in its ``lib`` (MPICH's ``libmpi``, which mpi4py looks for there).
    """
    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, timeout=300)
    theirs = sysconfig.get_paths()["purelib"]
    ours = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (Path(ours) / "zz_test_environment.pth").write_text(theirs + "\n")
    own = ("python", "pip", "activate", "Activate", "cnnkit")
    for cmd in Path(sys.prefix, "bin").iterdir():
        link = venv / "bin" / cmd.name
        if not cmd.name.startswith(own) and not link.exists():
            link.symlink_to(cmd)
    for lib in Path(sys.prefix, "lib").iterdir():  # shared libraries (MPICH's libmpi)
        link = venv / "lib" / lib.name
        if not lib.name.startswith("python") and not link.exists():
            link.symlink_to(lib)


def _git_status(clone: Path) -> str:
    return subprocess.run(["git", "-C", str(clone), "status", "--porcelain"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def _plain_env() -> dict[str, str]:
    """A terminal's environment: no virtual environment on PATH, no PYTHONPATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MPLBACKEND")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(path or ["/usr/bin", "/bin"])
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_the_readme_runs_as_written_on_a_fresh_clone(tmp_path: Path) -> None:
    if sys.prefix == sys.base_prefix or not (Path(sys.prefix) / "bin" / "activate").exists():
        pytest.skip("the tests do not run in a virtual environment to share with the clone")
    blocks = readme_blocks(README.read_text())
    if any("download mnist" in b.code for b in blocks if b.skip is None):
        if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
            pytest.skip(f"the README downloads MNIST; no offline copy at {SHARED_MNIST}")
    clone = _clone(tmp_path)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    _clone_venv(clone / ".venv")
    before = _git_status(clone)  # uncommitted changes of this checkout, carried over
    for b in blocks:  # the files a download would fetch are there already (no network)
        for m in re.finditer(r"cnnkit download mnist --root (\S+)", b.code):
            root = clone / m[1]
            root.mkdir(parents=True, exist_ok=True)
            for f in SHARED_MNIST.glob("*-ubyte.gz"):
                (root / f.name).symlink_to(f)
    scripts = tmp_path / "blocks"
    scripts.mkdir()
    driver = ["set -o pipefail",
              'trap \'echo "README command failed (exit $?): $BASH_COMMAND" >&2; exit 97\' ERR',
              f"cd {shlex.quote(str(clone))}"]  # fmt: skip
    run = [b for b in blocks if b.skip is None]
    for k, b in enumerate(run):
        path = scripts / f"block{k}.{'sh' if b.lang == 'bash' else 'py'}"
        path.write_text(b.code)
        driver.append(f"echo '{MARK} {k}' $(date +%s.%N)")
        if b.lang == "bash":
            driver.append(f"source {shlex.quote(str(path))}")
        else:
            driver.append(f"python {shlex.quote(str(path))}")
    driver.append(f"echo '{MARK} end' $(date +%s.%N)")
    argv = ["bash", "--noprofile", "--norc", "-c", "\n".join(driver)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_plain_env(), timeout=900)
    parts = proc.stdout.split(f"{MARK} ")
    outputs = {p.split()[0]: p.partition("\n")[2] for p in parts[1:]}
    starts = [float(p.split("\n", 1)[0].split()[1]) for p in parts[1:]]
    for k, b in enumerate(run[: len(starts) - 1]):  # shown with -s, or on failure
        print(f"README line {b.line}: {starts[k + 1] - starts[k]:.1f} s")
    done = [k for k in range(len(run)) if str(k) in outputs]
    failed = run[done[-1]] if done else run[0]
    assert proc.returncode == 0 and "end" in outputs, (
        f"README block at line {failed.line} failed:\n{failed.code}\n--- stdout (tail):\n"
        f"{proc.stdout[-3000:]}\n--- stderr (tail):\n{proc.stderr[-3000:]}"
    )
    for b in run:
        for name in named_outputs(b):
            target = clone / name
            assert target.exists(), f"README line {b.line}: {name} was not written"
            if target.is_dir():
                assert any(target.iterdir()), f"README line {b.line}: {name} is empty"
            else:
                assert target.stat().st_size > 0, f"README line {b.line}: {name} is empty"
    status = _git_status(clone)
    assert status == before, f"the README leaves files that git sees:\n{status}"
    # what the README promises about its own examples
    for k, b in enumerate(run):
        out = outputs[str(k)]
        if "print(diagnose(" in b.code:
            assert not re.search(r"^overfitting:", out, re.M), out
        if re.search(r"cnnkit predict \S+ examples/digit\.png", b.code):
            line = next(x for x in out.splitlines() if x.startswith("examples/digit.png: "))
            assert line.split(": ", 1)[1].startswith("3 "), line  # the sample is a 3
            assert "inverted" in out and "centre of mass" in out, out
        if "--data mnist:" in b.code and "--split test" in README.read_text():
            assert "7,200 training and 800 validation images, the last 2,000" in out, out
