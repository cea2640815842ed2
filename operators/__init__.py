"""Blender operators: thin wrappers that gather options, start worker jobs and hand results
to the scene builders in ``blender/``; the algorithms live in ``core/``."""
import bpy

from . import check_setup, export, import_clip, jobs

CLASSES = check_setup.CLASSES + jobs.CLASSES + import_clip.CLASSES + export.CLASSES


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    jobs.register_handlers()


def unregister() -> None:
    jobs.unregister_handlers()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
