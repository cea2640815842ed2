"""The "Splats" panel of the Avatar sidebar tab: show/hide, size and quality of splat drawing,
what is in the scene, and the splat import/export/bind actions.

It also says plainly what users otherwise find out the hard way: splats are drawn by a viewport
draw handler, so plain F12 renders do not contain them (Render Image with Splats composites them
into a render), and why drawing is off when the GPU cannot draw them.
"""
from __future__ import annotations

import bpy

from ..blender import splat_gpu
from .sidebar import wrapped_labels

_ACTIONS = (("avatar.import_splats", "IMPORT"), ("avatar.export_splats", "EXPORT"),
            ("avatar.bind_splats", "ARMATURE_DATA"))


class VIEW3D_PT_avatar_splats(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar"
    bl_label = "Splats"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context: bpy.types.Context) -> None:
        self.layout.prop(context.scene.avatar_splats, "show", text="")

    def draw(self, context: bpy.types.Context) -> None:
        from ..blender.splat_draw import problems, splat_objects

        layout = self.layout
        settings = context.scene.avatar_splats
        col = layout.column(align=True)
        col.active = settings.show
        col.prop(settings, "scale")
        col.prop(settings, "sh_degree")

        objects = splat_objects(context.view_layer)
        splats = sum(len(obj.data.vertices) for obj in objects)
        layout.label(text=f"{len(objects)} splat object{'s' if len(objects) != 1 else ''}, {splats:,} splats",
                     icon="POINTCLOUD_DATA")
        if splat_gpu.disabled_reason is not None:
            box = layout.box()
            box.alert = True
            wrapped_labels(box, context, f"Splats are not drawn: {splat_gpu.disabled_reason}", "ERROR")
        shown = {obj.name_full for obj in objects}
        for name, problem in sorted(item for item in problems.items() if item[0] in shown):
            box = layout.box()
            box.alert = True
            wrapped_labels(box, context, f"'{name}' is not drawn: {problem}", "ERROR")

        actions = layout.column(align=True)
        for idname, icon in _ACTIONS:
            actions.operator(idname, icon=icon)
        wrapped_labels(layout, context, "F12 renders leave splats out: Render Image with Splats renders "
                        "the scene camera's image and composites them in.", "INFO")
        layout.operator("avatar.render_with_splats", icon="RENDER_STILL")


CLASSES = (VIEW3D_PT_avatar_splats,)
