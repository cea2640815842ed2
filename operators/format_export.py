"""The file-browser behaviour every multi-format export operator shares.

Animators pick the format in the file browser's side panel; the file name's
extension must follow that choice, and a first export should propose a name
next to the .blend. Subclasses set ``format_extensions`` (format enum value ->
extension) and say which object names the file.
"""
from __future__ import annotations

import os

import bpy
from bpy_extras.io_utils import ExportHelper


class FormatExportHelper(ExportHelper):
    """ExportHelper whose file extension follows the operator's ``file_format`` enum property."""

    filename_ext = ""
    format_extensions: dict[str, str] = {}

    def default_name(self, context: bpy.types.Context) -> str:
        """The name the file browser proposes (without extension)."""
        raise NotImplementedError

    def path_with_extension(self) -> str:
        return bpy.path.ensure_ext(os.path.splitext(self.filepath)[0], self.format_extensions[self.file_format])

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            folder = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else os.path.expanduser("~")
            name = bpy.path.clean_name(self.default_name(context))
            self.filepath = os.path.join(folder, name + self.format_extensions[self.file_format])
        return super().invoke(context, event)

    def check(self, context: bpy.types.Context) -> bool:
        """Keep the file name's extension in step with the chosen format."""
        path = self.path_with_extension()
        changed = path != self.filepath
        self.filepath = path
        return changed
