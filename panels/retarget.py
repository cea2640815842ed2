"""The "Retarget" panel of the Avatar sidebar tab: source, target, bone mapping, options, Retarget.

The mapping is shown joint by joint (canonical joint -> a bone picked from the
active armature's bones) because an automatic mapping is a guess the user must
be able to check and correct before baking; required joints are marked and those
left unmapped (or naming a bone the armature lacks) are drawn in red, which is
exactly what the Retarget operator would refuse with.
"""
from __future__ import annotations

import bpy

from ..core.retarget.humanoid import CANONICAL_JOINTS, REQUIRED_JOINTS
from .sidebar import wrapped_labels


def _armature(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


def draw_mapping(layout: bpy.types.UILayout, context: bpy.types.Context, target: bpy.types.Object) -> None:
    """Preset, Auto-Map, Load/Save, then each canonical joint -> a bone of target (unmapped required in red)."""
    settings = context.scene.avatar_retarget
    box = layout.box()
    row = box.row(align=True)
    row.prop(settings, "preset", text="")
    row.operator("avatar.retarget_auto_map", text="Auto-Map", icon="AUTO")
    row = box.row(align=True)
    row.operator("avatar.retarget_mapping_load", text="Load", icon="IMPORT")
    row.operator("avatar.retarget_mapping_save", text="Save", icon="EXPORT")
    mapping = target.avatar_retarget_map
    if not mapping.joints:
        wrapped_labels(box, context, "No mapping stored: Retarget maps the bones automatically. "
                       "Auto-Map to review and correct it.", "INFO")
        return
    box.label(text=f"Mapping: {mapping.mapping_name or 'edited'}", icon="GROUP_BONE")
    bones = target.data.bones
    items = {item.name: item for item in mapping.joints}
    missing = [j for j in REQUIRED_JOINTS if not items.get(j) or items[j].bone not in bones]
    if missing:
        warning = box.column()
        warning.alert = True
        wrapped_labels(warning, context, "Required joints unmapped: " + ", ".join(missing), "ERROR")
    for label, chain in (("Spine chain", mapping.spine_chain), ("Neck chain", mapping.neck_chain)):
        if len(chain) > 1:
            box.label(text=f"{label}: {len(chain)} bones, {chain[0].name} .. {chain[-1].name}", icon="LINKED")
    box.prop(settings, "show_optional")
    column = box.column(align=True)
    for joint in CANONICAL_JOINTS:
        required = joint in REQUIRED_JOINTS
        item = items.get(joint)
        if item is None or not (required or settings.show_optional):
            continue
        row = column.row(align=True)
        row.alert = required and item.bone not in bones
        split = row.split(factor=0.45, align=True)
        split.label(text=joint.replace("_", " "), icon="CHECKBOX_HLT" if required else "BLANK1")
        split.prop_search(item, "bone", target.data, "bones", text="")


class VIEW3D_PT_avatar_retarget(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar"
    bl_label = "Retarget"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.avatar_retarget
        layout.row().prop(settings, "source_type", expand=True)
        if settings.source_type == "FILE":
            layout.prop(settings, "source_path", text="")
        else:
            layout.prop(settings, "source_armature", text="")

        target = _armature(context)
        if target is None:
            box = layout.box()
            box.alert = True
            wrapped_labels(box, context, "Select the target armature: it is the active object.", "ERROR")
            return
        layout.label(text=f"Target: {target.name}", icon="ARMATURE_DATA")
        draw_mapping(layout, context, target)

        options = layout.column(align=True)
        row = options.row(align=True)
        row.prop(settings, "in_place", toggle=True)
        row.prop(settings, "foot_lock", toggle=True)
        row.prop(settings, "hand_ik", toggle=True)
        if target.animation_data is not None and target.animation_data.action is not None:
            options.label(text=f"Animated: '{target.animation_data.action.name}'", icon="ACTION")
            options.row(align=True).prop(settings, "existing_action", expand=True)
        options.prop(settings, "fps_mode")

        go = layout.column()
        go.scale_y = 1.4
        go.operator("avatar.retarget", icon="ARMATURE_DATA")
        layout.operator("avatar.rebind_to_rig", icon="MOD_ARMATURE")


CLASSES = (VIEW3D_PT_avatar_retarget,)
