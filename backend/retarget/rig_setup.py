"""What the solver knows of one rig + mapping (:class:`RigSetup`, computed once by
``solver.analyse_rig``), where source metres land in armature space (:class:`SourceToRig`), and walking
the bone hierarchy (chains, parents-first order, forward kinematics of the heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.motion.skeleton import T2M_JOINT_INDEX as J
from backend.retarget.geometry import rotate

SOURCE_UP = np.array([0.0, 1.0, 0.0])


# --- source space ↔ armature space -----------------------------------------------------------------

@dataclass
class SourceToRig:
    """``P = scale · axes · (x − source_floor·ŷ) + rig_floor · up + offset`` (source metres → armature)."""

    axes: np.ndarray                 # (3, 3) columns: the rig's left, up, forward in armature space
    scale: float                     # armature units per source metre (leg-length ratio)
    source_floor: float = 0.0        # source height (m) that lands on the rig's rest ball height
    rig_floor: float = 0.0           # rig rest ball-head height along up, armature units
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def up(self) -> np.ndarray:
        return self.axes[:, 1]

    def to_rig(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64) - self.source_floor * SOURCE_UP
        return self.scale * x @ self.axes.T + self.rig_floor * self.up + self.offset

    def to_source(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64) - self.rig_floor * self.up - self.offset
        return (p @ self.axes) / self.scale + self.source_floor * SOURCE_UP

    def to_dict(self) -> dict:
        return {"axes": self.axes.tolist(), "scale": self.scale, "source_floor": self.source_floor,
                "rig_floor": self.rig_floor, "offset": self.offset.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> SourceToRig:
        return cls(np.asarray(d["axes"], float), float(d["scale"]), float(d["source_floor"]),
                   float(d["rig_floor"]), np.asarray(d["offset"], float))


@dataclass
class RigSetup:
    """What the solver needs to know about a rig + mapping, computed once (no per-frame cost)."""

    names: list[str]
    parents: np.ndarray              # (n,)
    rest_rot: np.ndarray             # (n, 3, 3) rotation of bone.matrix_local
    rest_quats: np.ndarray           # (n, 4) the same as quaternions
    rest_head: np.ndarray            # (n, 3) armature space
    rotation_modes: list[str]
    joint_bone: dict[int, int]       # source joint → bone whose head is that joint
    rest_joints: np.ndarray          # (22, 3) armature space (mapped heads, spine samples, proxies)
    joint_carrier: dict[int, int]    # unmapped joint → bone that carries it rigidly (proxies)
    axes: np.ndarray                 # (3, 3) [left | up | fwd]
    leg_length: float                # armature units
    rig_floor: float                 # rest ball height along up
    spine_bones: list[int]           # pelvis bone, then the spine chain up to (not incl.) the neck
    spine_source_weights: np.ndarray  # (k+1, 5): rig spine points as mixes of the source spine joints
    spine_rig_weights: np.ndarray    # (3, k+1): source spine1..3 as mixes of the rig spine points
    spine_twist: np.ndarray          # (k,) hip-line → collar-line blend per spine bone
    driven: list[int] = field(default_factory=list)
    rest_frames: dict[int, np.ndarray] = field(default_factory=dict)
    output_bones: list[int] = field(default_factory=list)
    eff_driver: np.ndarray | None = None   # (n,) index into ``driven`` of the bone giving D, -1 = rest

    @property
    def up(self) -> np.ndarray:
        return self.axes[:, 1]

    @property
    def forward(self) -> np.ndarray:
        return self.axes[:, 2]

    @property
    def pelvis(self) -> int:
        return self.joint_bone[J["pelvis"]]


def chain_to(parents: np.ndarray, ancestor: int, bone: int) -> list[int] | None:
    """Bones from ``ancestor`` (excluded) down to ``bone`` (included), or None if not a descendant."""
    path = []
    while bone != -1 and bone != ancestor:
        path.append(bone)
        bone = int(parents[bone])
    return path[::-1] if bone == ancestor else None


def topological_order(parents: np.ndarray) -> list[int]:
    order, seen = [], set()

    def visit(b: int) -> None:
        if b in seen:
            return
        if parents[b] >= 0:
            visit(int(parents[b]))
        seen.add(b)
        order.append(b)

    for b in range(len(parents)):
        visit(b)
    return order


def fk_heads(setup: RigSetup, d: np.ndarray, root_head: np.ndarray, bones: list[int]
             ) -> dict[int, np.ndarray]:
    """Armature-space heads (T, 3) of ``bones`` (descendants of the pelvis bone) under deltas ``d``."""
    identity = np.broadcast_to(np.eye(3), (1,) + d.shape[1:])
    padded = np.concatenate([d, identity], axis=0)
    heads = {setup.pelvis: root_head}
    for bone in bones:
        for b in chain_to(setup.parents, setup.pelvis, bone) or []:
            if b not in heads:
                p = int(setup.parents[b])
                offset = setup.rest_head[b] - setup.rest_head[p]
                heads[b] = heads[p] + rotate(padded[setup.eff_driver[p]], offset)
    return {b: heads[b] for b in bones}
