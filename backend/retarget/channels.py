"""The solver's output: per bone, the channel its rotation mode keys and the values per frame
(:class:`RetargetResult`), and converting those values to and from quaternions and matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.portable.quaternion import (
    axis_angle_to_quat,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quat,
    qcontinuous,
    quat_to_axis_angle,
    quat_to_matrix,
)
from backend.retarget.rig_setup import SourceToRig


@dataclass
class BoneChannel:
    name: str
    channel: str          # "rotation_quaternion" | "rotation_euler" | "rotation_axis_angle"
    values: np.ndarray    # (F, 4) | (F, 3) | (F, 4)
    rotation_mode: str = "QUATERNION"


@dataclass
class RetargetResult:
    fps: float
    bones: list[BoneChannel]
    root_name: str
    root_location: np.ndarray                    # (F, 3)
    transform: SourceToRig | None = None         # how source metres map to armature space
    steering: dict | None = None                 # the steering report (docs/protocol.md, "Steering")
    root_motion: dict | None = None              # an extracted root's keys (root bone or object)

    @property
    def frame_count(self) -> int:
        return int(len(self.root_location))

    def to_dict(self) -> dict:
        out = {
            "fps": float(self.fps),
            "frame_count": self.frame_count,
            "bones": [{"name": b.name, "channel": b.channel, "values": b.values} for b in self.bones],
            "root": {"name": self.root_name, "location": self.root_location},
        }
        if self.steering is not None:
            out["steering"] = self.steering
        if self.root_motion is not None:
            out["root_motion"] = self.root_motion
        return out


CHANNELS = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}


def channel_for(mode: str) -> str:
    return CHANNELS.get(mode, "rotation_euler")


def channel_values(quats: np.ndarray, mode: str) -> np.ndarray:
    """Keys of one bone (F, 3|4) in its rotation mode from sign-continuous quaternions (F, 4)."""
    if mode == "QUATERNION":
        return quats
    if mode == "AXIS_ANGLE":
        return quat_to_axis_angle(quats)
    return np.unwrap(matrix_to_euler(quat_to_matrix(quats), mode), axis=0)


def channel_to_quats(values: np.ndarray, mode: str) -> np.ndarray:
    """Inverse of :func:`channel_values` (unit quaternions, sign-continuous along time)."""
    values = np.asarray(values, np.float64)
    if mode == "QUATERNION":
        q = values / np.linalg.norm(values, axis=-1, keepdims=True)
    elif mode == "AXIS_ANGLE":
        q = axis_angle_to_quat(values)
    else:
        q = matrix_to_quat(euler_to_matrix(values, mode))
    return qcontinuous(q)


def channel_to_matrices(values: np.ndarray, mode: str) -> np.ndarray:
    if mode not in CHANNELS:
        return euler_to_matrix(np.asarray(values, np.float64), mode)
    return quat_to_matrix(channel_to_quats(values, mode))
