"""Hostile and broken ``.pt`` files: every one is refused with one clear CheckpointError
naming the file, before large memory is allocated and without running pickled code."""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from cnnkit.io import (
    CheckpointError,
    TorchLoadLimits,
    TorchPickleError,
    load_torch_object,
    load_torch_state_dict,
)
from tests.io import torch_files as tf

W = np.arange(12, dtype=np.float32).reshape(3, 4)


def _good(tmp_path: Path, name: str = "good.pt", **kw) -> Path:
    return tf.write_zip(tmp_path / name, {"w": tf.tensor(W, "0"), "b": tf.tensor(W[0], "1")}, **kw)


def _central(data: bytes, name: str) -> int:
    """Offset of the central-directory record of entry ``name``."""
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + n] == name.encode():
            return pos
        pos += 4
    raise AssertionError(name)


def _local(data: bytes, name: str) -> int:
    return struct.unpack_from("<I", data, _central(data, name) + 42)[0]


def _patch(path: Path, edits: list[tuple[int, bytes]]) -> Path:
    data = bytearray(path.read_bytes())
    for off, new in edits:
        data[off : off + len(new)] = new
    path.write_bytes(bytes(data))
    return path


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    except CheckpointError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


# ------------------------------------------------------------- the baseline is fine
def test_the_unmodified_file_loads(tmp_path):
    sd = load_torch_state_dict(_good(tmp_path))
    np.testing.assert_array_equal(sd["w"], W)


# --------------------------------------------------------------- decompression bombs
def test_deflated_storage_bomb_is_refused_before_inflating(tmp_path):
    n = 16 * 2**20 // 4  # 16 MiB of zeros, deflated to ~16 KiB
    zeros = tf.T(tf.Storage(np.zeros(n, np.float32), "0"), 0, (n,), (1,))
    path = tf.write_zip(tmp_path / "bomb.pt", {"w": zeros}, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    limits = TorchLoadLimits(max_bytes=2**20)
    with pytest.raises(CheckpointError, match=r"bomb\.pt: storage 0 .*over the limit of 1,048,576"):
        load_torch_state_dict(path, limits=limits)
    assert _peak_mib(lambda: load_torch_state_dict(path, limits=limits)) < 4
    # the same file under the default limit is an honest 16 MiB of zeros
    assert load_torch_state_dict(path)["w"].shape == (n,)


def test_storage_claiming_a_huge_element_count(tmp_path):
    s = tf.Storage(np.zeros(4, np.float32), "0")
    obj = {"w": tf.T(s, 0, (4,), (1,))}
    path = tf.write_zip(tmp_path / "claim.pt", obj)
    data = path.read_bytes()
    # the pickle's numel (4) becomes 10**12 in a rewritten pickle
    pkl = zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    big = pkl.replace(b"K\x04", b"\x8a\x06" + (10**12).to_bytes(6, "little"), 1)
    assert big != pkl
    with zipfile.ZipFile(tmp_path / "claim2.pt", "w") as z:
        z.writestr("archive/data.pkl", big)
        z.writestr("archive/data/0", b"\0" * 16)
    with pytest.raises(CheckpointError, match=r"claim2\.pt: storage 0 \(1,000,000,000,000 elem"):
        load_torch_state_dict(tmp_path / "claim2.pt")


def test_data_pkl_over_the_pickle_limit(tmp_path):
    path = _good(tmp_path, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(
        CheckpointError,
        match=r"good\.pt: archive/data\.pkl declares 244 bytes, over the limit of 16",
    ):
        load_torch_state_dict(path, limits=TorchLoadLimits(max_pickle_bytes=16))


def test_legacy_pickle_over_the_pickle_limit(tmp_path):
    path = tf.write_legacy(tmp_path / "old.pt", {"w": tf.tensor(W, "0")})
    with pytest.raises(
        CheckpointError, match=r"old\.pt: the pickle is longer than the limit of 64"
    ):
        load_torch_state_dict(path, limits=TorchLoadLimits(max_pickle_bytes=64))


# ------------------------------------------------------------ amplification by views
@pytest.mark.parametrize(
    "size, stride",
    [
        ((10**6, 10**6), (0, 0)),  # 10^12 elements from one
        ((10**5, 10**5), (1, 1)),  # overlapping rows
        ((2**31, 8), (0, 1)),
        ((10**4,) * 4, (0, 0, 0, 0)),
    ],
)
def test_zero_or_overlapping_strides_cannot_expand_a_storage(tmp_path, size, stride):
    s = tf.Storage(np.ones(200_000, np.float32), "0")
    for write in (tf.write_zip, tf.write_legacy):
        path = write(tmp_path / f"amp_{write.__name__}.pt", {"w": tf.T(s, 0, size, stride)})
        with pytest.raises(TorchPickleError, match=r"amp_.*\.pt: .* expand a storage of 200,000"):
            load_torch_state_dict(path)
        assert _peak_mib(lambda p=path: load_torch_state_dict(p)) < 4


def test_a_small_expand_is_still_read(tmp_path):
    s = tf.Storage(np.arange(4, dtype=np.float32), "0")
    path = tf.write_zip(tmp_path / "ok.pt", {"w": tf.T(s, 0, (3, 4), (0, 1))})
    np.testing.assert_array_equal(load_torch_state_dict(path)["w"], np.tile(np.arange(4), (3, 1)))
    with pytest.raises(TorchPickleError, match="max_expanded_bytes"):
        load_torch_state_dict(path, limits=TorchLoadLimits(max_expanded_bytes=16))


def test_many_tensors_on_one_storage_count_against_max_bytes(tmp_path):
    s = tf.Storage(np.ones(1024, np.float32), "0")
    obj = {f"w{i}": tf.T(s, 0, (1024,), (1,)) for i in range(64)}
    path = tf.write_zip(tmp_path / "many.pt", obj)
    assert len(load_torch_state_dict(path)) == 64
    with pytest.raises(CheckpointError, match=r"many\.pt: tensor of size \(1024,\) brings"):
        load_torch_state_dict(path, limits=TorchLoadLimits(max_bytes=100_000))


# ------------------------------------------------------ sizes that disagree with storage
@pytest.mark.parametrize(
    "offset, size, stride, match",
    [
        (5, (3, 4), (4, 1), "reaches element 16 of a storage of 12"),
        (0, (13,), (1,), "reaches element 12"),
        (12, (1,), (1,), "reaches element 12"),
        (11, (3,), (-1,), "bad geometry"),
        (-1, (2,), (1,), "bad geometry"),
        (0, (2, 2), (1,), "bad geometry"),
        (0, (-2,), (1,), "bad geometry"),
        ("0", (2,), (1,), "malformed offset/size/stride"),
        (0, (2.5,), (1,), "malformed offset/size/stride"),
        (0, 7, (1,), "malformed offset/size/stride"),
    ],
)
def test_views_that_do_not_fit_their_storage(tmp_path, offset, size, stride, match):
    s = tf.Storage(np.arange(12, dtype=np.float32), "0")
    t = tf.T(s, 0, (1,), (1,))
    t.offset, t.size, t.stride = offset, size, stride
    path = tf.write_zip(tmp_path / "geo.pt", {"w": t})
    with pytest.raises(TorchPickleError, match=rf"geo\.pt: .*{match}"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("nbytes", [0, 20, 47, 49, 4096])
def test_storage_entry_of_the_wrong_length(tmp_path, nbytes):
    path = tf.write_zip(
        tmp_path / "len.pt", {"w": tf.tensor(W, "0")}, storages_override={"0": b"\0" * nbytes}
    )
    with pytest.raises(CheckpointError, match=rf"len\.pt: storage archive/data/0 has {nbytes:,} "):
        load_torch_state_dict(path)


def test_legacy_count_disagrees_with_the_pickle(tmp_path):
    path = tf.write_legacy(tmp_path / "cnt.pt", {"w": tf.tensor(W, "0")})
    data = path.read_bytes()
    at = len(data) - 48 - 8
    assert struct.unpack_from("<q", data, at)[0] == 12
    _patch(path, [(at, struct.pack("<q", 13))])
    with pytest.raises(CheckpointError, match=r"cnt\.pt: storage 0 holds 13 elements; the pickle"):
        load_torch_state_dict(path)


def test_legacy_storage_keys_disagree(tmp_path):
    path = tf.write_legacy(tmp_path / "keys.pt", {"w": tf.tensor(W, "0")})
    data = path.read_bytes()
    keys = pickle.dumps(["0"], protocol=2)
    assert keys in data
    path.write_bytes(data.replace(keys, pickle.dumps(["7"], protocol=2)))
    with pytest.raises(CheckpointError, match=r"keys\.pt: the pickle uses storages \['0'\] but"):
        load_torch_state_dict(path)


# ------------------------------------------------------------------- corrupt zips
def test_bad_crc(tmp_path):
    path = _good(tmp_path, "crc.pt")
    data = path.read_bytes()
    start = _local(data, "archive/data/0")
    name_len, extra_len = struct.unpack_from("<HH", data, start + 26)
    body = start + 30 + name_len + extra_len
    _patch(path, [(body + 5, bytes([data[body + 5] ^ 0xFF]))])
    with pytest.raises(CheckpointError, match=r"crc\.pt: corrupt zip entry archive/data/0 .*CRC"):
        load_torch_state_dict(path)


def test_encrypted_entry(tmp_path):
    path = _good(tmp_path, "enc.pt")
    data = path.read_bytes()
    c, loc = _central(data, "archive/data/1"), _local(data, "archive/data/1")
    _patch(path, [(c + 8, b"\x01\x00"), (loc + 6, b"\x01\x00")])
    with pytest.raises(CheckpointError, match=r"enc\.pt: zip entry archive/data/1 is encrypted"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("method", [1, 9, 12, 14, 99])
def test_unknown_compression(tmp_path, method):
    path = _good(tmp_path, "comp.pt")
    data = path.read_bytes()
    c, loc = _central(data, "archive/data.pkl"), _local(data, "archive/data.pkl")
    _patch(path, [(c + 10, struct.pack("<H", method)), (loc + 8, struct.pack("<H", method))])
    with pytest.raises(CheckpointError, match=rf"comp\.pt: .*compression method {method}; only"):
        load_torch_state_dict(path)


def test_corrupt_deflate_stream(tmp_path):
    path = _good(tmp_path, "zlib.pt", compression=zipfile.ZIP_DEFLATED)
    data = path.read_bytes()
    start = _local(data, "archive/data.pkl")
    name_len, extra_len = struct.unpack_from("<HH", data, start + 26)
    body = start + 30 + name_len + extra_len
    _patch(path, [(body, b"\xff\xff\xff\xff")])
    with pytest.raises(CheckpointError, match=r"zlib\.pt: corrupt zip entry archive/data\.pkl"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -22, -1])
def test_truncated_zip(tmp_path, keep):
    path = _good(tmp_path, "cut.pt")
    data = path.read_bytes()
    n = int(len(data) * keep) if keep > 0 else len(data) + keep
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"cut\.pt: .*(truncated|corrupt)"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("keep", [1, 10, 30, 60, 0.5, 0.9, -5, -1])
def test_truncated_legacy_stream(tmp_path, keep):
    path = tf.write_legacy(tmp_path / "cut.pt", {"w": tf.tensor(W, "0")})
    data = path.read_bytes()
    n = keep if isinstance(keep, int) and keep > 0 else len(data) + keep if keep < 0 else None
    n = int(len(data) * keep) if n is None else n
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"cut\.pt: "):
        load_torch_state_dict(path)


def test_two_pickles_and_missing_byteorder_value(tmp_path):
    path = tmp_path / "two.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", pickle.dumps({}))
        z.writestr("b/data.pkl", pickle.dumps({}))
    with pytest.raises(CheckpointError, match=r"two\.pt: .*found 2"):
        load_torch_state_dict(path)
    path = _good(tmp_path, "huge.pt", byteorder="little" + " " * 10_000_000,
                 compression=zipfile.ZIP_DEFLATED)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"huge\.pt: archive/byteorder declares 10,000,006"):
        load_torch_state_dict(path)
    path = _good(tmp_path, "order.pt", byteorder="middle")
    with pytest.raises(CheckpointError, match=r"order\.pt: unknown byteorder 'middle'"):
        load_torch_state_dict(path)


# -------------------------------------------------------------- malformed pickles
def _pkl_zip(tmp_path: Path, name: str, pkl: bytes) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
    return path


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2, 3], "holds a list, not a state dict"),
        ("weights", "holds a str, not a state dict"),
        ({"epoch": 3, "lr": 0.1}, r"no state dict found in \{'epoch': int, 'lr': float\}"),
        ({"w": 1.5, "b": "x"}, "no state dict found"),
    ],
)
def test_objects_that_are_not_state_dicts(tmp_path, obj, match):
    path = _pkl_zip(tmp_path, "obj.pt", pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError, match=rf"obj\.pt: {match}"):
        load_torch_state_dict(path)


@pytest.mark.parametrize(
    "pkl, match",
    [
        (b"\x80\x02}q\x00", "corrupt pickle"),  # no STOP
        (b"\x80\x02X\x05\x00\x00\x00ab.", "corrupt pickle"),  # string past the end
        (b"\x80\x02\xff.", "corrupt pickle"),  # unknown opcode
        (b"", "corrupt pickle"),
        (b"\x80\x02(X\x01\x00\x00\x00kq\x01tQ.", "persistent id"),  # ('k',) as pid
        (b"\x80\x02cbuiltins\nexec\nq\x00.", "refused to load global builtins.exec"),
        (b"\x80\x02cposix\nsystem\nq\x00.", "refused to load global posix.system"),
        (b"\x80\x02ctorch\nload\nq\x00.", "refused to load global torch.load"),
        (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x85R.", "numpy dtype 'O8' refused"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00rot\x86R.", "_codecs"),
    ],
)
def test_malformed_pickles(tmp_path, pkl, match):
    path = _pkl_zip(tmp_path, "bad.pt", pkl)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: .*{match}"):
        load_torch_state_dict(path)


class _PidPickler(pickle.Pickler):
    def __init__(self, f, pid):
        super().__init__(f, protocol=2)
        self._pid = pid

    def persistent_id(self, obj):
        return self._pid if isinstance(obj, tf.Storage) else None


@pytest.mark.parametrize(
    "pid, match",
    [
        (("storage", "FloatStorage", "0", "cpu", 12), "without a storage type"),
        (("storage", tf.StorageType, "0", "cpu"), "persistent id"),
        (("tensor", tf.StorageType, "0", "cpu", 12), "persistent id"),
        (("storage", tf.StorageType, 3.5, "cpu", 12), "storage key"),
        (("storage", tf.StorageType, "0", "cpu", -4), "negative element count"),
        (("storage", tf.StorageType, "0", "cpu", "12"), "element count must be an integer"),
        (("storage", tf.StorageType, "0", "cpu", True), "element count must be an integer"),
    ],
)
def test_malformed_persistent_ids(tmp_path, pid, match):
    buf = io.BytesIO()
    _PidPickler(buf, pid).dump({"w": tf.Storage(W, "0")})
    name = f"c{tf.__name__}\nStorageType\n".encode()
    pkl = buf.getvalue().replace(name, b"ctorch\nFloatStorage\n")
    path = _pkl_zip(tmp_path, "pid.pt", pkl)
    with pytest.raises(CheckpointError, match=rf"pid\.pt: .*{match}"):
        load_torch_object(path)


def test_storage_declared_twice_with_different_sizes(tmp_path):
    a = tf.Storage(np.zeros(4, np.float32), "0")
    b = tf.Storage(np.zeros(8, np.float32), "0")
    path = tf.write_zip(
        tmp_path / "twice.pt", {"a": tf.T(a, 0, (4,), (1,)), "b": tf.T(b, 0, (8,), (1,))}
    )
    with pytest.raises(TorchPickleError, match=r"twice\.pt: storage 0 declared twice"):
        load_torch_state_dict(path)


def test_rebuild_with_a_non_storage(tmp_path):
    pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nK\x01K\x00)).".replace(b"))", b")\x86R")
    pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x00K\x02\x85K\x01\x85tR."
    path = _pkl_zip(tmp_path, "ns.pt", pkl)
    with pytest.raises(TorchPickleError, match=r"ns\.pt: .*is a int, not a storage"):
        load_torch_object(path)


def test_deeply_nested_pickle(tmp_path):
    pkl = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."
    path = _pkl_zip(tmp_path, "deep.pt", pkl)
    with pytest.raises(CheckpointError, match=r"deep\.pt: the pickle nests too deeply"):
        load_torch_object(path)


def test_numpy_object_scalar_is_refused(tmp_path):
    pkl = (
        b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00f8\x85R"
        b"C\x03abc\x86R."
    )
    path = _pkl_zip(tmp_path, "npsc.pt", pkl)
    with pytest.raises(TorchPickleError, match=r"npsc\.pt: .*need 8 bytes of float64"):
        load_torch_object(path)


# -------------------------------------------------------------- legacy headers
@pytest.mark.parametrize(
    "parts, match",
    [
        ([12345], r"not a torch\.save file \(magic number 12345"),
        ([tf.MAGIC_NUMBER, 1000], "protocol version 1000; expected 1001"),
        ([tf.MAGIC_NUMBER, 1001, [1, 2]], "sys_info is a list, not a dict"),
        ([tf.MAGIC_NUMBER, 1001, {}, {}, "keys"], "storage key list is malformed"),
    ],
)
def test_legacy_headers(tmp_path, parts, match):
    path = tmp_path / "hdr.pt"
    path.write_bytes(b"".join(pickle.dumps(p, protocol=2) for p in parts))
    with pytest.raises(CheckpointError, match=rf"hdr\.pt: .*{match}"):
        load_torch_state_dict(path)


def test_legacy_header_with_a_global_is_refused(tmp_path):
    path = tmp_path / "g.pt"
    path.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    with pytest.raises(CheckpointError, match=r"g\.pt: refused global os\.system"):
        load_torch_state_dict(path)


def test_whole_module_persistent_id_is_refused(tmp_path):
    buf = io.BytesIO()
    _PidPickler(buf, ("module", "Net", "net.py", "class Net: ...")).dump(tf.Storage(W, "0"))
    path = tmp_path / "mod.pt"
    path.write_bytes(
        b"".join(pickle.dumps(p, protocol=2) for p in (tf.MAGIC_NUMBER, 1001, {})) + buf.getvalue()
    )
    with pytest.raises(TorchPickleError, match=r"mod\.pt: holds a whole pickled nn\.Module"):
        load_torch_object(path)


def test_not_a_file_and_other_formats(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_torch_state_dict(tmp_path)
    with pytest.raises(CheckpointError, match=r"not a regular file"):
        load_torch_object(tmp_path)
    tar = tmp_path / "old.tar"
    tar.write_bytes(b"\0" * 257 + b"ustar" + b"\0" * 250)
    with pytest.raises(CheckpointError, match=r"old\.tar: the tar format"):
        load_torch_object(tar)
    gz = tmp_path / "w.pt"
    gz.write_bytes(zlib.compress(b"junk"))
    with pytest.raises(CheckpointError, match=r"w\.pt: neither a torch\.save file nor"):
        load_torch_state_dict(gz)


def test_ordered_dict_state_is_kept_as_data(tmp_path):
    # state dicts pickle their _metadata as the OrderedDict's BUILD state: harmless data
    d = OrderedDict(w=tf.tensor(W, "0"))
    d._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    path = tf.write_zip(tmp_path / "meta.pt", d)
    np.testing.assert_array_equal(load_torch_state_dict(path)["w"], W)
