"""The skeletons MoMask speaks: 22 SMPL body joints (HumanML3D, ``t2m``) and 21 KIT joints.

Coordinates of every joint array in this project (unless a name says otherwise): Y up, metres, the
character's left is +X when it faces +Z, 20 fps for HumanML3D (12.5 fps for KIT).
"""

from __future__ import annotations

import numpy as np

# --- HumanML3D (t2m) -------------------------------------------------------------------------------

T2M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
T2M_JOINT_INDEX = {name: i for i, name in enumerate(T2M_JOINT_NAMES)}

T2M_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

#: Chains in the order the official IK/FK loops walk them (order matters for parity).
T2M_KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),      # right leg
    (0, 1, 4, 7, 10),      # left leg
    (0, 3, 6, 9, 12, 15),  # spine, neck, head
    (9, 14, 17, 19, 21),   # right arm
    (9, 13, 16, 18, 20),   # left arm
)

#: ``t2m_raw_offsets``: the rest direction of each joint from its parent.
T2M_RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
], dtype=np.float64)

#: Bone lengths (metres) of the skeleton every HumanML3D motion is retargeted to (sample 000021).
T2M_BONE_LENGTHS = np.array([
    0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.143190, 0.432433, 0.425643, 0.057365,
    0.143382, 0.149419, 0.219360, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984, 0.256840,
    0.263092, 0.266012, 0.269876,
], dtype=np.float64)

#: ``tgt_offsets``: raw direction x canonical length, the target of ``uniform_skeleton``.
T2M_TARGET_OFFSETS = T2M_RAW_OFFSETS * T2M_BONE_LENGTHS[:, None]

T2M_FOOT_LEFT = (7, 10)     # left ankle, left foot (ball)
T2M_FOOT_RIGHT = (8, 11)
T2M_LEG_IDX = (5, 8)        # l_idx1, l_idx2: joints whose offsets give the leg length
T2M_FACE_JOINTS = (2, 1, 17, 16)  # r_hip, l_hip, r_shoulder, l_shoulder (see the quirk in docs/model.md §11)
T2M_FEET_THRESHOLD = 0.002

# --- KIT-ML ----------------------------------------------------------------------------------------

KIT_NUM_JOINTS = 21
KIT_KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10),
)
KIT_RAW_OFFSETS = np.array([
    [0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0],
    [-1, 0, 0], [0, -1, 0], [0, -1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1],
    [-1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1],
], dtype=np.float64)
KIT_FOOT_RIGHT = (14, 15)
KIT_FOOT_LEFT = (19, 20)
KIT_LEG_IDX = (17, 18)
KIT_FACE_JOINTS = (11, 16, 5, 8)
KIT_FEET_THRESHOLD = 0.05

# --- dataset facts ---------------------------------------------------------------------------------

FPS = {"t2m": 20.0, "kit": 12.5}
NUM_JOINTS = {"t2m": 22, "kit": 21}
FEATURE_DIM = {"t2m": 263, "kit": 251}
UNIT_LENGTH = 4            # frames per token
MAX_MOTION_FRAMES = 196    # the models were trained on clips up to 196 frames (49 tokens)
