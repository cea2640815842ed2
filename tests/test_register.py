"""Registering the add-on in bpy: repeatable, and leaving nothing behind.

Blender calls unregister/register on every reload, so a leftover class or property
breaks the second enable. The probe runs in a fresh interpreter so no other test's bpy
state can hide a leftover. How long registering takes is a benchmark figure
(bench/foundation.py); tests/test_structure.py checks it imports no heavy library.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json
import bpy

def snapshot():
    types = {}
    for name in dir(bpy.types):
        rna = getattr(getattr(bpy.types, name), "bl_rna", None)
        types[name] = sorted(p.identifier for p in rna.properties) if rna is not None else []
    return {"types": types, "operators": sorted(dir(bpy.ops.avatar))}

bpy.ops.wm.read_factory_settings(use_empty=True)
before = snapshot()
import avatar_capture
avatar_capture.register()
registered = snapshot()
avatar_capture.unregister()
after = snapshot()
avatar_capture.register()
again = snapshot()
avatar_capture.unregister()
final = snapshot()

new_types = sorted(set(registered["types"]) - set(before["types"]))
new_props = {name: sorted(set(props) - set(before["types"].get(name, [])))
             for name, props in registered["types"].items() if name in before["types"]}
print(json.dumps({
    "new_types": new_types,
    "new_props": {name: props for name, props in new_props.items() if props},
    "operators": registered["operators"],
    "operators_again": again["operators"],
    "same_after_unregister": after == before,
    "same_after_second_unregister": final == before,
    "leftover_types": sorted(set(after["types"]) - set(before["types"])),
    "leftover_props": {name: sorted(set(props) - set(before["types"].get(name, [])))
                       for name, props in after["types"].items()
                       if name in before["types"] and set(props) - set(before["types"][name])},
    "leftover_operators": after["operators"],
}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_register_adds_our_operators_panels_and_properties(probe: dict) -> None:
    assert "check_setup" in probe["operators"]
    assert any(name.startswith("AVATAR_OT_") for name in probe["new_types"]), probe["new_types"]
    assert any("_PT_" in name for name in probe["new_types"]), f"no panel registered: {probe['new_types']}"
    assert probe["new_props"], "register() added no properties to any Blender type"


def test_unregister_leaves_nothing_behind(probe: dict) -> None:
    assert not probe["leftover_types"], probe["leftover_types"]
    assert not probe["leftover_props"], probe["leftover_props"]
    assert not probe["leftover_operators"], probe["leftover_operators"]
    assert probe["same_after_unregister"]


def test_register_works_again_after_unregister(probe: dict) -> None:
    assert probe["operators_again"] == probe["operators"]
    assert probe["same_after_second_unregister"]
