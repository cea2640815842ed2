"""The 3D viewport draw handler for splat objects: GPU data per object, sorting off the main thread.

Per redraw the handler only does per-object work (no Python loop over splats): it reads the
armature's bone matrices (B bones, foreach_get), sets uniforms and issues one instanced draw
per visible splat object. A cloud's textures are built once and rebuilt only when its mesh
data changes (depsgraph geometry update of the mesh datablock; posing an armature does not
touch it). The back-to-front order depends only on the view direction (and the pose): when
that changes, a worker thread computes the new order while the old one keeps being drawn; a
timer notices the finished sort and asks the viewports to redraw, which uploads it.

Drawing is disabled, with a message the Splats panel shows, when the GPU cannot draw splats;
an object whose splat data is damaged is skipped and named in the panel.
"""
from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..core.errors import AvatarCaptureError
from ..core.splats.camera import FAR_PLANE, NEAR_PLANE
from ..core.splats.gaussians import Gaussians
from . import splat_gpu

log = logging.getLogger(__name__)

SORT_TOLERANCE = 1e-4  # change of the view direction (unit vector) or skin matrices that triggers a sort
_POLL_SECONDS = 0.02
_VIEW_EXPIRY_SECONDS = 60.0  # a viewport not drawn this long (closed) loses its sort order

_handler = None
_executor: ThreadPoolExecutor | None = None
_entries: dict[str, "_Entry"] = {}  # object name -> its cloud on the GPU
# Mesh pointer -> count of its geometry updates: part of each cloud's data key, so every object
# showing a mesh (linked duplicates share one) sees an edit, not just the first one drawn after it.
_mesh_generations: dict[int, int] = {}
problems: dict[str, str] = {}  # object name -> why it is not drawn (damaged splat data); the panel lists them
_failed_keys: dict[str, tuple] = {}  # object name -> data key that failed to read (not retried until it changes)


# --- sorting (numpy only: runs on the worker thread and, synchronously, for offscreen renders) ---

def depth_order(depth: np.ndarray) -> np.ndarray:
    """Indices sorting depth (N,) ascending: 32-bit quantised keys, two stable 16-bit radix passes.

    numpy's stable argsort is a radix sort for 16-bit keys, so this is ~4x faster than
    argsort on floats; ties are only splats within (range / 2^32) of each other.
    """
    depth = np.asarray(depth, np.float64)
    lo, hi = float(depth.min()), float(depth.max())
    if not hi > lo:
        return np.arange(len(depth))
    key = ((depth - lo) * ((2.0 ** 32 - 1.0) / (hi - lo))).astype(np.uint32)
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]


def view_depth(g: Gaussians, model_view: np.ndarray, skinning: np.ndarray | None) -> np.ndarray:
    """View z (N,) of each (skinned) mean: the OpenGL view looks down -z, so larger = nearer.

    model_view maps the object frame to the OpenGL view.
    """
    row = np.asarray(model_view, np.float64)[2]
    means = g.means
    if skinning is None or g.skin is None:
        return means @ row[:3].astype(np.float32) + np.float32(row[3])
    rows = np.einsum("k,bkj->bj", row, np.asarray(skinning, np.float64)).astype(np.float32)  # (B, 4)
    depth = np.zeros(g.count, np.float32)
    x, y, z = means[:, 0], means[:, 1], means[:, 2]
    for slot in range(g.skin.bone_indices.shape[1]):  # scalar gathers: faster than gathering (N, 4) rows
        bone = g.skin.bone_indices[:, slot]
        depth += g.skin.bone_weights[:, slot] * (rows[bone, 0] * x + rows[bone, 1] * y + rows[bone, 2] * z
                                                 + rows[bone, 3])
    return depth


def back_to_front_order(g: Gaussians, model_view: np.ndarray, skinning: np.ndarray | None) -> np.ndarray:
    """Splat indices, farthest from the camera first."""
    return depth_order(view_depth(g, model_view, skinning))


def object_order(placed: list[tuple]) -> list[tuple]:
    """(centre (3,) in the object frame, model_view, ...) items, the farthest centre's first."""
    return sorted(placed, key=lambda item: float(np.asarray(item[1])[2, :3] @ item[0] + item[1][2, 3]))


def _sort_key(model_view: np.ndarray, skinning: np.ndarray | None) -> np.ndarray:
    row = np.asarray(model_view, np.float64)[2, :3]
    row = row / max(np.linalg.norm(row), 1e-12)
    return row if skinning is None else np.concatenate([row, np.asarray(skinning, np.float64).reshape(-1)])


# --- reading the pose ---

def object_skinning(obj: bpy.types.Object, g: Gaussians) -> np.ndarray | None:
    """Skinning matrices (B, 4, 4) in the object frame for the cloud's bones, from the armature's pose.

    The same deformation Blender's Armature modifier applies: object -> armature space, posed
    bone matrix @ inverse rest matrix, back to the object. Bones the armature lacks stay
    identity. None when the cloud has no skin or no Armature modifier deforms it in the viewport
    (switching the modifier off shows the rest pose, as for meshes).
    """
    if g.skin is None:
        return None
    armature = next((m.object for m in obj.modifiers
                     if m.type == "ARMATURE" and m.show_viewport and m.object is not None), None)
    if armature is None:
        return None
    pose_bones, bones = armature.pose.bones, armature.data.bones
    posed = np.empty(len(pose_bones) * 16, np.float32)
    pose_bones.foreach_get("matrix", posed)
    rest = np.empty(len(bones) * 16, np.float32)
    bones.foreach_get("matrix_local", rest)
    # foreach_get yields each matrix column by column.
    posed = posed.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    rest = rest.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    pose_index = _bone_slots(tuple(pose_bones.keys()), g.skin.bone_names)
    rest_index = _bone_slots(tuple(bones.keys()), g.skin.bone_names)
    found = (pose_index >= 0) & (rest_index >= 0)
    deform = np.tile(np.eye(4), (len(g.skin.bone_names), 1, 1))
    deform[found] = posed[pose_index[found]] @ _rigid_inverse(rest[rest_index[found]])
    # mathutils inverts the two object matrices: numpy's LAPACK call costs ~0.2 ms on a busy machine.
    world, armature_world = obj.matrix_world, armature.matrix_world
    object_to_armature = np.array(armature_world.inverted_safe() @ world)
    armature_to_object = np.array(world.inverted_safe() @ armature_world)
    return armature_to_object @ deform @ object_to_armature


@functools.lru_cache(maxsize=64)
def _bone_slots(armature_bones: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray:
    """Index of each wanted bone name among armature_bones, -1 where missing.

    Cached: every redraw of a skinned cloud asks, and a Python lookup per bone costs ~0.35 ms
    for an Anny rig's 104 bones.
    """
    position = {name: i for i, name in enumerate(armature_bones)}
    return np.array([position.get(name, -1) for name in wanted])


def _rigid_inverse(matrices: np.ndarray) -> np.ndarray:
    """Inverses of rigid transforms (..., 4, 4) (bone rest matrices have no scale): [R^T, -R^T t]."""
    inverse = np.zeros_like(matrices)
    rotation_t = np.swapaxes(matrices[..., :3, :3], -1, -2)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -np.einsum("...ij,...j->...i", rotation_t, matrices[..., :3, 3])
    inverse[..., 3, 3] = 1.0
    return inverse


# --- per-object GPU state ---

@dataclass
class _ViewSort:
    """The order one viewport draws a cloud in, and the sort being computed for it."""

    order: object = None  # R32F texture, or None = the unsorted order uploaded with the data
    key: np.ndarray | None = None
    pending: Future | None = None
    pending_key: np.ndarray | None = None
    used: float = 0.0  # time.monotonic() of the last redraw that drew with it


@dataclass
class _Entry:
    data_key: tuple
    gaussians: Gaussians
    cloud: splat_gpu.GpuCloud
    centre: np.ndarray  # mean of the means (3,), object frame: orders objects back to front
    views: dict[int, _ViewSort] = field(default_factory=dict)


def _data_key(obj: bpy.types.Object) -> tuple:
    pointer = obj.data.as_pointer()
    return (pointer, len(obj.data.vertices), _mesh_generations.get(pointer, 0))


def _entry(obj: bpy.types.Object) -> _Entry | None:
    """The object's GPU cloud, (re)built when its mesh data changed; None when its data is damaged."""
    from .splat_object import gaussians_from_object

    name, key = obj.name_full, _data_key(obj)
    entry = _entries.get(name)
    if entry is not None and (entry.data_key == key or obj.data.is_editmode):
        return entry  # in Edit Mode the splats cannot be read: draw them as they were until it ends
    if _failed_keys.get(name) == key:
        return None
    _entries.pop(name, None)
    try:
        g = gaussians_from_object(obj)
        cloud = splat_gpu.upload(g)
    except AvatarCaptureError as exc:
        _failed_keys[name], problems[name] = key, str(exc)
        return None
    _failed_keys.pop(name, None)
    problems.pop(name, None)
    entry = _entries[name] = _Entry(key, g, cloud, g.means.mean(axis=0, dtype=np.float64))
    return entry


def _submit(state: _ViewSort, g: Gaussians, model_view: np.ndarray, skinning, key: np.ndarray) -> None:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-splat-sort")
    state.pending = _executor.submit(back_to_front_order, g, model_view.copy(),
                                     None if skinning is None else skinning.copy())
    state.pending_key = key
    if not bpy.app.timers.is_registered(_poll_sorts):
        bpy.app.timers.register(_poll_sorts, first_interval=_POLL_SECONDS)


def update_order(entry: _Entry, view_id: int, model_view: np.ndarray, skinning: np.ndarray | None) -> None:
    """Take a finished sort (upload its order) and start a new one when the view or pose moved.

    Orders of viewports not drawn for _VIEW_EXPIRY_SECONDS (closed ones) are dropped, with any
    sort still running for them.
    """
    now = time.monotonic()
    stale = [v for v, s in entry.views.items() if now - s.used > _VIEW_EXPIRY_SECONDS]
    for view in stale:
        del entry.views[view]
    state = entry.views.setdefault(view_id, _ViewSort())
    state.used = now
    if state.pending is not None and state.pending.done():
        future, state.pending = state.pending, None
        try:
            state.order = splat_gpu.order_texture(future.result())
            state.key = state.pending_key
        except Exception:  # noqa: BLE001 -- a failed sort leaves the previous order; logged once
            log.exception("sorting splats failed")
    key = _sort_key(model_view, skinning)
    moved = state.key is None or state.key.shape != key.shape or np.abs(state.key - key).max() > SORT_TOLERANCE
    if moved and state.pending is None:
        _submit(state, entry.gaussians, model_view, skinning, key)


def _poll_sorts() -> float | None:
    """Timer: redraw the 3D viewports once a sort finished; stop polling when none is running."""
    running = [s.pending for e in _entries.values() for s in e.views.values() if s.pending is not None]
    if any(f.done() for f in running):
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()
    return _POLL_SECONDS if any(not f.done() for f in running) else None


# --- the draw handler ---

def splat_objects(view_layer: bpy.types.ViewLayer) -> list[bpy.types.Object]:
    """Splat objects of a view layer (splat_object.is_splat_object), visible or not."""
    from .splat_object import is_splat_object

    return [obj for obj in view_layer.objects if is_splat_object(obj)]


def draw_view(context: bpy.types.Context, view_matrix: np.ndarray, projection: np.ndarray,
              width: int, height: int, view_id: int, *, linear_output: bool = True) -> None:
    """Draw every visible splat object of the context's view layer into the bound framebuffer.

    view_matrix: world -> OpenGL view; projection: OpenGL; view_id tells viewports apart (each
    keeps its own sort order). linear_output: the viewport's colour buffer encodes linear
    values to sRGB itself, so 3DGS's sRGB colours are linearised first; a float offscreen
    buffer (False) receives them unchanged, as the reference rasterizer writes them.
    Clouds of objects outside this view layer stay uploaded (another window may show their
    scene) until the object is deleted or renamed.
    """
    settings = context.scene.avatar_splats
    space = context.space_data if context.space_data is not None and context.space_data.type == "VIEW_3D" \
        else None
    objects = splat_objects(context.view_layer)
    names = {obj.name_full for obj in objects}
    elsewhere = (set(_entries) | set(problems) | set(_failed_keys)) - names
    if elsewhere:  # keep the clouds of other scenes' objects: another window may draw them next
        gone = elsewhere - {obj.name_full for obj in bpy.data.objects}  # deleted or renamed
        for table in (_entries, problems, _failed_keys):
            for name in gone & set(table):
                del table[name]
    placed = []
    for obj in objects:
        if not obj.visible_get(view_layer=context.view_layer, viewport=space):
            continue
        entry = _entry(obj)
        if entry is None:
            continue
        skinning = object_skinning(obj, entry.gaussians)
        model_view = view_matrix @ np.array(obj.matrix_world, np.float64)
        placed.append((entry.centre, model_view, entry, skinning))
    for _centre, model_view, entry, skinning in object_order(placed):
        g = entry.gaussians
        update_order(entry, view_id, model_view, skinning)
        bones = splat_gpu.bone_texture(skinning) if skinning is not None else None
        view = splat_gpu.View(model_view, projection, width, height, NEAR_PLANE, FAR_PLANE)
        splat_gpu.draw_cloud(entry.cloud, view, order=entry.views[view_id].order,
                             sh_degree=min(settings.sh_degree, g.sh_degree), scale=settings.scale, bones=bones,
                             linear_output=linear_output)


def draw_view_guarded(context: bpy.types.Context, view_matrix: np.ndarray, projection: np.ndarray,
                      width: int, height: int, view_id: int, *, linear_output: bool = True) -> None:
    """draw_view, but a failure turns drawing off with one message instead of a traceback per redraw."""
    if splat_gpu.disabled_reason is not None:
        return
    try:
        draw_view(context, view_matrix, projection, width, height, view_id, linear_output=linear_output)
    except Exception as exc:  # noqa: BLE001 -- the panel shows it; the log keeps the traceback once
        log.exception("drawing splats failed; splat drawing is off until the add-on is reloaded")
        splat_gpu.disabled_reason = f"drawing failed ({exc})"


def _draw_handler() -> None:
    context = bpy.context
    settings = getattr(context.scene, "avatar_splats", None)
    if settings is None or not settings.show or context.region_data is None:
        return
    region, rv3d = context.region, context.region_data
    draw_view_guarded(context, np.array(rv3d.view_matrix, np.float64), np.array(rv3d.window_matrix, np.float64),
                      region.width, region.height, rv3d.as_pointer())


@bpy.app.handlers.persistent
def _mark_dirty(_scene, depsgraph) -> None:
    """depsgraph_update_post: count geometry updates per mesh (its own edits, not armature deformation)."""
    for update in depsgraph.updates:
        if update.is_updated_geometry and isinstance(update.id, bpy.types.Mesh):
            pointer = update.id.original.as_pointer()
            _mesh_generations[pointer] = _mesh_generations.get(pointer, 0) + 1


@bpy.app.handlers.persistent
def _forget_all(*_args) -> None:
    """load_post: a new file, new objects; drop every cloud."""
    _entries.clear()
    _mesh_generations.clear()
    problems.clear()
    _failed_keys.clear()


def register() -> None:
    global _handler
    _handler = bpy.types.SpaceView3D.draw_handler_add(_draw_handler, (), "WINDOW", "POST_VIEW")
    bpy.app.handlers.depsgraph_update_post.append(_mark_dirty)
    bpy.app.handlers.load_post.append(_forget_all)


def unregister() -> None:
    global _handler, _executor
    if _handler is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_handler, "WINDOW")
        _handler = None
    for handlers, callback in ((bpy.app.handlers.depsgraph_update_post, _mark_dirty),
                               (bpy.app.handlers.load_post, _forget_all)):
        if callback in handlers:
            handlers.remove(callback)
    if bpy.app.timers.is_registered(_poll_sorts):
        bpy.app.timers.unregister(_poll_sorts)
    if _executor is not None:
        _executor.shutdown(wait=False, cancel_futures=True)
        _executor = None
    _forget_all()
    splat_gpu.free_gpu_state()


def is_registered() -> bool:
    return _handler is not None
