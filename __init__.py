"""Avatar Capture: Blender extension entry point.

It only registers and unregisters classes. The bpy-side modules are imported
inside register() so that ``avatar_capture.core`` stays importable in a worker
process or CLI without Blender; nothing registered imports torch, anny or
mediapipe (they run in worker processes), so enabling the add-on stays instant.
"""


def _modules() -> tuple:
    from . import operators, panels, preferences, props
    from .blender import splat_draw

    return (preferences, props, operators, panels, splat_draw)


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
