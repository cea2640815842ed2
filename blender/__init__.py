"""The bpy side: builds armatures, meshes, actions and cameras from core data and drives
Blender's exporters. Used by the operators and by the headless CLI alike."""
