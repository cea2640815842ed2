"""The "Check set-up" button: tells the user in plain words what works and what is missing.

The checks themselves are bpy-free (core/setup_check.py); this operator only gathers
the preferences, reports each line and keeps them for the preferences panel.
"""
from __future__ import annotations

import bpy

from ..core.setup_check import check_setup
from ..preferences import compute_settings, set_setup_report
from .jobs import worker_extra_paths


class AVATAR_OT_check_setup(bpy.types.Operator):
    """Check the compute Python and its packages, the GPU, the body model files and the cache folder"""

    bl_idname = "avatar.check_setup"
    bl_label = "Check set-up"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compute_settings(context)
        lines = check_setup(settings, worker_extra_paths(settings))
        set_setup_report(lines)
        for ok, text in lines:
            self.report({"INFO"} if ok else {"WARNING"}, text)
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "PREFERENCES":
                    area.tag_redraw()
        problems = sum(not ok for ok, _ in lines)
        self.report({"INFO"} if not problems else {"WARNING"},
                    "Set-up is complete" if not problems else f"Set-up: {problems} problem(s), see above")
        return {"FINISHED"}


CLASSES = (AVATAR_OT_check_setup,)
