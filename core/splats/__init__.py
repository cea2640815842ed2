"""Gaussian splats: the container, its files (3DGS PLY, .npz, glTF), SH colour, skinning and rendering.

Everything here is bpy-free; the Blender side (import, draw handler, export
operators) lives in ``blender/`` and ``operators/`` and only converts to and
from ``Gaussians``.
"""
