"""What the backend knows of a Blender armature: bone names, hierarchy and rest pose.

The add-on describes the armature once (``momask_blender/anim/rig_io.py``; the tests' twin is
``tests/blender/rigs.py::describe_armature``) and sends it as a plain dict. The dict format, shared by
both describers and :meth:`RigDescription.from_dict` (numpy arrays may also be nested lists):

=================  ==================  ==========================================================
key                shape / type        meaning
=================  ==================  ==========================================================
``bone_names``     list[str] (n)       ``armature.data.bones`` in their order
``parents``        list[int] (n)       index of ``bone.parent`` in ``bone_names``; -1 for roots
``rest_matrices``  (n, 4, 4) float     ``bone.matrix_local``: rest pose in ARMATURE space incl. roll
                                       (``bones.foreach_get('matrix_local')`` is column-major:
                                       reshape (n, 4, 4) and transpose the last two axes)
``world_matrix``   (4, 4) float        the armature object's ``matrix_world``
``rotation_modes`` list[str] (n)       ``pose.bones[name].rotation_mode`` ('QUATERNION', 'XYZ', ...)
``lengths``        (n,) float          ``bone.length`` (rest head→tail, armature units); optional
``name``           str                 the armature object's name (for messages); optional
=================  ==================  ==========================================================

Bone ``i``'s rest head is ``rest_matrices[i, :3, 3]`` and it points along its local +Y
(``rest_matrices[i, :3, 1]``), so its tail is ``head + length · y``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.portable.errors import RigError

ROTATION_MODES = ("QUATERNION", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "AXIS_ANGLE")
_REDESCRIBE = "Select the armature again and retry; if it persists, report the rig (File > Save As)."


@dataclass
class RigDescription:
    bone_names: list[str]
    parents: list[int]
    rest_matrices: np.ndarray
    world_matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    rotation_modes: list[str] = field(default_factory=list)
    lengths: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.bone_names = [str(n) for n in self.bone_names]
        self.parents = [int(p) for p in self.parents]
        self.rest_matrices = _matrices(self.rest_matrices, (len(self.bone_names), 4, 4), "rest_matrices")
        self.world_matrix = _matrices(self.world_matrix, (4, 4), "world_matrix")
        if not self.rotation_modes:
            self.rotation_modes = ["QUATERNION"] * len(self.bone_names)
        self.rotation_modes = [str(m) for m in self.rotation_modes]
        if self.lengths is not None:
            self.lengths = _matrices(self.lengths, (len(self.bone_names),), "lengths")
        self._validate()
        self._index = {name: i for i, name in enumerate(self.bone_names)}
        children: list[list[int]] = [[] for _ in self.bone_names]
        for i, p in enumerate(self.parents):
            if p >= 0:
                children[p].append(i)
        self._children = children

    # --- validation --------------------------------------------------------------------------------

    def _validate(self) -> None:
        n = len(self.bone_names)
        label = f"Armature {self.name!r}" if self.name else "The armature"
        if n == 0:
            raise RigError(f"{label} has no bones.", "Select an armature with a humanoid skeleton.")
        if len(set(self.bone_names)) != n:
            dupes = sorted({b for b in self.bone_names if self.bone_names.count(b) > 1})
            raise RigError(f"{label} description repeats bone names: {dupes}.", _REDESCRIBE)
        for key, values in (("parents", self.parents), ("rotation_modes", self.rotation_modes)):
            if len(values) != n:
                raise RigError(f"{label} description has {len(values)} {key} for {n} bones.", _REDESCRIBE)
        bad = [self.bone_names[i] for i, p in enumerate(self.parents) if p < -1 or p >= n or p == i]
        if bad:
            raise RigError(f"{label} description has invalid parents for bones {bad[:5]}.", _REDESCRIBE)
        modes = sorted(set(self.rotation_modes) - set(ROTATION_MODES))
        if modes:
            raise RigError(f"{label} uses unknown rotation modes {modes}.",
                           f"Set the pose bones' rotation mode to one of {', '.join(ROTATION_MODES)}.")
        # Cycles: walking up from any bone must reach a root within n steps.
        for start in range(n):
            node, steps = start, 0
            while node >= 0 and steps <= n:
                node, steps = self.parents[node], steps + 1
            if node >= 0:
                raise RigError(f"{label} description has a parent cycle at {self.bone_names[start]!r}.",
                               _REDESCRIBE)
        if abs(np.linalg.det(self.world_matrix[:3, :3])) < 1e-12:
            raise RigError(f"{label} has a zero scale (its object matrix cannot be inverted).",
                           "Apply a non-zero scale to the armature object (Object > Apply > Scale).")

    # --- (de)serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bone_names": list(self.bone_names), "parents": list(self.parents),
            "rest_matrices": self.rest_matrices.copy(), "world_matrix": self.world_matrix.copy(),
            "rotation_modes": list(self.rotation_modes), "name": self.name,
        }
        if self.lengths is not None:
            out["lengths"] = self.lengths.copy()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RigDescription:
        if not isinstance(data, dict):
            raise RigError(f"A rig description must be a dict, got {type(data).__name__}.", _REDESCRIBE)
        missing = [k for k in ("bone_names", "parents", "rest_matrices") if k not in data]
        if missing:
            raise RigError(f"The rig description lacks {missing}.", _REDESCRIBE)
        return cls(
            bone_names=list(data["bone_names"]), parents=list(data["parents"]),
            rest_matrices=data["rest_matrices"], world_matrix=data.get("world_matrix", np.eye(4)),
            rotation_modes=list(data.get("rotation_modes") or []), lengths=data.get("lengths"),
            name=str(data.get("name", "")),
        )

    # --- geometry and hierarchy --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.bone_names)

    def index(self, bone: str) -> int:
        """Index of a bone; RigError naming it (and close names) when the rig has no such bone."""
        try:
            return self._index[bone]
        except KeyError:
            close = difflib.get_close_matches(bone, self.bone_names, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RigError(f"The armature has no bone named {bone!r}.{hint}",
                           "Pick a bone from the list in the MoMask panel's Bone Mapping box.") from None

    def has(self, bone: str) -> bool:
        return bone in self._index

    @property
    def heads(self) -> np.ndarray:
        """(n, 3) rest head positions, armature space."""
        return self.rest_matrices[:, :3, 3]

    @property
    def axes_y(self) -> np.ndarray:
        """(n, 3) unit rest directions (bone local +Y), armature space."""
        y = self.rest_matrices[:, :3, 1]
        return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)

    @property
    def bone_lengths(self) -> np.ndarray:
        """(n,) rest lengths; without ``lengths``, the distance to the nearest child head (or 10% of
        the rig's height for leaf bones)."""
        if self.lengths is not None:
            return self.lengths
        heads = self.heads
        fallback = 0.1 * max(float(np.ptp(heads, axis=0).max()), 1e-6)
        out = np.full(len(self), fallback)
        for i, kids in enumerate(self._children):
            if kids:
                d = np.linalg.norm(heads[kids] - heads[i], axis=-1)
                d = d[d > 1e-9]
                if d.size:
                    out[i] = d.min()
        return out

    @property
    def tails(self) -> np.ndarray:
        """(n, 3) rest tail positions, armature space."""
        return self.heads + self.axes_y * self.bone_lengths[:, None]

    def children(self, i: int) -> list[int]:
        return list(self._children[i])

    def ancestors(self, i: int) -> list[int]:
        """Parent, grandparent, ... up to the root."""
        out = []
        p = self.parents[i]
        while p >= 0:
            out.append(p)
            p = self.parents[p]
        return out

    def descendants(self, i: int) -> list[int]:
        out, stack = [], list(self._children[i])
        while stack:
            j = stack.pop()
            out.append(j)
            stack.extend(self._children[j])
        return out

    def depth(self, i: int) -> int:
        return len(self.ancestors(i))

    def rest_positions(self, bones: list[str | None]) -> np.ndarray:
        """(k, 3) rest heads of the named bones, armature space; NaN rows for ``None``."""
        out = np.full((len(bones), 3), np.nan)
        for row, bone in enumerate(bones):
            if bone:
                out[row] = self.heads[self.index(bone)]
        return out

    @property
    def up_axis(self) -> np.ndarray:
        """World +Z as a unit direction in armature space (Y for FBX-style 90°-rotated imports)."""
        up = np.linalg.solve(self.world_matrix[:3, :3], np.array([0.0, 0.0, 1.0]))
        return up / np.linalg.norm(up)


def _matrices(value: Any, shape: tuple[int, ...], key: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RigError(f"The rig description's {key} is not numeric.", _REDESCRIBE) from None
    if arr.shape != shape:
        raise RigError(f"The rig description's {key} has shape {arr.shape}, expected {shape}.", _REDESCRIBE)
    if not np.isfinite(arr).all():
        raise RigError(f"The rig description's {key} contains NaN or infinite values.",
                       "Fix the armature's transforms (a zero-length bone or a broken object scale).")
    return arr
