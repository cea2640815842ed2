"""Blender panels: the "Avatar" tab of the 3D viewport sidebar."""
import bpy

from . import retarget, sidebar, splats

CLASSES = sidebar.CLASSES + splats.CLASSES + retarget.CLASSES


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
