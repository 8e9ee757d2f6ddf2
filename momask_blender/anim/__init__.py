"""Blender data: reading rigs and animations, writing keys, takes, control-rig bakes, presets."""
