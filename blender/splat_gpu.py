"""Gaussian splats on the GPU: packing a cloud into float textures, the shader, one instanced draw.

Both the viewport draw handler (splat_draw.py) and the offscreen renderer (splat_offscreen.py)
draw through ``draw_cloud`` so the image the CLI and the tests check is the one users see.
The data is packed once per data change (numpy -> gpu.types.Buffer -> GPUTexture, no Python
loop over splats); per redraw only a few uniforms, the bone matrices and, after a view change,
a new sort-order texture travel to the GPU. Textures are rows of DATA_WIDTH texels; a splat
with S texels per splat starts at texel S * index. Memory per splat: 48 B geometry (RGBA32F),
SH as RGBA16F (8 B per texel: 8 B at degree 0, 96 B at degree 3), 4 B order, 32 B skin.

A missing GPU backend or a shader that does not compile is remembered in ``disabled_reason``
so callers show one message instead of failing on every redraw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import AvatarCaptureError
from ..core.rotations import quat_to_matrix
from ..core.splats import sh as sh_constants
from ..core.splats.gaussians import Gaussians

DATA_WIDTH = 4096  # texels per texture row: well under every backend's 16384 limit
GEOMETRY_TEXELS = 3  # mean.xyz + opacity | cov xx xy xz yy | cov yz zz
SKIN_TEXELS = 2  # 4 bone indices | 4 weights
SH_FORMAT = "RGBA16F"  # half the memory of RGBA32F; SH colour error ~1e-3, invisible in 8-bit output
NATIVE = Path(__file__).resolve().parent.parent / "native"

disabled_reason: str | None = None  # set once when the GPU cannot draw splats; shown in the panel
_shaders: dict[int, object] = {}  # SH coefficient count -> compiled shader
_quad = None  # (vertex buffer of 4 corners, batch) shared by every draw
_dummy = None  # 1x1 texture for the samplers an unskinned draw does not read


@dataclass
class GpuCloud:
    """One cloud's textures. order: R32F instance -> splat index, the unsorted upload order."""

    count: int
    sh_coefficients: int
    geometry: object
    sh: object
    skin: object | None
    order: object


def texture_rows(texel_count: int) -> int:
    return max(1, math.ceil(texel_count / DATA_WIDTH))


def _texels(count: int, channels: int = 4) -> np.ndarray:
    """Zeroed float32 texels (rows * DATA_WIDTH, channels) with room for ``count`` texels."""
    return np.zeros((texture_rows(count) * DATA_WIDTH, channels), np.float32)


def _texture(texels: np.ndarray, fmt: str):
    """A GPUTexture of DATA_WIDTH-wide rows from texels (T, C) float32 (C = 4, or 1 for R32F)."""
    import gpu

    if len(texels) % DATA_WIDTH:
        padded = _texels(len(texels), texels.shape[1])
        padded[: len(texels)] = texels
        texels = padded
    texels = np.ascontiguousarray(texels, np.float32)
    return gpu.types.GPUTexture((DATA_WIDTH, len(texels) // DATA_WIDTH), format=fmt,
                                data=gpu.types.Buffer("FLOAT", texels.size, texels.reshape(-1)))


_COVARIANCE_ENTRIES = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # xx xy xz yy yz zz


def covariance_entries(g: Gaussians) -> np.ndarray:
    """The 6 distinct entries (N, 6) of each covariance R S S^T R^T (object frame, metres^2)."""
    scaled = quat_to_matrix(g.rotations).astype(np.float32) * g.scales[:, None, :]  # R S, columns scaled
    return np.stack([np.einsum("nj,nj->n", scaled[:, a], scaled[:, b]) for a, b in _COVARIANCE_ENTRIES], axis=1)


def pack_geometry(g: Gaussians) -> np.ndarray:
    """Texels (3N padded to whole rows, 4) float32: mean + opacity, then the 6 covariance entries."""
    texels = _texels(g.count * GEOMETRY_TEXELS)
    splats = texels[: g.count * GEOMETRY_TEXELS].reshape(g.count, GEOMETRY_TEXELS * 4)
    splats[:, :3] = g.means
    splats[:, 3] = g.opacities
    splats[:, 4:10] = covariance_entries(g)
    return texels


def sh_texels_per_splat(coefficients: int) -> int:
    return math.ceil(3 * coefficients / 4)


def pack_sh(g: Gaussians) -> np.ndarray:
    """Texels (N * ceil(3K/4) padded, 4): each splat's K RGB coefficients, k-major, zero padded."""
    per_splat = sh_texels_per_splat(g.sh.shape[1])
    texels = _texels(g.count * per_splat)
    texels[: g.count * per_splat].reshape(g.count, per_splat * 4)[:, : g.sh.shape[1] * 3] = \
        g.sh.reshape(g.count, -1)
    return texels


def pack_skin(g: Gaussians) -> np.ndarray:
    """Texels (2N padded, 4): bone indices (as floats, exact below 2^24) then weights."""
    texels = _texels(g.count * SKIN_TEXELS)
    splats = texels[: g.count * SKIN_TEXELS].reshape(g.count, SKIN_TEXELS, 4)
    splats[:, 0] = g.skin.bone_indices
    splats[:, 1] = g.skin.bone_weights
    return texels


def order_texture(order: np.ndarray):
    """The R32F instance -> splat texture of a sort order (N,) (indices exact below 2^24)."""
    texels = _texels(len(order), 1)
    texels[: len(order), 0] = order
    return _texture(texels, "R32F")


def upload(g: Gaussians) -> GpuCloud:
    """Pack and upload a cloud (unsorted order until the first sort arrives).

    Raises AvatarCaptureError when the cloud needs textures taller than the GPU allows.
    """
    import gpu

    largest = max(GEOMETRY_TEXELS, sh_texels_per_splat(g.sh.shape[1]))
    limit = gpu.capabilities.max_texture_size_get()
    if texture_rows(g.count * largest) > limit:
        raise AvatarCaptureError(f"{g.count:,} splats at SH degree {g.sh_degree} do not fit this GPU's textures "
                                 f"(at most {limit * DATA_WIDTH // largest:,})")
    skin = _texture(pack_skin(g), "RGBA32F") if g.skin is not None else None
    return GpuCloud(count=g.count, sh_coefficients=g.sh.shape[1],
                    geometry=_texture(pack_geometry(g), "RGBA32F"), sh=_texture(pack_sh(g), SH_FORMAT),
                    skin=skin, order=order_texture(np.arange(g.count)))


def bone_texture(skinning: np.ndarray):
    """RGBA32F (4B, 1): each skinning matrix (B, 4, 4) as 4 column texels."""
    import gpu

    columns = np.ascontiguousarray(np.asarray(skinning, np.float32).transpose(0, 2, 1)).reshape(-1, 4)
    return gpu.types.GPUTexture((len(columns), 1), format="RGBA32F",
                                data=gpu.types.Buffer("FLOAT", columns.size, columns.reshape(-1)))


def _sh_defines() -> dict[str, str]:
    defines = {"SH_C0": sh_constants.SH_C0, "SH_C1": sh_constants.SH_C1}
    defines.update({f"SH_C2_{i}": value for i, value in enumerate(sh_constants.SH_C2)})
    defines.update({f"SH_C3_{i}": value for i, value in enumerate(sh_constants.SH_C3)})
    return {name: repr(float(value)) for name, value in defines.items()}


_PARAMS_STRUCT = """
struct SplatParams {
  mat4 model_view;
  mat4 projection;
  vec4 viewport;
  vec4 camera_far;
  ivec4 flags;
};
"""


def _params_block(view: "View", *, scale: float, sh_degree: int, skinned: bool, linear_output: bool):
    """The std140 bytes of SplatParams (matrices column-major) in a uniform buffer."""
    import gpu
    from mathutils import Matrix

    model_view = np.asarray(view.model_view, np.float64)
    # mathutils, not np.linalg.inv: LAPACK's call overhead alone is ~0.2 ms on a busy machine.
    camera_in_object = Matrix(model_view.tolist()).inverted_safe().translation
    floats = np.concatenate([model_view.T.reshape(-1), np.asarray(view.projection, np.float64).T.reshape(-1),
                             [view.width, view.height, scale, view.near], [*camera_in_object, view.far]])
    flags = np.array([sh_degree, int(skinned), int(linear_output), 0], np.int32)
    return gpu.types.GPUUniformBuf(floats.astype(np.float32).tobytes() + flags.tobytes())


def shader(sh_coefficients: int):
    """The splat shader for clouds with K SH coefficients (compiled once per K, then cached)."""
    cached = _shaders.get(sh_coefficients)
    if cached is not None:
        return cached
    import gpu

    interface = gpu.types.GPUStageInterfaceInfo("avatar_splat_interface")
    interface.smooth("VEC2", "offset")
    interface.flat("VEC3", "conic")
    interface.flat("VEC4", "colour_opacity")
    info = gpu.types.GPUShaderCreateInfo()
    for name, value in {**_sh_defines(), "DATA_WIDTH": str(DATA_WIDTH),
                        "SH_COEFFICIENTS": str(sh_coefficients),
                        "SH_TEXELS": str(sh_texels_per_splat(sh_coefficients))}.items():
        info.define(name, value)
    info.vertex_in(0, "VEC2", "corner")
    info.vertex_out(interface)
    for slot, name in enumerate(("order_tex", "geom_tex", "sh_tex", "skin_tex", "bone_tex")):
        info.sampler(slot, "FLOAT_2D", name)
    info.typedef_source(_PARAMS_STRUCT)
    info.uniform_buf(0, "SplatParams", "params")
    info.fragment_out(0, "VEC4", "fragColor")
    info.vertex_source((NATIVE / "splat_vert.glsl").read_text(encoding="utf-8"))
    info.fragment_source((NATIVE / "splat_frag.glsl").read_text(encoding="utf-8"))
    try:
        compiled = gpu.shader.create_from_info(info)
    except Exception as exc:  # noqa: BLE001 -- Blender raises a bare Exception; the log has the compiler's words
        raise AvatarCaptureError(f"the splat shader does not compile on this GPU "
                                 f"({gpu.platform.backend_type_get()}): {exc}") from None
    _shaders[sh_coefficients] = compiled
    return compiled


def _quad_batch():
    global _quad
    if _quad is None:
        import gpu

        fmt = gpu.types.GPUVertFormat()
        fmt.attr_add(id="corner", comp_type="F32", len=2, fetch_mode="FLOAT")
        vbo = gpu.types.GPUVertBuf(fmt, 4)
        vbo.attr_fill("corner", [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)])
        _quad = (vbo, gpu.types.GPUBatch(type="TRI_STRIP", buf=vbo))
    return _quad[1]


def _dummy_texture():
    """A 1x1 texture bound to samplers an unskinned draw never reads (every sampler must be bound)."""
    global _dummy
    if _dummy is None:
        import gpu

        _dummy = gpu.types.GPUTexture((1, 1), format="RGBA32F",
                                      data=gpu.types.Buffer("FLOAT", 4, [0.0, 0.0, 0.0, 0.0]))
    return _dummy


@dataclass(frozen=True)
class View:
    """Where a frame is drawn: object -> OpenGL view (4, 4), OpenGL projection (4, 4), pixels.

    near/far cull splats by camera depth like the reference rasterizer (perspective only).
    """

    model_view: np.ndarray
    projection: np.ndarray
    width: int
    height: int
    near: float
    far: float


def draw_cloud(cloud: GpuCloud, view: View, *, sh_degree: int, scale: float, order=None, bones=None,
               linear_output: bool) -> None:
    """Draw one cloud into the bound framebuffer: premultiplied, back to front, depth-tested.

    order: an order_texture (farthest splat first); None draws the unsorted upload order.
    bones: the bone texture (bone_texture) of a skinned cloud, or None to draw it unposed.
    Depth test LESS_EQUAL against what is already drawn (meshes hide splats), no depth writes
    (splats never hide each other by depth; their order does that). GPU state is restored.
    """
    import gpu

    program = shader(cloud.sh_coefficients)
    skinned = bones is not None and cloud.skin is not None
    params = _params_block(view, scale=scale, sh_degree=sh_degree, skinned=skinned, linear_output=linear_output)
    program.bind()
    program.uniform_block("params", params)
    program.uniform_sampler("order_tex", cloud.order if order is None else order)
    program.uniform_sampler("geom_tex", cloud.geometry)
    program.uniform_sampler("sh_tex", cloud.sh)
    program.uniform_sampler("skin_tex", cloud.skin if skinned else _dummy_texture())
    program.uniform_sampler("bone_tex", bones if skinned else _dummy_texture())

    blend, depth_test, depth_mask = gpu.state.blend_get(), gpu.state.depth_test_get(), gpu.state.depth_mask_get()
    gpu.state.blend_set("ALPHA_PREMULT")
    gpu.state.depth_test_set("LESS_EQUAL")
    gpu.state.depth_mask_set(False)
    try:
        _quad_batch().draw_instanced(program, instance_start=0, instance_count=cloud.count)
    finally:
        gpu.state.blend_set(blend)
        gpu.state.depth_test_set(depth_test)
        gpu.state.depth_mask_set(depth_mask)


def free_gpu_state() -> None:
    """Forget the compiled shaders and shared buffers (on unregister; they belong to a GPU context)."""
    global _quad, _dummy, disabled_reason
    _shaders.clear()
    _quad = None
    _dummy = None
    disabled_reason = None


def gpu_unavailable_reason() -> str | None:
    """Why splats cannot be drawn here (no gpu module, no backend), or None when they can."""
    try:
        import gpu
    except ImportError:
        return "Blender's gpu module is not available"
    try:
        backend = gpu.platform.backend_type_get()
    except Exception as exc:  # noqa: BLE001 -- any failure here means there is no usable backend
        return f"no GPU backend ({exc})"
    if backend in {"NONE", "UNKNOWN"}:
        return "no GPU backend"
    return None
