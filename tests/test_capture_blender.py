"""Captures in Blender (real bpy, real Anny body, real worker jobs): the video behind the capture
camera on the right frames, contacts and lost frames on the timeline, all-or-nothing imports, and
the Capture from Video operator end to end, cancelled, and given bad input.

Blender draws camera backgrounds only in a viewport, which a headless Blender has not; the
compositor's Movie Clip node reads the MovieClip through the same scene-frame mapping
(MovieClipUser at the scene frame), so a compositor render shows which video frame the camera
background shows on that frame.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import cv2
import numpy as np
import pytest
from capture_factory import captured_walk, frame_number, numbered_video

from avatar_capture.blender.action import FIRST_FRAME
from avatar_capture.blender.capture_scene import import_capture
from avatar_capture.blender.video_background import FOUND_MARKER, LOST_MARKER
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import CONTACT_NAMES
from avatar_capture.core.settings import default_cache_dir

SIZE = (160, 120)
FRAMES = 24
FIRST = 7
LOST = (10, 11, 12)
DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo_capture.mp4"
DATA_KINDS = ("objects", "armatures", "meshes", "materials", "actions", "cameras", "movieclips", "collections")
needs_demo_video = pytest.mark.skipif(not DEMO_VIDEO.is_file(), reason="assets/demo_capture.mp4 not made yet")


@pytest.fixture(autouse=True)
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


@pytest.fixture(scope="module")
def walk(anny_rig):
    return captured_walk(anny_rig, FRAMES, SIZE, FIRST, lost=LOST)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return numbered_video(tmp_path_factory.mktemp("video") / "numbered.mp4", FIRST + FRAMES + 3, SIZE)


def data_snapshot() -> dict[str, list[str]]:
    return {kind: sorted(block.name for block in getattr(bpy.data, kind)) for kind in DATA_KINDS}


def scene_state(scene) -> tuple:
    render = scene.render
    return (scene.frame_start, scene.frame_end, scene.camera, render.fps, render.resolution_x,
            render.resolution_y, sorted((m.name, m.frame) for m in scene.timeline_markers))


def rendered_video_frame(scene, movie, frame: int, folder: Path) -> int:
    """The number of the video frame the MovieClip shows on scene frame `frame` (compositor render)."""
    tree = bpy.data.node_groups.new("probe", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    node = tree.nodes.new("CompositorNodeMovieClip")
    node.clip = movie
    tree.links.new(node.outputs["Image"], tree.nodes.new("NodeGroupOutput").inputs[0])
    scene.compositing_node_group = tree
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(folder / f"frame{frame}.png")
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True)
    bpy.data.node_groups.remove(tree)
    return frame_number(cv2.imread(scene.render.filepath))


def test_video_plays_behind_the_capture_camera_on_the_fitted_frames(scene, anny_rig, walk, video, tmp_path):
    made = import_capture(scene, walk, anny_rig, name="Walker", video_path=video)
    assert made.armature.name == "Walker" and [c.type for c in made.armature.children] == ["MESH"]
    camera = made.camera
    assert camera is not None and scene.camera == camera
    assert camera.data.show_background_images
    (background,) = camera.data.background_images
    assert background.source == "MOVIE_CLIP" and background.clip == made.movie
    assert background.frame_method == "STRETCH" and background.display_depth == "BACK"
    assert Path(made.movie.filepath) == video.resolve()
    assert (scene.render.resolution_x, scene.render.resolution_y) == SIZE == tuple(made.movie.size)
    for t in (0, 9, FRAMES - 1):
        assert rendered_video_frame(scene, made.movie, t + FIRST_FRAME, tmp_path) == FIRST + t


def test_contacts_and_lost_frames_are_timeline_markers(scene, anny_rig, walk, video):
    scene.timeline_markers.new("mine", frame=3)
    import_capture(scene, walk, anny_rig, video_path=video)
    expected = [("mine", 3), (LOST_MARKER, LOST[0] + FIRST_FRAME), (FOUND_MARKER, LOST[-1] + 1 + FIRST_FRAME)]
    for side, name in (("left", "L foot down"), ("right", "R foot down")):
        heel, toe = CONTACT_NAMES.index(f"{side}_heel"), CONTACT_NAMES.index(f"{side}_toe")
        down = np.maximum(walk.contacts[:, heel], walk.contacts[:, toe]) > 0.5
        starts = [t for t in range(FRAMES) if down[t] and (t == 0 or not down[t - 1])]
        assert starts, f"the walk never puts the {side} foot down"
        expected += [(name, t + FIRST_FRAME) for t in starts]
    assert sorted((m.name, m.frame) for m in scene.timeline_markers) == sorted(expected)


def test_a_video_blender_cannot_open_leaves_the_scene_as_it_was(scene, anny_rig, walk, tmp_path):
    bpy.ops.mesh.primitive_cube_add()
    scene.timeline_markers.new("mine", frame=3)
    scene.frame_end, scene.render.resolution_x = 77, 333
    before, state = data_snapshot(), scene_state(scene)
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    with pytest.raises(AvatarCaptureError, match="broken.mp4: Blender reads no frames"):
        import_capture(scene, walk, anny_rig, name="Walker", video_path=bad)
    assert data_snapshot() == before and scene_state(scene) == state
    with pytest.raises(AvatarCaptureError, match="missing.mp4: video not found"):
        import_capture(scene, walk, anny_rig, name="Walker", video_path=tmp_path / "missing.mp4")
    assert data_snapshot() == before and scene_state(scene) == state


def test_no_background_when_frames_cannot_be_aligned(scene, anny_rig, walk, video):
    skipping = dataclasses.replace(walk, extras={**walk.extras, "source_frames": np.arange(FRAMES) * 2})
    made = import_capture(scene, skipping, anny_rig, video_path=video)
    assert made.movie is None and "not consecutive" in made.background_note
    assert not bpy.data.movieclips and not made.camera.data.background_images
    without_camera = dataclasses.replace(walk, camera=None)
    made = import_capture(scene, without_camera, anny_rig, video_path=video)
    assert made.camera is None and made.background_note == "the clip has no camera"


# -- the operator, with the real capture ---------------------------------------------------------------

@pytest.fixture
def addon():
    import addon_utils

    def fail(exc):
        raise exc

    assert addon_utils.enable("avatar_capture", default_set=True, handle_error=fail) is not None
    yield
    addon_utils.disable("avatar_capture", default_set=True, handle_error=fail)


def captures_made_since(started: float) -> list[Path]:
    folder = default_cache_dir() / "captures"
    return [p for p in folder.glob("*") if p.stat().st_mtime >= started] if folder.is_dir() else []


@needs_demo_video
def test_capture_operator_imports_body_camera_video_and_markers(scene, addon):
    started = time.time()
    t0 = time.perf_counter()
    result = bpy.ops.avatar.capture_video(filepath=str(DEMO_VIDEO), first_frame=10, last_frame=49,
                                          quality="FAST", write_preview=True)
    print(f"\nCapture from Video (40 frames, execute): {time.perf_counter() - t0:.1f} s")
    made = captures_made_since(started)
    try:
        assert result == {"FINISHED"}
        job = bpy.context.window_manager.avatar_capture_job
        assert (job.stage, job.last_error) == ("Done", "")
        armature = bpy.data.objects["demo_capture"]
        assert armature.type == "ARMATURE" and [c.type for c in armature.children] == ["MESH"]
        assert (scene.frame_start, scene.frame_end) == (FIRST_FRAME, FIRST_FRAME + 39)
        camera = scene.camera
        (background,) = camera.data.background_images
        assert Path(background.clip.filepath) == DEMO_VIDEO.resolve()
        assert (background.clip.frame_start, background.clip.frame_offset) == (FIRST_FRAME, 10)
        assert any(m.name.endswith("foot down") for m in scene.timeline_markers)
        assert sorted(p.suffix for p in made) == [".mp4", ".npz"]  # the clip and its overlay, no debris
    finally:
        for path in made:
            path.unlink()


class CaptureHarness:
    """Drives the capture operator's modal path as Blender would (see tests/test_ui.py): the
    operator's own job_params / job_finished on the JobOperator mixin, real context and worker."""

    def __init__(self, **properties) -> None:
        from avatar_capture.operators.capture import AVATAR_OT_capture_video
        from avatar_capture.operators.jobs import JobOperator

        reports: list = []

        class Harness(JobOperator):
            bl_label = AVATAR_OT_capture_video.bl_label
            job_kind = AVATAR_OT_capture_video.job_kind
            job_params = AVATAR_OT_capture_video.job_params
            job_finished = AVATAR_OT_capture_video.job_finished
            capture_options = AVATAR_OT_capture_video.capture_options

            def report(self, kind, message):
                reports.append((kind, message))

        defaults = dict(first_frame=0, last_frame=0, field_of_view=0.0, camera_motion="STATIC",
                        use_subject_box=False, subject_box=(0, 0, 0, 0), quality="BALANCED", write_preview=False)
        self.op = Harness()
        for key, value in {**defaults, **properties}.items():
            setattr(self.op, key, value)
        self.reports = reports
        self.op._runner = self.op._start(bpy.context)

    def tick(self, event_type: str = "TIMER", value: str = "NOTHING") -> set:
        return self.op.modal(bpy.context, SimpleNamespace(type=event_type, value=value))


@needs_demo_video
def test_cancelled_capture_leaves_the_scene_and_no_files(scene, addon):
    from avatar_capture.operators import jobs

    bpy.ops.mesh.primitive_cube_add()
    before, state = data_snapshot(), scene_state(scene)
    started = time.time()
    harness = CaptureHarness(filepath=str(DEMO_VIDEO), write_preview=True)
    job = bpy.context.window_manager.avatar_capture_job
    deadline = time.monotonic() + 60
    while not job.message:  # wait until the capture itself reports
        assert harness.tick() == {"PASS_THROUGH"}
        assert time.monotonic() < deadline, "the capture never reported progress"
        time.sleep(0.05)
    print(f"\nstage before cancel: {job.stage}: {job.message}")
    assert harness.tick("ESC", "PRESS") == {"CANCELLED"}
    assert harness.reports == [({"INFO"}, "Cancelled")]
    assert jobs.active_runner() is None and job.stage == "Cancelled"
    assert data_snapshot() == before and scene_state(scene) == state
    time.sleep(0.2)
    assert captures_made_since(started) == []


def test_capture_operator_refuses_a_file_that_is_not_a_video(scene, addon, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="holiday.mp4: not a video file"):
        bpy.ops.avatar.capture_video(filepath=str(bad))
    job = bpy.context.window_manager.avatar_capture_job
    assert job.stage == "Failed" and "holiday.mp4" in job.last_error
    with pytest.raises(RuntimeError, match="gone.mp4: video not found"):
        bpy.ops.avatar.capture_video(filepath=str(tmp_path / "gone.mp4"))
    with pytest.raises(RuntimeError, match="end frame 5 must come after start frame 9"):
        bpy.ops.avatar.capture_video(filepath=str(bad), first_frame=9, last_frame=4)
    assert data_snapshot() == before


def test_operator_options_become_capture_options(addon):
    from avatar_capture.core.capture.options import CaptureOptions
    from avatar_capture.operators.capture import AVATAR_OT_capture_video

    op = SimpleNamespace(first_frame=12, last_frame=99, field_of_view=np.radians(60.0), camera_motion="MOVING",
                         use_subject_box=True, subject_box=(10, 20, 300, 400), quality="BEST")
    options = AVATAR_OT_capture_video.capture_options(op)
    assert options.fov_degrees == pytest.approx(60.0)
    assert dataclasses.replace(options, fov_degrees=60.0) == CaptureOptions(
        start=12, end=100, fov_degrees=60.0, moving_camera=True, box=(10.0, 20.0, 300.0, 400.0), quality="best")
    op = SimpleNamespace(first_frame=0, last_frame=0, field_of_view=0.0, camera_motion="STATIC",
                         use_subject_box=False, subject_box=(10, 20, 300, 400), quality="BALANCED")
    assert AVATAR_OT_capture_video.capture_options(op) == CaptureOptions()


def test_file_browser_side_panel_draws_only_the_operators_options(addon):
    """The options panel (the operator's draw) uses real UILayout calls and real properties."""
    from test_ui import RecordingLayout

    from avatar_capture.operators.capture import AVATAR_OT_capture_video

    properties = set(bpy.ops.avatar.capture_video.get_rna_type().properties.keys())
    for boxed in (False, True):
        calls: list = []
        op = SimpleNamespace(layout=RecordingLayout(calls), use_subject_box=boxed)
        AVATAR_OT_capture_video.draw(op, bpy.context)
        drawn = [args[1] for name, args, _ in calls if name == "prop"]
        assert set(drawn) <= properties
        assert set(drawn) == {"first_frame", "last_frame", "camera_motion", "field_of_view", "use_subject_box",
                              "subject_box", "quality", "write_preview"}
