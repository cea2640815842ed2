"""Add-on preferences: which body model, which Python and device run the jobs, where caches go.

They are per user (not per .blend file) because they describe the machine, and
compute_settings() turns them into the plain ComputeSettings every worker job and
the set-up check receive.
"""
from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty, StringProperty

from .core.settings import ComputeSettings

# The results of the last "Check set-up", shown under the button. Runtime only: a check
# describes the machine at one moment and should not be saved with the preferences.
_setup_report: list[tuple[bool, str]] = []


def set_setup_report(lines: list[tuple[bool, str]]) -> None:
    _setup_report[:] = [(bool(ok), str(text)) for ok, text in lines]


class AvatarCapturePreferences(bpy.types.AddonPreferences):
    # The root package: "bl_ext.user_default.avatar_capture" as an installed extension,
    # "avatar_capture" when registered from the development install.
    bl_idname = __package__

    body_model: EnumProperty(
        name="Body model",
        description="Parametric body used for avatars and motion",
        items=(
            ("anny", "Anny", "Free body model shipped with the add-on (default)"),
            ("smpl", "SMPL", "SMPL, from your own .npz model files"),
            ("smplx", "SMPL-X", "SMPL-X, from your own .npz model files"),
        ),
        default="anny",
    )
    model_folder: StringProperty(
        name="Model folder",
        description="Folder holding the SMPL / SMPL-X .npz model files (licensed separately)",
        subtype="DIR_PATH",
    )
    compute_python: StringProperty(
        name="Compute Python",
        description="Python executable that runs the heavy jobs; empty uses Blender's own Python "
                    "with the wheels bundled with the add-on. Choose an environment with CUDA torch to use a GPU",
        subtype="FILE_PATH",
    )
    device: EnumProperty(
        name="Device",
        description="Where the jobs compute",
        items=(
            ("auto", "Auto", "A CUDA GPU when the compute Python can use one, else the CPU"),
            ("cpu", "CPU", "Always the CPU"),
            ("cuda", "CUDA", "An NVIDIA GPU through CUDA (needs a compute Python with CUDA torch)"),
        ),
        default="auto",
    )
    cache_folder: StringProperty(
        name="Cache folder",
        description="Where the Anny cache, built body models and job logs go; empty uses the default "
                    "user cache folder",
        subtype="DIR_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "body_model")
        row = layout.row()
        row.active = self.body_model != "anny"
        row.prop(self, "model_folder")
        layout.prop(self, "compute_python")
        if not self.compute_python:
            layout.label(text="Empty: Blender's own Python with the bundled wheels", icon="INFO")
        layout.prop(self, "device")
        layout.prop(self, "cache_folder")
        if not self.cache_folder:
            layout.label(text=f"Empty: {ComputeSettings().cache_path}", icon="INFO")
        layout.operator("avatar.check_setup", icon="CHECKMARK")
        if _setup_report:
            box = layout.box()
            for ok, text in _setup_report:
                box.label(text=text, icon="CHECKMARK" if ok else "ERROR")


def _absolute(path: str) -> str:
    return os.path.expanduser(bpy.path.abspath(path)) if path else ""


def compute_settings(context: bpy.types.Context) -> ComputeSettings:
    """The preferences as ComputeSettings; the defaults when the add-on was registered by a
    script without being enabled (then Blender keeps no preferences for it)."""
    addon = context.preferences.addons.get(__package__)
    if addon is None:
        return ComputeSettings()
    prefs = addon.preferences
    return ComputeSettings(
        body_model=prefs.body_model,
        model_folder=_absolute(prefs.model_folder),
        python=_absolute(prefs.compute_python),
        device=prefs.device,
        cache_dir=_absolute(prefs.cache_folder),
    )


def register() -> None:
    bpy.utils.register_class(AvatarCapturePreferences)


def unregister() -> None:
    bpy.utils.unregister_class(AvatarCapturePreferences)
