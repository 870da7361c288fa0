"""Checkpoints as untrusted input: integrity checks, header schema, limits, all-or-nothing."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import cnnkit as ck
from cnnkit import io, limits, nn, optim
from cnnkit.io.checkpoint import CheckpointError
from cnnkit.models import get_model


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def _saved(tmp_path: Path, with_opt: bool = True) -> Path:
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    if with_opt:
        m(ck.ones(1, 1, 4, 4)).sum().backward()
        opt.step()
    return io.save(tmp_path / "m.safetensors", m, optimizer=opt if with_opt else None)


def _rewrite(path: Path, mutate: Callable[[dict[str, Any]], Any], rehash: bool = True) -> None:
    """Change the cnnkit header (and keep the checksums consistent unless ``rehash`` is off)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    header = json.loads(meta["cnnkit"])
    out = mutate(header)
    header = out if isinstance(out, list) else header  # a mutation may replace the header
    text = json.dumps(header)
    meta["cnnkit"] = text
    if rehash:
        meta["cnnkit_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_bytes(st_save(st_load(data), metadata=meta))


# ----------------------------------------------------------------- integrity


def test_roundtrip_verifies(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    ck = io.load(p)
    assert ck.optimizer_class == "SGD"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.load(p)  # no warning for a verified file


def _tensor_spans(path: Path) -> dict[str, tuple[int, int]]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    raw = json.loads(data[8 : 8 + n])
    return {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1])
            for k, v in raw.items() if k != "__metadata__"}  # fmt: skip


@pytest.mark.parametrize("name", ["model.0.weight", "model.0.bias", "model.3.weight",
                                  "model.3.bias", "optim.0.momentum_buffer"])  # fmt: skip
@pytest.mark.parametrize("where", ["first", "last"])
def test_flipped_byte_in_a_tensor_names_file_and_tensor(
    tmp_path: Path, name: str, where: str
) -> None:
    p = _saved(tmp_path)
    spans = _tensor_spans(p)
    key = name if name in spans else next(k for k in spans if k.startswith("optim."))
    lo, hi = spans[key]
    data = bytearray(p.read_bytes())
    data[lo if where == "first" else hi - 1] ^= 0x10
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        io.load(p)
    assert str(p) in str(info.value)
    assert f"checksum mismatch in tensor '{key}'" in str(info.value)


def test_flipped_byte_in_the_cnnkit_header(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h["meta"].update(x=1), rehash=False)
    with pytest.raises(CheckpointError, match="header checksum mismatch"):
        io.load(p)


def test_every_single_byte_flip_in_the_header_region_is_an_error(tmp_path: Path) -> None:
    p = _saved(tmp_path, with_opt=False)
    good = p.read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    rng = np.random.default_rng(0)
    for pos in rng.choice(np.arange(8, 8 + n), size=25, replace=False):
        data = bytearray(good)
        data[pos] ^= 0x01
        p.write_bytes(bytes(data))
        try:
            io.load(p)
        except CheckpointError as e:
            assert str(p) in str(e)
        else:  # a flip in JSON padding or whitespace changes nothing
            assert chr(good[pos]) in " \t\r\n"


def test_missing_checksum_entry(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h["checksums"]["tensors"].pop("model.0.bias"))
    with pytest.raises(CheckpointError, match=r"tensor 'model\.0\.bias' has no checksum"):
        io.load(p)


def test_extra_checksum_entry_for_missing_tensor(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h["checksums"]["tensors"].update({"model.9.weight": "0" * 64}))
    with pytest.raises(CheckpointError, match=r"'model\.9\.weight' listed in the header"):
        io.load(p)


def test_header_checksum_missing_in_version_2(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    del meta["cnnkit_sha256"]
    p.write_bytes(st_save(st_load(data), metadata=meta))
    with pytest.raises(CheckpointError, match="cnnkit_sha256"):
        io.load(p)


def test_version_1_checkpoint_still_loads_with_a_warning(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    want = io.load(p).model.state_dict()

    def to_v1(h: dict[str, Any]) -> None:
        h["format_version"] = 1
        del h["checksums"]

    _rewrite(p, to_v1)
    with pytest.warns(UserWarning, match="format version 1 has no checksums"):
        ck = io.load(p)
    for k, v in ck.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), want[k].numpy())


@pytest.mark.parametrize("version", [0, 3, "2", None, True, 2.5])
def test_unknown_format_version(tmp_path: Path, version: Any) -> None:
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h.update(format_version=version))
    with pytest.raises(CheckpointError, match="format version"):
        io.load(p)


# ----------------------------------------------------------------- header schema

BAD_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "history-list": (lambda h: h.update(history=[1, 2]), "'history'"),
    "history-records-str": (lambda h: h.update(history={"records": "x"}), "'history.records'"),
    "history-record-int": (lambda h: h.update(history={"records": [3]}), "'history.records[0]'"),
    "history-value-list": (lambda h: h.update(history={"records": [{"loss": [1]}]}),
                           "'history.records[0].loss'"),
    "meta-list": (lambda h: h.update(meta=[1]), "'meta'"),
    "arch-list": (lambda h: h.update(architecture=[1]), "'architecture'"),
    "arch-kind": (lambda h: h.update(architecture={"kind": "evil"}), "'architecture.kind'"),
    "arch-no-type": (lambda h: h.update(architecture={"kind": "layer"}), "'architecture.type'"),
    "arch-bad-args": (lambda h: h["architecture"]["children"][0][1].update(args=[1]),
                      "'architecture.children[0][1].args'"),
    "arch-unknown-arg": (lambda h: h["architecture"]["children"][0][1]["args"].update(zz=1),
                         "'architecture'"),
    "arch-children-str": (lambda h: h["architecture"].update(children="abc"),
                          "'architecture.children'"),
    "arch-negative": (lambda h: h["architecture"]["children"][0][1]["args"].update(
        out_channels=-3), "'architecture'"),
    "model-class-int": (lambda h: h.update(model_class=5), "'model_class'"),
    "opt-list": (lambda h: h.update(optimizer=[]), "'optimizer'"),
    "opt-no-class": (lambda h: h["optimizer"].pop("class"), "'optimizer.class'"),
    "opt-class-int": (lambda h: h["optimizer"].update({"class": 3}), "'optimizer.class'"),
    "opt-groups-missing": (lambda h: h["optimizer"].pop("param_groups") and None,
                           "'optimizer.param_groups'"),
    "opt-groups-empty": (lambda h: h["optimizer"].update(param_groups=[]),
                         "'optimizer.param_groups'"),
    "opt-group-str": (lambda h: h["optimizer"].update(param_groups=["x"]),
                      "'optimizer.param_groups[0]'"),
    "opt-params-str": (lambda h: h["optimizer"]["param_groups"][0].update(params="abc"),
                       "'optimizer.param_groups[0].params'"),
    "opt-param-negative": (lambda h: h["optimizer"]["param_groups"][0].update(params=[-1]),
                           "'optimizer.param_groups[0].params[0]'"),
    "opt-lr-object": (lambda h: h["optimizer"]["param_groups"][0].update(lr={"a": 1}),
                      "'optimizer.param_groups[0].lr'"),
    "opt-scalars-list": (lambda h: h["optimizer"].update(scalars=[1]), "'optimizer.scalars'"),
    "opt-scalars-key": (lambda h: h["optimizer"].update(scalars={"x": {}}),
                        "'optimizer.scalars.x'"),
    "opt-scalar-str": (lambda h: h["optimizer"].update(scalars={"0": {"step": "s"}}),
                       "'optimizer.scalars.0.step'"),
    "checksums-missing": (lambda h: h.pop("checksums"), "'checksums'"),
    "checksums-algo": (lambda h: h["checksums"].update(algorithm="md5"), "'checksums.algorithm'"),
    "checksums-int": (lambda h: h["checksums"]["tensors"].update({"model.0.bias": 1}),
                      "'checksums.tensors.model.0.bias'"),
    "header-list": (lambda h: [h], "'header'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_malformed_header_field_is_named(tmp_path: Path, case: str) -> None:
    p = _saved(tmp_path)
    mutate, field = BAD_FIELDS[case]
    _rewrite(p, mutate)
    with pytest.raises(CheckpointError) as info:
        io.load(p)
    msg = str(info.value)
    assert msg.startswith(str(p)) and field in msg, msg


@pytest.mark.parametrize("case", ["opt-class-unknown", "opt-class-other", "opt-group-count"])
def test_malformed_optimizer_state_on_restore(tmp_path: Path, case: str) -> None:
    p = _saved(tmp_path)
    if case == "opt-class-unknown":
        _rewrite(p, lambda h: h["optimizer"].update({"class": "os"}))
        with pytest.raises(CheckpointError, match="unknown optimizer 'os'"):
            io.load(p).build_optimizer()
    elif case == "opt-class-other":
        ck = io.load(p)
        with pytest.raises(CheckpointError, match="saved optimizer is SGD; got Adam"):
            ck.restore_optimizer(optim.Adam(ck.model.parameters()))
    else:
        _rewrite(p, lambda h: h["optimizer"]["param_groups"][0].update(params=[0, 1]))
        with pytest.raises(CheckpointError, match=r"field 'optimizer\.param_groups\[0\]\.params'"):
            io.load(p).build_optimizer()


def test_unexpected_tensor_name(tmp_path: Path) -> None:
    p = _saved(tmp_path)
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    tensors = st_load(data)
    tensors["evil.x"] = np.zeros(2, np.float32)
    header = json.loads(meta["cnnkit"])
    header["checksums"]["tensors"]["evil.x"] = io.checkpoint.tensor_digest(tensors["evil.x"])
    meta["cnnkit"] = json.dumps(header)
    meta["cnnkit_sha256"] = hashlib.sha256(meta["cnnkit"].encode()).hexdigest()
    p.write_bytes(st_save(tensors, metadata=meta))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'evil\.x'"):
        io.load(p)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x01",
        b"\xff" * 8,
        b"\x10\x00\x00\x00\x00\x00\x00\x00[1,2,3,4,5,6,7,8]",
        b"\x04\x00\x00\x00\x00\x00\x00\x00null",
    ],
)
def test_garbage_files(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(p)):
        io.load(p)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a regular file"):
        io.load(tmp_path)


# ----------------------------------------------------------------- limits


@pytest.mark.parametrize("arch", [
    {"kind": "layer", "type": "Linear", "args": {"in_features": 10**6, "out_features": 10**6}},
    {"kind": "zoo", "type": "MLP", "config": {"in_features": 10**7, "hidden": [10**6],
                                             "num_classes": 10}},
    {"kind": "sequential", "type": "Sequential", "children": [
        ["0", {"kind": "layer", "type": "Linear", "args": {"in_features": 30000,
                                                          "out_features": 30000}}],
        ["1", {"kind": "layer", "type": "Linear", "args": {"in_features": 30000,
                                                          "out_features": 30000}}]]},
])  # fmt: skip
def test_architecture_asking_for_too_many_parameters(tmp_path: Path, arch: dict) -> None:
    p = _saved(tmp_path, with_opt=False)
    _rewrite(p, lambda h: h.update(architecture=arch))
    with pytest.raises(CheckpointError, match="MAX_PARAMETERS") as info:
        io.load(p)
    assert str(p) in str(info.value) and "parameters exceeds the limit" in str(info.value)


def test_parameter_limit_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = get_model("lenet5")
    p = io.save(tmp_path / "l.safetensors", m)
    monkeypatch.setattr(limits, "MAX_PARAMETERS", 1000)
    with pytest.raises(CheckpointError, match="limit of 1,000"):
        io.load(p)
    monkeypatch.setattr(limits, "MAX_PARAMETERS", 10**6)
    assert io.load(p).model is not None


# ----------------------------------------------------------------- load_state_dict


def test_load_state_dict_is_all_or_nothing_and_names_every_problem() -> None:
    m = _model()
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    sd = {k: v.numpy() + 1 for k, v in m.state_dict().items()}
    sd["0.weight"] = np.ones((9, 9), np.float32)  # wrong shape
    sd["3.bias"] = np.array(["a", "b", "c"])  # wrong dtype
    sd["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        m.load_state_dict(sd)
    msg = str(info.value)
    assert "0.weight: expected shape (2, 1, 3, 3); got (9, 9)" in msg
    assert "3.bias: expected dtype float32; got <U1" in msg
    assert "unexpected keys: ['extra']" in msg
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])  # nothing copied


@pytest.mark.parametrize("value", [np.array([1 + 2j, 0, 0]), np.array([None, None, None]),
                                   {"a": 1}, "abc"])  # fmt: skip
def test_load_state_dict_refuses_bad_values(value: Any) -> None:
    m = nn.Linear(2, 3)
    w = m.weight.numpy().copy()
    sd = {"weight": np.zeros((3, 2), np.float32), "bias": value}
    with pytest.raises(ValueError, match="bias"):
        m.load_state_dict(sd)
    np.testing.assert_array_equal(m.weight.numpy(), w)


def test_load_state_dict_refuses_non_mapping() -> None:
    with pytest.raises(TypeError, match="expected a mapping"):
        nn.Linear(2, 3).load_state_dict([1, 2])


def test_checkpoint_that_does_not_fit_leaves_model_unchanged(tmp_path: Path) -> None:
    p = io.save(tmp_path / "a.safetensors", nn.Linear(3, 2))
    other = nn.Linear(3, 4)
    w = other.weight.numpy().copy()
    with pytest.raises(CheckpointError, match="weights do not fit"):
        io.load(p, model=other)
    np.testing.assert_array_equal(other.weight.numpy(), w)
