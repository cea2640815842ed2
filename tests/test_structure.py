"""Layout rules that keep the add-on light and core/ usable outside Blender.

core/ must never import Blender's modules: the same code runs in worker processes, the
CLI and plain pytest. Enabling the add-on must not pull in the heavy compute libraries:
they belong in worker processes (and importing torch inside Blender is what breaks
other mocap add-ons on some Windows builds). Both rules are checked twice: statically
(an AST scan, which also sees imports inside functions) and at run time in a fresh
interpreter (which also sees imports made indirectly).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "core"
PACKAGE = "avatar_capture"

BLENDER_MODULES = frozenset({"bpy", "bpy_extras", "bmesh", "gpu", "gpu_extras", "mathutils", "bgl", "blf", "bl_math"})
HEAVY_MODULES = frozenset({"torch", "anny", "smplx", "mediapipe", "warp", "cv2"})
_DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def absolute_imports(source: str, filename: str = "<string>") -> set[str]:
    """Top-level names of every absolute import in the source, wherever it sits (functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in _DYNAMIC_IMPORTERS and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def core_sources() -> list[Path]:
    return sorted(path for path in CORE.rglob("*.py") if "__pycache__" not in path.parts)


def test_scanner_sees_every_kind_of_import() -> None:
    source = (
        "import os.path\n"
        "from bpy.types import Operator\n"
        "from . import sibling\n"
        "def f():\n"
        "    import mathutils\n"
        "    return importlib.import_module('gpu.types')\n"
    )
    assert absolute_imports(source) == {"os", "bpy", "mathutils", "gpu"}


def test_core_sources_never_import_blender_modules() -> None:
    sources = core_sources()
    assert len(sources) >= 10, f"expected the core modules under {CORE}, found {len(sources)}"
    offenders = {
        str(path.relative_to(REPO)): sorted(found)
        for path in sources
        if (found := absolute_imports(path.read_text(encoding="utf-8"), str(path)) & BLENDER_MODULES)
    }
    assert not offenders, f"core/ must not import Blender modules: {offenders}"


_IMPORT_CORE = """
import importlib, json, pkgutil, sys
watched = set(sys.argv[1].split(","))
blame = {}
def blame_new(name, step):
    before = {m.split(".")[0] for m in sys.modules}
    result = step()
    new = sorted(watched & ({m.split(".")[0] for m in sys.modules} - before))
    if new:
        blame[name] = new
    return result
package = blame_new("avatar_capture.core", lambda: importlib.import_module("avatar_capture.core"))
# walk_packages imports the sub-packages' __init__ files itself.
names = blame_new("sub-package __init__ files", lambda: sorted(
    info.name for info in pkgutil.walk_packages(package.__path__, "avatar_capture.core.")))
for name in names:
    blame_new(name, lambda: importlib.import_module(name))
print(json.dumps({"modules": names, "blame": blame}))
"""


def run_json(script: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_core_module_loads_neither_blender_nor_heavy_libraries() -> None:
    report = run_json(_IMPORT_CORE, ",".join(sorted(BLENDER_MODULES | HEAVY_MODULES)))
    expected = {f"{PACKAGE}.core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
                for p in core_sources() if p.name != "__init__.py"}
    missing = expected - set(report["modules"])
    assert not missing, f"modules not reached by the import walk: {sorted(missing)}"
    blender = {name: mods for name, mods in report["blame"].items() if set(mods) & BLENDER_MODULES}
    assert not blender, f"importing these core modules loads Blender modules: {blender}"
    heavy = {name: mods for name, mods in report["blame"].items() if set(mods) & HEAVY_MODULES}
    assert not heavy, f"import torch/anny/smplx/... inside the functions that need them: {heavy}"


_REGISTER = """
import json, sys
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
watched = set(sys.argv[1].split(","))
before = {m.split(".")[0] for m in sys.modules}
import avatar_capture
avatar_capture.register()
loaded = sorted(watched & ({m.split(".")[0] for m in sys.modules} - before))
avatar_capture.unregister()
print(json.dumps({"loaded": loaded, "already": sorted(watched & before)}))
"""


def test_registering_the_addon_loads_no_heavy_library() -> None:
    report = run_json(_REGISTER, ",".join(sorted(HEAVY_MODULES)))
    assert not report["already"], f"bpy itself loaded {report['already']}: the check would be blind"
    assert not report["loaded"], f"import avatar_capture + register() loaded {report['loaded']}"
