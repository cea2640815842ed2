"""The export file browser keeps the file extension in step with the chosen format."""
from __future__ import annotations

import bpy  # noqa: F401 -- bpy.path is what the helper uses

from avatar_capture.operators.format_export import FormatExportHelper


class Chooser(FormatExportHelper):
    format_extensions = {"PLY": ".ply", "GLB": ".glb"}

    def __init__(self, filepath: str, file_format: str) -> None:
        self.filepath, self.file_format = filepath, file_format


def test_switching_the_format_renames_the_extension_and_says_so() -> None:
    chooser = Chooser("/tmp/cloud.ply", "GLB")
    assert chooser.check(None) is True and chooser.filepath == "/tmp/cloud.glb"
    assert chooser.check(None) is False and chooser.filepath == "/tmp/cloud.glb"


def test_a_name_without_extension_gets_the_formats_one() -> None:
    chooser = Chooser("/tmp/cloud", "PLY")
    assert chooser.path_with_extension() == "/tmp/cloud.ply"
