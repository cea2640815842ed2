"""Shared fixtures: the compute settings tests use, and the default Anny rig built once per session.

The cache folder is AVATAR_CAPTURE_CACHE or the user's cache folder (never a temporary one),
so Anny's one-off ~1-2 minute cache build is paid once per machine, not once per test run.
"""
import pytest

from avatar_capture.core.settings import ComputeSettings, default_cache_dir


@pytest.fixture(scope="session")
def compute_settings() -> ComputeSettings:
    return ComputeSettings(body_model="anny", cache_dir=str(default_cache_dir()))


@pytest.fixture(scope="session")
def anny_rig(compute_settings):
    """The default Anny RiggedBody (all phenotypes 0.5), built with the real Anny model."""
    from avatar_capture.core.body.models import build_rig

    return build_rig(compute_settings)


@pytest.fixture
def fresh_addon():
    """A factory-fresh empty Blender file with the add-on registered (properties, operators, draw
    handler); unregistered afterwards."""
    import bpy

    import avatar_capture

    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar_capture.register()
    yield
    avatar_capture.unregister()
