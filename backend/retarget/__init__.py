"""Retargeting: HumanML3D joints onto a user's armature (and back). numpy only, no Blender.

``rig`` describes an armature, ``mapping`` finds which bone plays each SMPL joint.
"""
