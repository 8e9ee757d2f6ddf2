"""Which bone of the user's rig plays each of the 22 SMPL joints (docs/retargeting.md §2).

A joint role maps to the bone whose HEAD sits at that joint: ``left_hip`` → the thigh, ``left_knee`` → the
shin, ``left_ankle`` → the foot, ``left_foot`` (SMPL's ball joint) → the toe, ``left_collar`` → the
clavicle, ``left_shoulder`` → the upper arm, ``left_elbow`` → the forearm, ``left_wrist`` → the hand.

:func:`auto_map` works in three passes:

1. **Naming tables** (Mixamo, the official HumanML3D BVH template, Rigify metarig/DEF/ORG/controls,
   UE4/UE5, VRoid, VRM humanoid names, SMPL/SMPL-X, Auto-Rig Pro, CC3/CC4, Daz G8/G9): the table with
   the most exact hits names the convention and maps what it can.
2. **Fuzzy fallback** for roles still open: names are normalised (namespaces, known prefixes, camelCase,
   separators, side tokens), then each limb is found by its most telling bone (forearm, shin) and
   completed along the hierarchy, skipping twist/IK/helper bones. A bone without a side token is left
   when its rest head is on the rig's +X side.
3. **Spine rule** (docs/retargeting.md §2), same for every convention: the rig's spine chain is the
   parent path strictly between the pelvis bone and the neck bone (the head when there is no neck,
   up to the bone both arms hang from when neither exists). With n chain bones:

   * n ≥ 3: ``spine1`` = the lowest, ``spine3`` = the highest (the chest the arms and neck hang from),
     ``spine2`` = the in-between bone whose head is nearest, in normalised arc length from the pelvis
     head to the neck head, to where SMPL's spine2 sits (0.498); the others are intermediates.
   * n = 2: ``spine1`` and ``spine3``; ``spine2`` is interpolated.
   * n = 1: ``spine1``; ``spine2`` and ``spine3`` are interpolated.  n = 0: all three interpolated.

   Interpolated roles are not missing: the solver drives every chain bone from the source spine
   polyline by arc length, and :func:`joint_rest_positions` samples the rig's chain the same way.

User overrides (role → bone, ``''`` to unmap) win over all of this. Roles the solver cannot do without
(pelvis, head, hips, knees, ankles, upper arms, elbows, hands) are ``missing`` when unmapped; the neck,
collars and toes are optional (the solver copes without them).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.motion.skeleton import T2M_BONE_LENGTHS, T2M_JOINT_NAMES
from backend.portable.errors import RigError
from backend.retarget.rig import RigDescription

ROLES: tuple[str, ...] = T2M_JOINT_NAMES
SPINE_ROLES = ("spine1", "spine2", "spine3")
OPTIONAL_ROLES = ("neck", "left_collar", "right_collar", "left_foot", "right_foot")
REQUIRED_ROLES = tuple(r for r in ROLES if r not in SPINE_ROLES and r not in OPTIONAL_ROLES)
SIDED_BASES = ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist")

# Where SMPL's spine joints sit on the pelvis→neck polyline (normalised arc length, canonical lengths).
_SPINE_SEGMENTS = T2M_BONE_LENGTHS[[3, 6, 9, 12]]          # pelvis→spine1→spine2→spine3→neck
SPINE_ARC = np.cumsum(_SPINE_SEGMENTS)[:3] / _SPINE_SEGMENTS.sum()   # ≈ (0.239, 0.498, 0.602)

FIX_IN_PANEL = "Map them in the MoMask panel's Bone Mapping box (pick the bone for each role)."


# --- naming tables ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Convention:
    """One naming convention: centre roles → candidate names, sided bases → templates with ``{s}``."""

    name: str
    sides: tuple[str, str]                      # the left and right side tokens put into ``{s}``
    centre: dict[str, tuple[str, ...]]
    sided: dict[str, tuple[str, ...]]
    prefix: str = ""                            # prepended to every name (Rigify DEF-/ORG-)
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def candidates(self, role: str) -> tuple[str, ...]:
        if role in self.centre:
            return tuple(self.prefix + n for n in self.centre[role])
        side, _, base = role.partition("_")
        token = self.sides[0] if side == "left" else self.sides[1]
        return tuple(self.prefix + t.format(s=token) for t in self.sided.get(base, ()))


def _limbs(hip, knee, ankle, foot, collar, shoulder, elbow, wrist) -> dict[str, tuple[str, ...]]:
    values = (hip, knee, ankle, foot, collar, shoulder, elbow, wrist)
    pairs = zip(SIDED_BASES, values, strict=True)
    return {base: (v,) if isinstance(v, str) else tuple(v) for base, v in pairs}


def _centre(pelvis, neck, head) -> dict[str, tuple[str, ...]]:
    return {role: (v,) if isinstance(v, str) else tuple(v)
            for role, v in (("pelvis", pelvis), ("neck", neck), ("head", head))}


_MIXAMO_LIMBS = dict(hip="{s}UpLeg", knee="{s}Leg", ankle="{s}Foot", collar="{s}Shoulder",
                     shoulder="{s}Arm", elbow="{s}ForeArm", wrist="{s}Hand")
_RIGIFY_LIMBS = dict(hip="thigh.{s}", knee="shin.{s}", ankle="foot.{s}", foot="toe.{s}",
                     collar="shoulder.{s}", shoulder="upper_arm.{s}", elbow="forearm.{s}", wrist="hand.{s}")
_RIGIFY_CENTRE = _centre("spine", ("spine.004", "neck"), ("spine.006", "head"))

CONVENTIONS: tuple[Convention, ...] = (
    Convention("mixamo", ("Left", "Right"), _centre("Hips", "Neck", "Head"),
               _limbs(foot="{s}ToeBase", **_MIXAMO_LIMBS),
               extras={"head_end": ("HeadTop_End",), "left_toe_end": ("LeftToe_End",),
                       "right_toe_end": ("RightToe_End",)}),
    Convention("humanml3d_bvh", ("Left", "Right"), _centre("Hips", "Neck", "Head"),
               _limbs(foot="{s}Toe", **_MIXAMO_LIMBS)),
    Convention("rigify_def", ("L", "R"), _RIGIFY_CENTRE, _limbs(**_RIGIFY_LIMBS), prefix="DEF-"),
    Convention("rigify", ("L", "R"), _RIGIFY_CENTRE, _limbs(**_RIGIFY_LIMBS)),
    Convention("rigify_org", ("L", "R"), _RIGIFY_CENTRE, _limbs(**_RIGIFY_LIMBS), prefix="ORG-"),
    Convention("rigify_controls", ("L", "R"), _centre("torso", "neck", "head"),
               _limbs("thigh_fk.{s}", "shin_fk.{s}", "foot_fk.{s}", ("toe_fk.{s}", "toe.{s}"), "shoulder.{s}",
                      "upper_arm_fk.{s}", "forearm_fk.{s}", "hand_fk.{s}")),
    Convention("ue_mannequin", ("l", "r"), _centre("pelvis", "neck_01", "head"),
               _limbs("thigh_{s}", "calf_{s}", "foot_{s}", "ball_{s}", "clavicle_{s}", "upperarm_{s}",
                      "lowerarm_{s}", "hand_{s}"), extras={"root": ("root",)}),
    Convention("vroid", ("L", "R"), _centre("J_Bip_C_Hips", "J_Bip_C_Neck", "J_Bip_C_Head"),
               _limbs("J_Bip_{s}_UpperLeg", "J_Bip_{s}_LowerLeg", "J_Bip_{s}_Foot", "J_Bip_{s}_ToeBase",
                      "J_Bip_{s}_Shoulder", "J_Bip_{s}_UpperArm", "J_Bip_{s}_LowerArm", "J_Bip_{s}_Hand")),
    Convention("vrm_humanoid", ("left", "right"), _centre("hips", "neck", "head"),
               _limbs("{s}UpperLeg", "{s}LowerLeg", "{s}Foot", "{s}Toes", "{s}Shoulder", "{s}UpperArm",
                      "{s}LowerArm", "{s}Hand")),
    Convention("smpl", ("L", "R"), _centre("Pelvis", "Neck", "Head"),
               _limbs("{s}_Hip", "{s}_Knee", "{s}_Ankle", "{s}_Foot", "{s}_Collar", "{s}_Shoulder",
                      "{s}_Elbow", "{s}_Wrist"), extras={"root": ("root",)}),
    Convention("smplx", ("left", "right"), _centre("pelvis", "neck", "head"),
               _limbs("{s}_hip", "{s}_knee", "{s}_ankle", "{s}_foot", "{s}_collar", "{s}_shoulder",
                      "{s}_elbow", "{s}_wrist"), extras={"root": ("root",)}),
    Convention("auto_rig_pro", ("l", "r"), _centre("c_root.x", "c_neck.x", "c_head.x"),
               _limbs("c_thigh_fk.{s}", "c_leg_fk.{s}", "c_foot_fk.{s}", "c_toes_fk.{s}", "c_shoulder.{s}",
                      "c_arm_fk.{s}", "c_forearm_fk.{s}", "c_hand_fk.{s}")),
    Convention("auto_rig_pro_deform", ("l", "r"), _centre("root.x", "neck.x", "head.x"),
               _limbs("thigh_stretch.{s}", "leg_stretch.{s}", "foot.{s}", "toes_01.{s}", "shoulder.{s}",
                      "arm_stretch.{s}", "forearm_stretch.{s}", "hand.{s}")),
    Convention("character_creator", ("L", "R"),
               _centre("CC_Base_Hip", "CC_Base_NeckTwist01", "CC_Base_Head"),
               _limbs("CC_Base_{s}_Thigh", "CC_Base_{s}_Calf", "CC_Base_{s}_Foot", "CC_Base_{s}_ToeBase",
                      "CC_Base_{s}_Clavicle", "CC_Base_{s}_Upperarm", "CC_Base_{s}_Forearm",
                      "CC_Base_{s}_Hand"),
               extras={"root": ("CC_Base_BoneRoot",)}),
    Convention("daz_genesis8", ("l", "r"), _centre("hip", "neckLower", "head"),
               _limbs("{s}ThighBend", "{s}Shin", "{s}Foot", "{s}Toe", "{s}Collar", "{s}ShldrBend",
                      "{s}ForearmBend", "{s}Hand")),
    Convention("daz_genesis9", ("l", "r"), _centre("hip", "neck1", "head"),
               _limbs("{s}_thigh", "{s}_shin", "{s}_foot", "{s}_toes", "{s}_shoulder",
                      "{s}_upperarm", "{s}_forearm", "{s}_hand")),
)
_TABLE_ROLES = tuple(r for r in ROLES if r not in SPINE_ROLES)
_MIN_TABLE_HITS = 8            # fewer exact hits than this: the rig follows no known convention


def _strip_namespace(name: str) -> str:
    """Namespaces and vendor prefixes off: ``mixamorig:Hips``, ``mixamorigHips`` → ``Hips``; ``m_avg_L_Hip``
    → ``L_Hip``."""
    name = re.split(r"[:|]", name)[-1]
    name = re.sub(r"^mixamorig\d*_?(?=[A-Z])", "", name)
    return re.sub(r"^[mf]_avg_", "", name)


# --- fuzzy names -----------------------------------------------------------------------------------

_PREFIXES = re.compile(r"^(cc_base_|j_bip_|bip0?0?1[ _]?|valvebiped[._]?|def[-_]|org[-_]|[mf]_avg_)",
                       re.IGNORECASE)
_COMPOUNDS = {("up", "leg"): "upleg", ("upper", "leg"): "upperleg", ("lower", "leg"): "lowerleg",
              ("up", "arm"): "uparm", ("upper", "arm"): "upperarm", ("lower", "arm"): "lowerarm",
              ("fore", "arm"): "forearm", ("toe", "base"): "toebase", ("upper", "chest"): "upperchest",
              ("head", "top"): "headtop"}
_HELPER_TOKENS = {"twist", "roll", "ik", "pole", "target", "mch", "vis", "end", "tip", "nub", "helper",
                  "offset", "corrective", "null", "headtop", "socket", "prop", "weapon", "tweak"}
_CLASSES = {
    "pelvis": {"hips", "pelvis", "cog"}, "spine": {"spine", "abdomen", "waist", "chest", "torso", "back",
                                                   "upperchest"},
    "neck": {"neck"}, "head": {"head"}, "collar": {"clavicle", "collar"},
    "upperarm": {"upperarm", "uparm", "shldr", "humerus", "arm"}, "forearm": {"forearm", "lowerarm", "elbow"},
    "hand": {"hand", "wrist"}, "thigh": {"thigh", "upleg", "upperleg", "femur"},
    "shin": {"shin", "calf", "knee", "lowerleg", "leg"}, "foot": {"foot", "ankle"},
    "toe": {"toe", "toes", "toebase", "ball"},
}


@dataclass(frozen=True)
class _Name:
    tokens: tuple[str, ...]
    side: str            # "left", "right" or "" (centre / unknown)
    number: int | None   # the name's trailing number (spine_03 → 3)
    helper: bool

    def has(self, cls: str) -> bool:
        return bool(self.classes() & {cls})

    def classes(self) -> set[str]:
        out = {c for c, words in _CLASSES.items() if words & set(self.tokens)}
        if "hip" in self.tokens:        # "hip" is the pelvis in the middle, the thigh on a side
            out.add("thigh" if self.side else "pelvis")
        if "shoulder" in self.tokens:   # clavicle (Mixamo) or upper arm (SMPL): resolved by topology
            out.add("shoulder")
        return out


def parse_name(name: str) -> _Name:
    """Tokens, side, number and helper flag of a bone name (see the module doc)."""
    core = _strip_namespace(name)
    side = ""
    if re.search(r"(^|[._\- ])(C|x)([._\- ]|$)", core):                  # VRoid _C_, ARP .x: centre
        side = "centre"
    core = _PREFIXES.sub("", core)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", core)              # camelCase, Daz lShldr
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    spaced = re.sub(r"([A-Za-z])(\d)", r"\1 \2", spaced)
    raw = [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]
    tokens: list[str] = []
    i = 0
    while i < len(raw):
        pair = tuple(raw[i:i + 2])
        if pair in _COMPOUNDS:
            tokens.append(_COMPOUNDS[pair])
            i += 2
        else:
            tokens.append(raw[i])
            i += 1
    if side != "centre":
        if {"l", "left"} & set(tokens):
            side = "left"
        elif {"r", "right"} & set(tokens):
            side = "right"
    numbers = [int(t) for t in tokens if t.isdigit()]
    words = tuple(t for t in tokens if not t.isdigit() and t not in {"l", "r", "left", "right", "c", "x"})
    helper = bool(_HELPER_TOKENS & set(words)) or core.lower().startswith(("mch", "vis_"))
    return _Name(words, "" if side == "centre" else side, numbers[-1] if numbers else None, helper)


# --- the mapping -----------------------------------------------------------------------------------

@dataclass
class BoneMapping:
    """The answer of :func:`auto_map` (plain data; round-trips through ``to_dict``/``from_dict``)."""

    bones: dict[str, str] = field(default_factory=dict)        # joint role → bone name
    spine_chain: list[str] = field(default_factory=list)       # pelvis (excl.) → neck (excl.), bottom up
    neck_chain: list[str] = field(default_factory=list)        # neck → head (excl.)
    missing: list[str] = field(default_factory=list)           # required roles with no bone
    optional_missing: list[str] = field(default_factory=list)  # neck/collars/toes the rig lacks
    interpolated: list[str] = field(default_factory=list)      # spine roles sampled along the chain
    convention: str = "generic"
    extras: dict[str, str] = field(default_factory=dict)       # root, toe/head end bones
    overrides: dict[str, str] = field(default_factory=dict)    # as given by the user
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"bones": dict(self.bones), "spine_chain": list(self.spine_chain),
                "neck_chain": list(self.neck_chain), "missing": list(self.missing),
                "optional_missing": list(self.optional_missing), "interpolated": list(self.interpolated),
                "convention": self.convention, "extras": dict(self.extras),
                "overrides": dict(self.overrides), "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoneMapping:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def report(self) -> str:
        lines = [f"Bone mapping ({self.convention}): {len(self.bones)} of {len(ROLES)} joints mapped."]
        for role in ROLES:
            if role in self.bones:
                mark = " (override)" if role in self.overrides else ""
                lines.append(f"  {role:<15} -> {self.bones[role]}{mark}")
            elif role in self.interpolated:
                lines.append(f"  {role:<15} -> interpolated along the spine chain")
            elif role in self.missing:
                lines.append(f"  {role:<15} -> MISSING")
            else:
                lines.append(f"  {role:<15} -> (not in this rig; the solver does without)")
        lines.append(f"  spine chain: {' > '.join(self.spine_chain) or '(none)'}")
        if len(self.neck_chain) > 1:
            lines.append(f"  neck chain: {' > '.join(self.neck_chain)}")
        if self.extras:
            lines.append("  extras: " + ", ".join(f"{k}={v}" for k, v in sorted(self.extras.items())))
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.missing:
            lines.append(f"  Missing: {', '.join(self.missing)}. {FIX_IN_PANEL}")
        return "\n".join(lines)


def require_complete(mapping: BoneMapping) -> BoneMapping:
    """Raise RigError naming the unmapped required roles (and how to fix it); else return the mapping."""
    if mapping.missing:
        raise RigError(f"No bone found for: {', '.join(mapping.missing)}.", FIX_IN_PANEL)
    return mapping


def auto_map(rig: RigDescription, overrides: dict[str, str] | None = None) -> BoneMapping:
    """Map the 22 SMPL joints to the rig's bones (tables → fuzzy → spine rule → user overrides)."""
    overrides = _validated_overrides(rig, overrides or {})
    convention, bones = _table_pass(rig)
    names = [parse_name(b) for b in rig.bone_names]
    _fuzzy_pass(rig, names, bones)

    for role, bone in overrides.items():           # the user's word wins; a bone plays one role
        for other in [r for r, b in bones.items() if b == bone and r != role]:
            del bones[other]
        if bone:
            bones[role] = bone
        else:
            bones.pop(role, None)

    spine_chain, neck_chain = _assign_spine(rig, bones, {r for r in overrides if r in SPINE_ROLES})
    mapping = BoneMapping(bones={r: bones[r] for r in ROLES if r in bones}, spine_chain=spine_chain,
                          neck_chain=neck_chain, convention=convention, overrides=dict(overrides))
    mapping.interpolated = [r for r in SPINE_ROLES if r not in bones]
    mapping.missing = [r for r in ROLES if r not in bones and r not in mapping.interpolated
                       and r not in OPTIONAL_ROLES]
    mapping.optional_missing = [r for r in OPTIONAL_ROLES if r not in bones]
    mapping.extras = _extras(rig, convention, mapping)
    mapping.warnings = _validate(rig, mapping)
    return mapping


def _validated_overrides(rig: RigDescription, overrides: dict[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for role, bone in overrides.items():
        if role not in ROLES:
            raise RigError(f"Unknown joint role {role!r} in the bone mapping.",
                           f"Use one of: {', '.join(ROLES)}.")
        bone = (bone or "").strip()
        if bone:
            rig.index(bone)                        # RigError naming the bone (and close names)
        clean[role] = bone
    used = [b for b in clean.values() if b]
    dupes = sorted({b for b in used if used.count(b) > 1})
    if dupes:
        raise RigError(f"Bone {dupes[0]!r} is mapped to several joints.", "Give each joint its own bone.")
    return clean


def _table_pass(rig: RigDescription) -> tuple[str, dict[str, str]]:
    """The convention with the most exact name hits, and its role → bone mapping."""
    exact = {_strip_namespace(b): b for b in rig.bone_names}
    folded: dict[str, str] = {}
    for plain, bone in exact.items():
        folded.setdefault(plain.lower(), bone)
    best_name, best, best_hits = "generic", {}, 0
    for conv in CONVENTIONS:
        found: dict[str, str] = {}
        for role in _TABLE_ROLES:
            for cand in conv.candidates(role):
                bone = exact.get(cand) or folded.get(cand.lower())
                if bone is not None and bone not in found.values():
                    found[role] = bone
                    break
        if len(found) > best_hits:
            best_name, best, best_hits = conv.name, found, len(found)
    if best_hits < _MIN_TABLE_HITS:
        return "generic", {}
    if best_name == "ue_mannequin":
        best_name = "ue5_mannequin" if "spine_05" in exact else "ue4_mannequin"
    return best_name, best


def _fuzzy_pass(rig: RigDescription, names: list[_Name], bones: dict[str, str]) -> None:
    """Fill the roles the tables left open from normalised names and the hierarchy (in place)."""
    used = {rig.index(b) for b in bones.values()}
    heads = rig.heads
    scale = max(float(np.ptp(heads, axis=0).max()), 1e-6)

    def side_of(i: int) -> str:
        if names[i].side:
            return names[i].side
        x = heads[i, 0]              # left = +X in the rig's own (armature) frame
        return "left" if x > 0.02 * scale else "right" if x < -0.02 * scale else ""

    def free(i: int) -> bool:
        return i not in used and not names[i].helper

    def pick(candidates: list[int]) -> int | None:
        candidates = [i for i in candidates if free(i)]
        return min(candidates, key=lambda i: (rig.depth(i), i)) if candidates else None

    def primary_ancestor(i: int) -> int | None:
        for a in rig.ancestors(i):
            if not names[a].helper:
                return a
        return None

    def primary_descendant(i: int, want: set[str], avoid: set[str] = frozenset()) -> int | None:
        below = [j for j in rig.descendants(i) if free(j) and names[j].classes() & want
                 and not names[j].classes() & avoid]
        if below:
            return min(below, key=lambda j: (rig.depth(j), j))
        chain = [j for j in rig.children(i) if free(j)]     # no telling name: the next bone down
        return min(chain, key=lambda j: (-len(rig.descendants(j)), j)) if chain else None

    def assign(role: str, i: int | None) -> int | None:
        if role in bones:
            return rig.index(bones[role])
        if i is None or i in used:
            return None
        bones[role] = rig.bone_names[i]
        used.add(i)
        return i

    def role_index(role: str) -> int | None:
        return rig.index(bones[role]) if role in bones else None

    sides = [side_of(i) for i in range(len(rig))]
    for side in ("left", "right"):
        own = [i for i in range(len(rig)) if sides[i] == side]
        # legs: the shin is the least ambiguous bone; thigh above it, foot and toe below.
        shin = role_index(f"{side}_knee")
        if shin is None:
            shin = pick([i for i in own if names[i].has("shin") and not names[i].classes() & {"thigh"}])
            if shin is None:
                thigh = pick([i for i in own if names[i].has("thigh")])
                shin = primary_descendant(thigh, {"shin"}) if thigh is not None else None
            shin = assign(f"{side}_knee", shin)
        if shin is not None:
            above = primary_ancestor(shin)
            if above is not None and sides[above] == side:
                assign(f"{side}_hip", above)
            foot = role_index(f"{side}_ankle")
            if foot is None:
                foot = assign(f"{side}_ankle", primary_descendant(shin, {"foot"}, {"toe"}))
            if foot is not None and f"{side}_foot" not in bones:
                toe = primary_descendant(foot, {"toe", "foot"})
                if toe is not None and not names[toe].helper:
                    assign(f"{side}_foot", toe)
        # arms: the forearm first; upper arm above it, the clavicle above that, the hand below.
        fore = role_index(f"{side}_elbow")
        if fore is None:
            fore = pick([i for i in own if names[i].has("forearm")])
            if fore is None:
                hand = pick([i for i in own if names[i].has("hand")])
                fore = primary_ancestor(hand) if hand is not None else None
            fore = assign(f"{side}_elbow", fore)
        if fore is not None:
            upper = primary_ancestor(fore)
            if upper is not None and sides[upper] == side:
                upper = assign(f"{side}_shoulder", upper)
                collar = primary_ancestor(upper) if upper is not None else None
                if (collar is not None and sides[collar] == side
                        and not names[collar].classes() & {"spine", "neck", "pelvis"}):
                    assign(f"{side}_collar", collar)
            assign(f"{side}_wrist", primary_descendant(fore, {"hand"}))

    centre = [i for i in range(len(rig)) if not sides[i]]
    head = assign("head", pick([i for i in centre if names[i].has("head")]))
    if "neck" not in bones:
        necks = [i for i in centre if names[i].has("neck")]
        if head is not None:
            necks = [i for i in necks if i in rig.ancestors(head)]
        assign("neck", pick(necks))
    if "pelvis" not in bones:
        thighs = [role_index(f"{s}_hip") for s in ("left", "right")]
        thighs = [t for t in thighs if t is not None]
        above_legs = set.intersection(*(set(rig.ancestors(t)) for t in thighs)) if thighs else set()
        named = [i for i in centre if names[i].has("pelvis") and (not thighs or i in above_legs)]
        pelvis = pick(named)
        if pelvis is None and thighs:
            top = role_index("neck") if "neck" in bones else head
            common = above_legs & set(rig.ancestors(top)) if top is not None else above_legs
            pelvis = max(common, key=rig.depth) if common else None      # lowest common ancestor
        assign("pelvis", pelvis)


def _assign_spine(rig: RigDescription, bones: dict[str, str], fixed: set[str]) -> tuple[list[str], list[str]]:
    """Apply the spine rule (module doc) in place; return the spine and neck chains."""
    def idx(role: str) -> int | None:
        return rig.index(bones[role]) if bones.get(role) else None

    pelvis, neck, head = idx("pelvis"), idx("neck"), idx("head")
    for role in SPINE_ROLES:
        if role not in fixed:
            bones.pop(role, None)
    if pelvis is None:
        return [], []
    stop = {pelvis, *rig.ancestors(pelvis)}
    top = neck if neck is not None else head
    if top is not None:
        chain = []
        for a in rig.ancestors(top):
            if a in stop:
                break
            chain.append(a)
    else:                                              # no neck/head: up to the bone the arms share
        arm_roots = [idx(f"{s}_collar") or idx(f"{s}_shoulder") for s in ("left", "right")]
        arm_roots = [a for a in arm_roots if a is not None]
        shared = set.intersection(*(set(rig.ancestors(a)) for a in arm_roots)) - stop if arm_roots else set()
        chest = max(shared, key=rig.depth) if shared else None
        chain = []
        for a in ([chest, *rig.ancestors(chest)] if chest is not None else []):
            if a in stop:
                break
            chain.append(a)
    chain.reverse()                                    # bottom up
    spine_chain = [rig.bone_names[i] for i in chain]

    taken = {b for r, b in bones.items() if r not in SPINE_ROLES}
    free_chain = [i for i in chain if rig.bone_names[i] not in taken]
    choice: dict[str, int] = {}
    if len(free_chain) >= 1:
        choice["spine1"] = free_chain[0]
    if len(free_chain) >= 2:
        choice["spine3"] = free_chain[-1]
    if len(free_chain) >= 3:
        u = _arc_params(rig, pelvis, free_chain, top)
        inner = range(1, len(free_chain) - 1)
        choice["spine2"] = free_chain[min(inner, key=lambda k: abs(u[k] - SPINE_ARC[1]))]
    for role, i in choice.items():
        if role not in fixed and rig.bone_names[i] not in bones.values():
            bones[role] = rig.bone_names[i]

    neck_chain: list[str] = []
    if neck is not None:
        between = []
        if head is not None and neck in rig.ancestors(head):
            for a in rig.ancestors(head):
                if a == neck:
                    break
                between.append(a)
        neck_chain = [rig.bone_names[neck]] + [rig.bone_names[i] for i in reversed(between)]
    return spine_chain, neck_chain


def _arc_params(rig: RigDescription, pelvis: int, chain: list[int], top: int | None) -> np.ndarray:
    """Normalised arc length of each chain bone's head on the polyline pelvis head → chain → top head."""
    heads = rig.heads
    points = [heads[pelvis]] + [heads[i] for i in chain]
    points.append(heads[top] if top is not None else rig.tails[chain[-1]])
    steps = np.linalg.norm(np.diff(np.array(points), axis=0), axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return arc[1:-1] / max(arc[-1], 1e-12)


def _extras(rig: RigDescription, convention: str, mapping: BoneMapping) -> dict[str, str]:
    out: dict[str, str] = {}
    table = "ue_mannequin" if convention.startswith("ue") else convention
    conv = next((c for c in CONVENTIONS if c.name == table), None)
    if conv is not None:
        for key, cands in conv.extras.items():
            for cand in cands:
                hit = next((b for b in rig.bone_names if _strip_namespace(b) == cand), None)
                if hit:
                    out[key] = hit
                    break
    pelvis = mapping.bones.get("pelvis")
    if "root" not in out and pelvis:
        above = rig.ancestors(rig.index(pelvis))
        if above:
            out["root"] = rig.bone_names[above[-1]]
    return out


def _validate(rig: RigDescription, mapping: BoneMapping) -> list[str]:
    """Plausibility checks the user should hear about (the mapping is kept as it is)."""
    warnings = []
    chains = [("hip", "knee", "ankle", "foot"), ("shoulder", "elbow", "wrist")]
    for side in ("left", "right"):
        for chain in chains:
            roles = [f"{side}_{b}" for b in chain if f"{side}_{b}" in mapping.bones]
            for upper, lower in itertools.pairwise(roles):
                if rig.index(mapping.bones[upper]) not in rig.ancestors(rig.index(mapping.bones[lower])):
                    warnings.append(f"{mapping.bones[upper]!r} ({upper}) is not above "
                                    f"{mapping.bones[lower]!r} ({lower}) in the hierarchy.")
    lh, rh = mapping.bones.get("left_hip"), mapping.bones.get("right_hip")
    if lh and rh and rig.heads[rig.index(lh)][0] < rig.heads[rig.index(rh)][0]:
        warnings.append("The left leg is on the rig's -X side (a rig facing +Y?); names were trusted.")
    return warnings


def joint_rest_positions(rig: RigDescription, mapping: BoneMapping) -> np.ndarray:
    """(22, 3) rest positions of the SMPL joints on the rig, armature space; NaN where unmapped.

    Spine joints without a bone of their own are sampled on the rig's spine polyline (pelvis head →
    chain heads → neck head) at SMPL's arc-length parameters (docs/retargeting.md §9).
    """
    out = rig.rest_positions([mapping.bones.get(r) for r in ROLES])
    pelvis = mapping.bones.get("pelvis")
    if pelvis is None:
        return out
    top = mapping.bones.get("neck") or mapping.bones.get("head")
    points = [rig.heads[rig.index(pelvis)]] + [rig.heads[rig.index(b)] for b in mapping.spine_chain]
    if top:
        points.append(rig.heads[rig.index(top)])
    if len(points) < 2:
        return out
    points_arr = np.array(points)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points_arr, axis=0), axis=-1))])
    arc /= max(arc[-1], 1e-12)
    for role, u in zip(SPINE_ROLES, SPINE_ARC, strict=True):
        if role in mapping.interpolated:
            out[ROLES.index(role)] = [np.interp(u, arc, points_arr[:, k]) for k in range(3)]
    return out
