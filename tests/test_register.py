"""Registering the add-on in bpy: fast, repeatable, and leaving nothing behind.

Enabling an add-on runs on Blender's main thread at start-up, so it must stay far below
what a user notices (< 0.5 s, including importing our bpy-side modules); and Blender calls
unregister/register on every reload, so a leftover class or property breaks the second
enable. The probe runs in a fresh interpreter so the first import is really cold and no
other test's bpy state can hide a leftover.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

REGISTER_BUDGET_S = 0.5

_PROBE = """
import json, time
import bpy

def snapshot():
    types = {}
    for name in dir(bpy.types):
        rna = getattr(getattr(bpy.types, name), "bl_rna", None)
        types[name] = sorted(p.identifier for p in rna.properties) if rna is not None else []
    return {"types": types, "operators": sorted(dir(bpy.ops.avatar))}

bpy.ops.wm.read_factory_settings(use_empty=True)
before = snapshot()
t0 = time.perf_counter()
import avatar_capture
avatar_capture.register()
t1 = time.perf_counter()
registered = snapshot()
t2 = time.perf_counter()
avatar_capture.unregister()
t3 = time.perf_counter()
after = snapshot()
t4 = time.perf_counter()
avatar_capture.register()
t5 = time.perf_counter()
again = snapshot()
t6 = time.perf_counter()
avatar_capture.unregister()
t7 = time.perf_counter()
final = snapshot()

new_types = sorted(set(registered["types"]) - set(before["types"]))
new_props = {name: sorted(set(props) - set(before["types"].get(name, [])))
             for name, props in registered["types"].items() if name in before["types"]}
print(json.dumps({
    "import_register_s": t1 - t0, "unregister_s": t3 - t2, "register_again_s": t5 - t4, "unregister_again_s": t7 - t6,
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


def test_register_and_unregister_are_fast(probe: dict) -> None:
    total = probe["import_register_s"] + probe["unregister_s"]
    print(f"\nimport + register {probe['import_register_s'] * 1000:.1f} ms, "
          f"unregister {probe['unregister_s'] * 1000:.1f} ms, "
          f"register again {probe['register_again_s'] * 1000:.1f} ms, "
          f"unregister again {probe['unregister_again_s'] * 1000:.1f} ms")
    assert total < REGISTER_BUDGET_S, f"register + unregister took {total:.3f} s"
    assert probe["register_again_s"] + probe["unregister_again_s"] < REGISTER_BUDGET_S


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
