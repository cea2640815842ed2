"""3DGS PLY files: bit-exact round trips, files from other writers (big endian, ASCII, odd types and order),
and a clear one-line error for every kind of bad file."""
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from avatar_capture.core.errors import FileFormatError
from avatar_capture.core.splats.container import save_splats
from avatar_capture.core.splats.gaussians import SplatSkin, make_gaussians, sh_coefficient_count
from avatar_capture.core.splats.ply import read_ply, read_splats, write_ply
from shared_media import REAL_SPLAT_PLY

_STRUCT = {"float": "f", "double": "d", "uchar": "B", "char": "b", "int": "i", "uint": "I", "short": "h",
           "float32": "f", "int32": "i", "uint8": "B"}


def random_cloud(n: int, degree: int, seed: int = 0, skin: bool = False):
    rng = np.random.default_rng(seed)
    bound = None
    if skin:
        rest = np.tile(np.eye(4), (3, 1, 1))
        rest[:, :3, 3] = rng.normal(size=(3, 3))
        weights = rng.random((n, 4))
        weights /= weights.sum(axis=1, keepdims=True)
        bound = SplatSkin(("hips", "spine 01", "héad"), np.array([-1, 0, 1]), rest,
                          rng.integers(0, 3, size=(n, 4)), weights)
    return make_gaussians(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), rng.normal(size=(n, 3)) - 3.0,
                          rng.normal(size=n), rng.normal(size=(n, sh_coefficient_count(degree), 3)), skin=bound)


def hand_written_ply(path: Path, fmt: str, properties: list[tuple[str, str]], rows: list[list[float]],
                     before: str = "", after: tuple[str, bytes | str] = ("", b"")) -> Path:
    """A PLY written straight from the format spec (struct / text), independent of write_ply."""
    header = ["ply", f"format {fmt} 1.0", "comment written by the test"]
    if before:
        header.append(before)
    header.append(f"element vertex {len(rows)}")
    header += [f"property {t} {name}" for t, name in properties]
    if after[0]:
        header.append(after[0])
    header.append("end_header")
    body = b""
    if fmt == "ascii":
        body = "".join(" ".join(repr(v) if t in ("float", "double", "float32") else str(int(v))
                                for v, (t, _) in zip(row, properties)) + "\n" for row in rows).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        for row in rows:
            body += b"".join(struct.pack(order + _STRUCT[t], v) for v, (t, _) in zip(row, properties))
    tail = after[1].encode() if isinstance(after[1], str) else after[1]
    path.write_bytes(("\n".join(header) + "\n").encode() + body + tail)
    return path


def standard_properties(rest: int = 0, normals: bool = False) -> list[tuple[str, str]]:
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals else []) + ["f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return [("float", name) for name in names]


def assert_same_cloud(a, b):
    for field in ("means", "rotations", "log_scales", "logit_opacities", "sh"):
        assert getattr(a, field).dtype == np.float32
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    cloud = random_cloud(257, degree, seed=degree)
    path = write_ply(cloud, tmp_path / "cloud.ply")
    back = read_ply(path)
    assert_same_cloud(back, cloud)
    assert back.sh_degree == degree and back.skin is None
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert "format binary_little_endian 1.0" in header and "property float nx" in header
    assert f"property float f_rest_{3 * (sh_coefficient_count(degree) - 1) - 1}" in header or degree == 0
    assert "f_rest_0" not in header or degree > 0
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]  # no staging leftovers


def test_f_rest_is_channel_major(tmp_path):
    """3DGS stores f_rest as all R coefficients, then all G, then all B: check a single value's position."""
    cloud = random_cloud(1, 1)
    sh = np.zeros((1, 4, 3), np.float32)
    sh[0, 3, 1] = 7.0  # coefficient 3 (band 1), green -> f_rest index 1 * 3 + (3 - 1) = 5 (not (3 - 1) * 3 + 1)
    path = write_ply(make_gaussians(cloud.means, cloud.rotations, cloud.log_scales, cloud.logit_opacities, sh),
                     tmp_path / "one.ply")
    data = path.read_bytes()
    values = np.frombuffer(data[data.index(b"end_header\n") + 11:], "<f4")
    assert values[9 + 5] == 7.0 and np.count_nonzero(values[9:18]) == 1


def test_skin_round_trips_and_standard_only_drops_it(tmp_path):
    cloud = random_cloud(100, 2, skin=True)
    back = read_ply(write_ply(cloud, tmp_path / "skinned.ply"))
    assert_same_cloud(back, cloud)
    assert back.skin.bone_names == cloud.skin.bone_names
    np.testing.assert_array_equal(back.skin.bone_parents, cloud.skin.bone_parents)
    np.testing.assert_array_equal(back.skin.rest_bone_to_object, cloud.skin.rest_bone_to_object)
    np.testing.assert_array_equal(back.skin.bone_indices, cloud.skin.bone_indices)
    np.testing.assert_array_equal(back.skin.bone_weights, cloud.skin.bone_weights)
    plain = read_ply(write_ply(cloud, tmp_path / "plain.ply", standard_only=True))
    assert plain.skin is None
    assert_same_cloud(plain, cloud)
    assert b"bone_index" not in (tmp_path / "plain.ply").read_bytes()[:4000]


def test_big_endian_mixed_types_shuffled_order_with_faces(tmp_path):
    """Doubles, an unknown uchar property, a shuffled property order and a face element after the vertices."""
    rng = np.random.default_rng(3)
    props = standard_properties(rest=9) + [("uchar", "red")]
    props[0] = ("double", "x")
    order = rng.permutation(len(props))
    props = [props[i] for i in order]
    n = 5
    values = {name: [float(v) for v in rng.normal(size=n).astype(np.float32)] for _, name in props}
    values["red"] = [int(v) for v in rng.integers(0, 256, n)]
    values["x"] = [float(v) for v in rng.normal(size=n)]  # a true double: must round to float32
    rows = [[values[name][i] for _, name in props] for i in range(n)]
    faces = struct.pack(">B3i", 3, 0, 1, 2)
    path = hand_written_ply(tmp_path / "be.ply", "binary_big_endian", props, rows,
                            after=("element face 1\nproperty list uchar int vertex_indices", faces))
    cloud = read_ply(path)
    assert cloud.count == n and cloud.sh_degree == 1
    np.testing.assert_array_equal(cloud.means[:, 0], np.float32(values["x"]))
    np.testing.assert_array_equal(cloud.means[:, 2], np.float32(values["z"]))
    np.testing.assert_array_equal(cloud.rotations[:, 0], np.float32(values["rot_0"]))
    np.testing.assert_array_equal(cloud.logit_opacities, np.float32(values["opacity"]))
    for k in range(1, 4):
        for c in range(3):
            np.testing.assert_array_equal(cloud.sh[:, k, c], np.float32(values[f"f_rest_{c * 3 + k - 1}"]))
    np.testing.assert_array_equal(cloud.sh[:, 0, 2], np.float32(values["f_dc_2"]))


def test_binary_with_a_list_element_before_the_vertices(tmp_path):
    props = standard_properties()
    rows = [[float(i + j) for j in range(len(props))] for i in range(3)]
    rows = [r[:10] + [1.0, 0.0, 0.0, 0.0] for r in rows]  # rot = identity
    lists = struct.pack("<B2i", 2, 7, 8) + struct.pack("<B", 0)
    path = hand_written_ply(tmp_path / "lists.ply", "binary_little_endian", props, rows,
                            before="element group 2\nproperty list uchar int members")
    data = path.read_bytes()
    cut = data.index(b"end_header\n") + 11
    path.write_bytes(data[:cut] + lists + data[cut:])
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.means, np.array([r[:3] for r in rows], np.float32))
    # a file cut in the middle of a 4-byte list length: one clear line, no traceback
    truncated = hand_written_ply(tmp_path / "cut.ply", "binary_little_endian", props, rows,
                                 before="element group 2\nproperty list int int members")
    data = truncated.read_bytes()
    truncated.write_bytes(data[:data.index(b"end_header\n") + 11] + struct.pack("<3i", 2, 7, 8) + b"\0\0")
    with pytest.raises(FileFormatError, match="cut.ply: file truncated inside the 'group' element"):
        read_ply(truncated)


def test_ascii_with_normals_degree_two_crlf_header_and_an_element_before(tmp_path):
    rng = np.random.default_rng(4)
    props = standard_properties(rest=24, normals=True)
    props[1] = ("float32", "y")
    n = 4
    table = rng.normal(size=(n, len(props))).astype(np.float32).astype(float)
    path = hand_written_ply(tmp_path / "ascii.ply", "ascii", props, table.tolist(), before="element camera 2\n"
                            "property float focal\nproperty list uchar float distortion",
                            after=("element face 0\nproperty list uchar int vertex_indices", ""))
    data = path.read_bytes().replace(b"\r\n", b"\n")
    cut = data.index(b"end_header\n") + 11
    path.write_bytes(data[:cut].replace(b"\n", b"\r\n") + b"800.0 2 0.1 0.2\n1000.5 0\n" + data[cut:])
    cloud = read_ply(path)
    assert cloud.sh_degree == 2 and cloud.count == n
    names = [name for _, name in props]
    np.testing.assert_array_equal(cloud.means, table[:, [names.index(a) for a in "xyz"]].astype(np.float32))
    np.testing.assert_array_equal(cloud.sh[:, 5, 0], table[:, names.index("f_rest_4")].astype(np.float32))
    np.testing.assert_array_equal(cloud.sh[:, 8, 2], table[:, names.index("f_rest_23")].astype(np.float32))
    np.testing.assert_array_equal(cloud.log_scales[:, 1], table[:, names.index("scale_1")].astype(np.float32))


@pytest.mark.skipif(not REAL_SPLAT_PLY.exists(), reason="shared media absent")
def test_real_3dgs_file_reads():
    cloud = read_splats(REAL_SPLAT_PLY)
    assert cloud.count == 45624 and cloud.sh_degree == 0
    assert np.all(np.isfinite(cloud.means)) and np.ptp(cloud.means, axis=0).min() > 0.0
    assert 0.0 < cloud.opacities.mean() < 1.0


def test_read_splats_dispatches_on_suffix(tmp_path):
    cloud = random_cloud(10, 1)
    assert_same_cloud(read_splats(write_ply(cloud, tmp_path / "a.PLY")), cloud)
    assert_same_cloud(read_splats(save_splats(cloud, tmp_path / "a.npz")), cloud)
    (tmp_path / "a.glb").write_bytes(b"glTF")
    with pytest.raises(FileFormatError, match=r"a\.glb: cannot read splats from a '\.glb' file"):
        read_splats(tmp_path / "a.glb")


def _bad(tmp_path, name, props, rows, **kwargs):
    return hand_written_ply(tmp_path / name, kwargs.pop("fmt", "binary_little_endian"), props, rows, **kwargs)


GOOD_ROW = [0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.5, -3.0, -3.0, -3.0, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("case, expected", [
    ("not_ply", r"not a PLY file"),
    ("point_cloud", r"a plain point cloud, not 3D Gaussian splats: missing f_dc_0\.\.2, opacity, scale_0\.\.2, "
                    r"rot_0\.\.3"),
    ("mesh", r"a plain mesh, not 3D Gaussian splats: missing"),
    ("f_rest_count", r"10 f_rest properties; 3DGS stores 0, 9, 24 or 45"),
    ("truncated", r"file truncated: header says 10 splats, file holds 7"),
    ("truncated_ascii", r"file truncated: header says 3 splats, file holds 2"),
    ("empty", r"the file holds 0 splats"),
    ("nan", r"2 splat\(s\) hold NaN or infinite values in opacity \(field 'opacity'\)"),
    ("inf", r"1 splat\(s\) hold NaN or infinite values in scale_1"),
    ("zero_quaternion", r"1 splat\(s\) have a zero rotation quaternion"),
    ("no_end_header", r"no 'end_header'"),
    ("bad_type", r"unknown PLY property type"),
    ("missing", r"file not found"),
])
def test_bad_files_give_one_clear_line(tmp_path, case, expected):
    props = standard_properties()
    if case == "not_ply":
        path = tmp_path / "x.ply"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    elif case == "point_cloud":
        path = _bad(tmp_path, "x.ply", [("float", "x"), ("float", "y"), ("float", "z"), ("uchar", "red"),
                                        ("uchar", "green"), ("uchar", "blue")], [[0.0, 0.0, 0.0, 1, 2, 3]])
    elif case == "mesh":
        path = _bad(tmp_path, "x.ply", [("float", "x"), ("float", "y"), ("float", "z")], [[0.0, 0.0, 0.0]] * 3,
                    after=("element face 1\nproperty list uchar int vertex_indices", struct.pack("<B3i", 3, 0, 1, 2)))
    elif case == "f_rest_count":
        props = standard_properties(rest=10)
        path = _bad(tmp_path, "x.ply", props, [GOOD_ROW[:6] + [0.0] * 10 + GOOD_ROW[6:]])
    elif case == "truncated":
        path = _bad(tmp_path, "x.ply", props, [GOOD_ROW] * 10)
        path.write_bytes(path.read_bytes()[:-(3 * 4 * len(props) - 5)])  # 7 whole rows + 5 bytes
    elif case == "truncated_ascii":
        path = _bad(tmp_path, "x.ply", props, [GOOD_ROW] * 3, fmt="ascii")
        path.write_bytes(path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n")
    elif case == "empty":
        path = _bad(tmp_path, "x.ply", props, [])
    elif case in ("nan", "inf", "zero_quaternion"):
        rows = [list(GOOD_ROW) for _ in range(4)]
        if case == "nan":
            rows[1][6] = rows[3][6] = float("nan")
        elif case == "inf":
            rows[2][8] = float("inf")
        else:
            rows[0][10] = 0.0
        path = _bad(tmp_path, "x.ply", props, rows)
    elif case == "no_end_header":
        path = tmp_path / "x.ply"
        path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n")
    elif case == "bad_type":
        path = _bad(tmp_path, "x.ply", [("float", "x"), ("quaternion", "q")], [])
    else:
        path = tmp_path / "x.ply"
    with pytest.raises(FileFormatError) as caught:
        read_ply(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ") and "\n" not in message
    assert re.search(expected, message), message


def test_big_endian_and_ascii_reject_nan_too(tmp_path):
    rows = [list(GOOD_ROW), list(GOOD_ROW)]
    rows[1][0] = float("nan")
    for fmt in ("binary_big_endian", "ascii"):
        path = _bad(tmp_path, f"{fmt}.ply", standard_properties(), rows, fmt=fmt)
        with pytest.raises(FileFormatError, match=r"1 splat\(s\) hold NaN or infinite values in x"):
            read_ply(path)


def test_ascii_row_with_wrong_value_count(tmp_path):
    path = _bad(tmp_path, "short.ply", standard_properties(), [GOOD_ROW, GOOD_ROW[:-1]], fmt="ascii")
    with pytest.raises(FileFormatError, match=r"splat 1 has 13 values; the header declares 14 properties"):
        read_ply(path)


def test_write_ply_into_a_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(FileFormatError, match=r"x\.ply: the folder .*missing_folder does not exist"):
        write_ply(random_cloud(5, 0), tmp_path / "missing_folder" / "x.ply")
    assert list(tmp_path.iterdir()) == []


def test_damaged_skin_extension_is_reported(tmp_path):
    path = write_ply(random_cloud(6, 0, skin=True), tmp_path / "skinned.ply")
    data = path.read_bytes()
    broken = tmp_path / "broken.ply"
    broken.write_bytes(data.replace(b'{"bone_names":', b'{"bone_nam":', 1))
    with pytest.raises(FileFormatError, match=r"broken\.ply: the 'avatar_capture_skin' header comment is malformed"):
        read_ply(broken)
    renamed = tmp_path / "renamed.ply"
    renamed.write_bytes(data.replace(b"property float bone_weight_3", b"property float bone_wexxxx_3", 1))
    with pytest.raises(FileFormatError, match=r"renamed\.ply: the skin comment is present but bone_weight_3 "):
        read_ply(renamed)
    out_of_range = tmp_path / "range.ply"
    out_of_range.write_bytes(data.replace(b'"bone_parents":[-1,0,1]', b'"bone_parents":[-1,0,5]', 1))
    with pytest.raises(FileFormatError, match=r"range\.ply: skin\.bone_parents must list"):
        read_ply(out_of_range)
