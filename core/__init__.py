"""Algorithms of Avatar Capture. Never imports bpy, gpu or mathutils, so the same code runs
in Blender's worker process, the CLI, a cluster job and plain pytest. Heavy libraries
(torch, anny, smplx, mediapipe) are imported inside the functions that need them."""
