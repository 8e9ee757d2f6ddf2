"""Automatic bone mapping on synthetic rigs (names + plausible rest positions; no Blender)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.motion.skeleton import T2M_JOINT_NAMES
from backend.portable.errors import RigError
from backend.retarget.mapping import BoneMapping, auto_map, joint_rest_positions, require_complete
from backend.retarget.rig import RigDescription

# Rest heads of a 1.8 m humanoid in Blender's frame (Z up, facing -Y, the character's left = +X).
LEFT_HEADS = {
    "thigh": (0.1, 0.0, 0.95),
    "shin": (0.1, 0.0, 0.5),
    "foot": (0.1, 0.0, 0.08),
    "toe": (0.1, -0.12, 0.02),
    "toe_end": (0.1, -0.2, 0.02),
    "clavicle": (0.03, 0.0, 1.42),
    "upperarm": (0.18, 0.0, 1.42),
    "forearm": (0.45, 0.0, 1.42),
    "hand": (0.7, 0.0, 1.42),
    "finger": (0.8, 0.0, 1.42),
}
LIMB_PARENT = {
    "thigh": "pelvis",
    "shin": "thigh",
    "foot": "shin",
    "toe": "foot",
    "toe_end": "toe",
    "clavicle": "chest",
    "upperarm": "clavicle",
    "forearm": "upperarm",
    "hand": "forearm",
    "finger": "hand",
}
ROLE_OF = {
    "thigh": "hip",
    "shin": "knee",
    "foot": "ankle",
    "toe": "foot",
    "clavicle": "collar",
    "upperarm": "shoulder",
    "forearm": "elbow",
    "hand": "wrist",
}


def make_rig(
    pelvis: str,
    spine: list[str],
    neck: str | None,
    head: str | None,
    left: dict[str, str],
    right: dict[str, str],
    root: str | None = None,
    head_end: str | None = None,
    extra: list[tuple[str, str, tuple[float, float, float]]] = (),
    name_prefix: str = "",
) -> RigDescription:
    """A humanoid rig: ``left``/``right`` map LEFT_HEADS keys to bone names (keys may be left out)."""
    bones: list[tuple[str, str | None, tuple[float, float, float]]] = []
    if root:
        bones.append((root, None, (0.0, 0.0, 0.0)))
    bones.append((pelvis, root, (0.0, 0.0, 1.0)))
    below = pelvis
    for k, name in enumerate(spine):
        bones.append((name, below, (0.0, 0.0, 1.05 + 0.35 * k / max(len(spine), 1))))
        below = name
    chest = below
    if neck:
        bones.append((neck, chest, (0.0, 0.0, 1.45)))
    if head:
        bones.append((head, neck or chest, (0.0, 0.0, 1.6)))
        if head_end:
            bones.append((head_end, head, (0.0, 0.0, 1.8)))
    for names, sign in ((left, 1.0), (right, -1.0)):
        for key, (x, y, z) in LEFT_HEADS.items():
            if key not in names:
                continue
            parent_key = LIMB_PARENT[key]
            if parent_key == "pelvis":
                parent = pelvis
            elif parent_key == "chest":
                parent = chest
            else:
                parent = names.get(parent_key) or names.get(LIMB_PARENT[parent_key])
                if parent is None:  # e.g. no clavicle: the upper arm hangs from the chest
                    parent = chest
            bones.append((names[key], parent, (sign * x, y, z)))
    for name, parent, pos in extra:
        bones.append((name, parent, pos))
    return rig_from(bones, name_prefix)


def rig_from(bones, name_prefix: str = "") -> RigDescription:
    """Bones (name, parent name, head) → RigDescription; each bone points at its first child."""
    names = [name_prefix + b[0] for b in bones]
    index = {b[0]: i for i, b in enumerate(bones)}
    parents = [index[b[1]] if b[1] else -1 for b in bones]
    heads = np.array([b[2] for b in bones], dtype=float)
    rest = np.tile(np.eye(4), (len(bones), 1, 1))
    lengths = np.full(len(bones), 0.1)
    for i in range(len(bones)):
        kids = [c for c, p in enumerate(parents) if p == i]
        y = heads[kids[0]] - heads[i] if kids else np.array([0.0, 0.0, 0.1])
        if np.linalg.norm(y) < 1e-9:
            y = np.array([0.0, 0.0, 0.1])
        lengths[i] = np.linalg.norm(y)
        y = y / lengths[i]
        x = np.cross(y, [0.3, 0.5, 0.81])
        x /= np.linalg.norm(x)
        rest[i, :3, :3] = np.stack([x, y, np.cross(x, y)], axis=-1)
        rest[i, :3, 3] = heads[i]
    return RigDescription(
        bone_names=names,
        parents=parents,
        rest_matrices=rest,
        world_matrix=np.eye(4),
        rotation_modes=["QUATERNION"] * len(bones),
        lengths=lengths,
    )


def side_names(template: dict[str, str], token: str) -> dict[str, str]:
    return {key: t.format(s=token) for key, t in template.items()}


def expected(pelvis, neck, head, left, right, spine=()) -> dict[str, str]:
    out = {"pelvis": pelvis, "head": head}
    if neck:
        out["neck"] = neck
    for side, names in (("left", left), ("right", right)):
        for key, role in ROLE_OF.items():
            if key in names:
                out[f"{side}_{role}"] = names[key]
    out.update(dict(zip(("spine1", "spine2", "spine3"), spine, strict=False)))
    return out


# --- one synthetic rig per naming convention -------------------------------------------------------

MIXAMO = {
    "thigh": "{s}UpLeg",
    "shin": "{s}Leg",
    "foot": "{s}Foot",
    "toe": "{s}ToeBase",
    "toe_end": "{s}Toe_End",
    "clavicle": "{s}Shoulder",
    "upperarm": "{s}Arm",
    "forearm": "{s}ForeArm",
    "hand": "{s}Hand",
    "finger": "{s}HandIndex1",
}
CASES = {
    "mixamo": dict(
        pelvis="Hips",
        spine=["Spine", "Spine1", "Spine2"],
        neck="Neck",
        head="Head",
        head_end="HeadTop_End",
        sides=(MIXAMO, "Left", "Right"),
    ),
    "humanml3d_bvh": dict(
        pelvis="Hips",
        spine=["Spine", "Spine1", "Spine2"],
        neck="Neck",
        head="Head",
        sides=({**MIXAMO, "toe": "{s}Toe"}, "Left", "Right"),
    ),
    "rigify": dict(
        pelvis="spine",
        spine=["spine.001", "spine.002", "spine.003"],
        neck="spine.004",
        head="spine.006",
        sides=(
            {
                "thigh": "thigh.{s}",
                "shin": "shin.{s}",
                "foot": "foot.{s}",
                "toe": "toe.{s}",
                "clavicle": "shoulder.{s}",
                "upperarm": "upper_arm.{s}",
                "forearm": "forearm.{s}",
                "hand": "hand.{s}",
                "finger": "f_index.01.{s}",
            },
            "L",
            "R",
        ),
    ),
    "ue5_mannequin": dict(
        root="root",
        pelvis="pelvis",
        spine=[f"spine_0{i}" for i in range(1, 6)],
        neck="neck_01",
        head="head",
        sides=(
            {
                "thigh": "thigh_{s}",
                "shin": "calf_{s}",
                "foot": "foot_{s}",
                "toe": "ball_{s}",
                "clavicle": "clavicle_{s}",
                "upperarm": "upperarm_{s}",
                "forearm": "lowerarm_{s}",
                "hand": "hand_{s}",
            },
            "l",
            "r",
        ),
    ),
    "vroid": dict(
        pelvis="J_Bip_C_Hips",
        spine=["J_Bip_C_Spine", "J_Bip_C_Chest", "J_Bip_C_UpperChest"],
        neck="J_Bip_C_Neck",
        head="J_Bip_C_Head",
        sides=(
            {
                "thigh": "J_Bip_{s}_UpperLeg",
                "shin": "J_Bip_{s}_LowerLeg",
                "foot": "J_Bip_{s}_Foot",
                "toe": "J_Bip_{s}_ToeBase",
                "clavicle": "J_Bip_{s}_Shoulder",
                "upperarm": "J_Bip_{s}_UpperArm",
                "forearm": "J_Bip_{s}_LowerArm",
                "hand": "J_Bip_{s}_Hand",
            },
            "L",
            "R",
        ),
    ),
    "smpl": dict(
        root="m_avg_root",
        pelvis="m_avg_Pelvis",
        spine=["m_avg_Spine1", "m_avg_Spine2", "m_avg_Spine3"],
        neck="m_avg_Neck",
        head="m_avg_Head",
        sides=(
            {
                "thigh": "m_avg_{s}_Hip",
                "shin": "m_avg_{s}_Knee",
                "foot": "m_avg_{s}_Ankle",
                "toe": "m_avg_{s}_Foot",
                "clavicle": "m_avg_{s}_Collar",
                "upperarm": "m_avg_{s}_Shoulder",
                "forearm": "m_avg_{s}_Elbow",
                "hand": "m_avg_{s}_Wrist",
            },
            "L",
            "R",
        ),
    ),
    "smplx": dict(
        pelvis="pelvis",
        spine=["spine1", "spine2", "spine3"],
        neck="neck",
        head="head",
        sides=(
            {
                "thigh": "{s}_hip",
                "shin": "{s}_knee",
                "foot": "{s}_ankle",
                "toe": "{s}_foot",
                "clavicle": "{s}_collar",
                "upperarm": "{s}_shoulder",
                "forearm": "{s}_elbow",
                "hand": "{s}_wrist",
            },
            "left",
            "right",
        ),
    ),
    "auto_rig_pro": dict(
        pelvis="c_root.x",
        spine=["c_spine_01.x", "c_spine_02.x", "c_spine_03.x"],
        neck="c_neck.x",
        head="c_head.x",
        sides=(
            {
                "thigh": "c_thigh_fk.{s}",
                "shin": "c_leg_fk.{s}",
                "foot": "c_foot_fk.{s}",
                "toe": "c_toes_fk.{s}",
                "clavicle": "c_shoulder.{s}",
                "upperarm": "c_arm_fk.{s}",
                "forearm": "c_forearm_fk.{s}",
                "hand": "c_hand_fk.{s}",
            },
            "l",
            "r",
        ),
    ),
    "character_creator": dict(
        root="CC_Base_BoneRoot",
        pelvis="CC_Base_Hip",
        spine=["CC_Base_Waist", "CC_Base_Spine01", "CC_Base_Spine02"],
        neck="CC_Base_NeckTwist01",
        head="CC_Base_Head",
        sides=(
            {
                "thigh": "CC_Base_{s}_Thigh",
                "shin": "CC_Base_{s}_Calf",
                "foot": "CC_Base_{s}_Foot",
                "toe": "CC_Base_{s}_ToeBase",
                "clavicle": "CC_Base_{s}_Clavicle",
                "upperarm": "CC_Base_{s}_Upperarm",
                "forearm": "CC_Base_{s}_Forearm",
                "hand": "CC_Base_{s}_Hand",
            },
            "L",
            "R",
        ),
    ),
    "daz_genesis8": dict(
        pelvis="hip",
        spine=["abdomenLower", "abdomenUpper", "chestLower", "chestUpper"],
        neck="neckLower",
        head="head",
        sides=(
            {
                "thigh": "{s}ThighBend",
                "shin": "{s}Shin",
                "foot": "{s}Foot",
                "toe": "{s}Toe",
                "clavicle": "{s}Collar",
                "upperarm": "{s}ShldrBend",
                "forearm": "{s}ForearmBend",
                "hand": "{s}Hand",
            },
            "l",
            "r",
        ),
    ),
    "daz_genesis9": dict(
        pelvis="hip",
        spine=["spine1", "spine2", "spine3", "spine4"],
        neck="neck1",
        head="head",
        sides=(
            {
                "thigh": "{s}_thigh",
                "shin": "{s}_shin",
                "foot": "{s}_foot",
                "toe": "{s}_toes",
                "clavicle": "{s}_shoulder",
                "upperarm": "{s}_upperarm",
                "forearm": "{s}_forearm",
                "hand": "{s}_hand",
            },
            "l",
            "r",
        ),
    ),
}


def build_case(case: dict, prefix: str = "") -> tuple[RigDescription, dict[str, str]]:
    template, lt, rt = case["sides"]
    left, right = side_names(template, lt), side_names(template, rt)
    rig = make_rig(
        case["pelvis"],
        case["spine"],
        case["neck"],
        case["head"],
        left,
        right,
        root=case.get("root"),
        head_end=case.get("head_end"),
        name_prefix=prefix,
    )
    want = expected(case["pelvis"], case["neck"], case["head"], left, right)
    return rig, {role: prefix + bone for role, bone in want.items()}


@pytest.mark.parametrize("convention", sorted(CASES))
def test_every_known_convention_maps_completely_with_no_user_input(convention):
    rig, want = build_case(CASES[convention])
    mapping = auto_map(rig)
    assert mapping.convention == convention
    assert mapping.missing == [] and mapping.optional_missing == []
    for role, bone in want.items():
        assert mapping.bones[role] == bone, (role, mapping.report())
    assert mapping.spine_chain == CASES[convention]["spine"]
    require_complete(mapping)


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig1:", "mixamorig"])
def test_mixamo_prefixes_are_recognised(prefix):
    rig, want = build_case(CASES["mixamo"], prefix=prefix)
    mapping = auto_map(rig)
    assert mapping.convention == "mixamo" and not mapping.missing
    assert {r: mapping.bones[r] for r in want} == want
    assert mapping.bones["spine2"] == prefix + "Spine1"
    assert mapping.extras["head_end"] == prefix + "HeadTop_End"


def test_rigify_deform_bones_of_a_generated_rig_are_preferred_over_the_mechanism():
    rig, want = build_case(CASES["rigify"], prefix="DEF-")
    mapping = auto_map(rig)
    assert mapping.convention == "rigify_def" and mapping.bones["left_wrist"] == "DEF-hand.L"
    assert mapping.bones["spine3"] == "DEF-spine.003"


def test_ue4_and_ue5_are_told_apart_and_ue5_spine_follows_the_rule():
    rig, _ = build_case(CASES["ue5_mannequin"])
    mapping = auto_map(rig)
    # 5 spine bones, evenly spaced: spine_01 lowest, spine_05 chest, spine2 = spine_03 (arc length 0.50).
    assert [mapping.bones[r] for r in ("spine1", "spine2", "spine3")] == ["spine_01", "spine_03", "spine_05"]
    assert mapping.extras["root"] == "root" and mapping.interpolated == []
    ue4 = dict(CASES["ue5_mannequin"], spine=["spine_01", "spine_02", "spine_03"])
    assert auto_map(build_case(ue4)[0]).convention == "ue4_mannequin"


def test_daz_four_bone_spine_keeps_the_chest_the_arms_hang_from():
    mapping = auto_map(build_case(CASES["daz_genesis8"])[0])
    assert mapping.bones["spine1"] == "abdomenLower" and mapping.bones["spine3"] == "chestUpper"
    assert mapping.bones["spine2"] in ("abdomenUpper", "chestLower")


# --- fuzzy names -----------------------------------------------------------------------------------


def test_unknown_mixed_names_map_by_tokens_and_hierarchy():
    left = {
        "thigh": "L_UpperLeg",
        "shin": "L_LowerLeg",
        "foot": "L_Ankle",
        "toe": "L_Ball",
        "clavicle": "L_Clavicle",
        "upperarm": "L_UpperArm",
        "forearm": "L_Elbow",
        "hand": "L_Wrist",
        "finger": "L_Index1",
    }
    right = {
        "thigh": "thigh_r",
        "shin": "shin_r",
        "foot": "foot_r",
        "toe": "toe_r",
        "clavicle": "collar_r",
        "upperarm": "arm_upper_r",
        "forearm": "Forearm_R",
        "hand": "hand_r",
        "toe_end": "toe_r_end",
    }
    extra = [
        ("L_UpperArm_twist", "L_UpperArm", (0.3, 0.0, 1.42)),
        ("Head_end", "Head_jnt", (0, 0, 1.8)),
        ("IK_foot_L", "COG", (0.1, 0.0, 0.08)),
    ]
    rig = make_rig(
        "COG", ["Spine_01", "Spine_02", "Spine_03"], "Neck_jnt", "Head_jnt", left, right, extra=extra
    )
    mapping = auto_map(rig)
    assert not mapping.missing, mapping.report()
    want = expected("COG", "Neck_jnt", "Head_jnt", left, right, spine=["Spine_01", "Spine_02", "Spine_03"])
    assert mapping.bones == want, mapping.report()


def test_twist_bones_between_limb_bones_are_skipped():
    # Daz-style chains: thigh -> thigh twist -> shin; upper arm -> twist -> forearm.
    left = {
        "thigh": "lThighBend",
        "shin": "lShin",
        "foot": "lFoot",
        "toe": "lToe",
        "clavicle": "lCollar",
        "upperarm": "lShldrBend",
        "forearm": "lForearmBend",
        "hand": "lHand",
    }
    right = side_names({k: v.replace("l", "{s}", 1) for k, v in left.items()}, "r")
    bones = [
        ("hip", None, (0, 0, 1.0)),
        ("pelvis", "hip", (0, 0, 0.98)),
        ("abdomenLower", "hip", (0, 0, 1.05)),
        ("chestUpper", "abdomenLower", (0, 0, 1.3)),
        ("neckLower", "chestUpper", (0, 0, 1.45)),
        ("head", "neckLower", (0, 0, 1.6)),
    ]
    for names, sign in ((left, 1), (right, -1)):
        s = names["thigh"][0]
        bones += [
            (names["thigh"], "pelvis", (sign * 0.1, 0, 0.95)),
            (f"{s}ThighTwist", names["thigh"], (sign * 0.1, 0, 0.7)),
            (names["shin"], f"{s}ThighTwist", (sign * 0.1, 0, 0.5)),
            (names["foot"], names["shin"], (sign * 0.1, 0, 0.08)),
            (f"{s}Metatarsals", names["foot"], (sign * 0.1, -0.05, 0.04)),
            (names["toe"], f"{s}Metatarsals", (sign * 0.1, -0.12, 0.02)),
            (names["clavicle"], "chestUpper", (sign * 0.03, 0, 1.42)),
            (names["upperarm"], names["clavicle"], (sign * 0.18, 0, 1.42)),
            (f"{s}ShldrTwist", names["upperarm"], (sign * 0.3, 0, 1.42)),
            (names["forearm"], f"{s}ShldrTwist", (sign * 0.45, 0, 1.42)),
            (f"{s}ForearmTwist", names["forearm"], (sign * 0.6, 0, 1.42)),
            (names["hand"], f"{s}ForearmTwist", (sign * 0.7, 0, 1.42)),
        ]
    mapping = auto_map(rig_from(bones))
    assert not mapping.missing
    assert mapping.bones["left_hip"] == "lThighBend" and mapping.bones["right_knee"] == "rShin"
    assert mapping.bones["left_shoulder"] == "lShldrBend" and mapping.bones["left_wrist"] == "lHand"
    assert mapping.bones["pelvis"] == "hip"  # the parent, not the child that holds the thighs
    assert mapping.bones["left_foot"] == "lToe"


def test_names_without_side_tokens_are_sided_by_rest_position():
    left = {
        "thigh": "UpperLeg",
        "shin": "LowerLeg",
        "foot": "Foot",
        "toe": "Toes",
        "upperarm": "UpperArm",
        "forearm": "LowerArm",
        "hand": "Hand",
    }
    right = {k: v + ".001" for k, v in left.items()}
    mapping = auto_map(make_rig("Hips", ["Spine", "Chest", "UpperChest"], "Neck", "Head", left, right))
    assert mapping.bones["left_knee"] == "LowerLeg" and mapping.bones["right_knee"] == "LowerLeg.001"
    assert mapping.bones["right_wrist"] == "Hand.001"
    assert not mapping.missing
    assert set(mapping.optional_missing) == {"left_collar", "right_collar"}


# --- spine chains of other lengths -----------------------------------------------------------------


def test_a_five_bone_spine_picks_lowest_middle_and_chest():
    left, right = (
        side_names(CASES["mixamo"]["sides"][0], "Left"),
        side_names(CASES["mixamo"]["sides"][0], "Right"),
    )
    spine = ["Spine", "Spine1", "Spine2", "Spine3", "Spine4"]
    mapping = auto_map(make_rig("Hips", spine, "Neck", "Head", left, right))
    assert mapping.spine_chain == spine
    assert [mapping.bones[r] for r in ("spine1", "spine2", "spine3")] == ["Spine", "Spine2", "Spine4"]
    assert mapping.interpolated == [] and not mapping.missing


def test_a_one_bone_spine_interpolates_the_rest_and_is_still_complete():
    left, right = (
        side_names(CASES["mixamo"]["sides"][0], "Left"),
        side_names(CASES["mixamo"]["sides"][0], "Right"),
    )
    rig = make_rig("Hips", ["Spine"], "Neck", "Head", left, right)
    mapping = require_complete(auto_map(rig))
    assert mapping.bones["spine1"] == "Spine" and mapping.interpolated == ["spine2", "spine3"]
    rest = joint_rest_positions(rig, mapping)
    spine_z = rest[[0, 3, 6, 9, 12], 2]  # pelvis, spine1..3, neck: climbing in order
    assert np.all(np.diff(spine_z) > 0) and np.isfinite(rest).all()
    assert rest[6, 2] > rig.heads[rig.index("Spine")][2]


def test_no_spine_bones_at_all_leaves_all_three_interpolated():
    left, right = (
        side_names(CASES["mixamo"]["sides"][0], "Left"),
        side_names(CASES["mixamo"]["sides"][0], "Right"),
    )
    mapping = auto_map(make_rig("Hips", [], "Neck", "Head", left, right))
    assert mapping.spine_chain == [] and mapping.interpolated == ["spine1", "spine2", "spine3"]
    assert not mapping.missing


# --- overrides, missing roles, reports -------------------------------------------------------------


def test_user_overrides_win_and_are_validated():
    rig, _ = build_case(CASES["mixamo"])
    mapping = auto_map(rig, {"left_wrist": "LeftHandIndex1", "neck": ""})
    assert mapping.bones["left_wrist"] == "LeftHandIndex1" and "neck" not in mapping.bones
    assert "neck" in mapping.optional_missing and "(override)" in mapping.report()
    # the neck is gone, so the spine chain now runs up to the head and includes the Neck bone
    assert mapping.spine_chain[-1] == "Neck"
    # a bone given to another role leaves its old role
    moved = auto_map(rig, {"left_elbow": "LeftHand"})
    assert moved.bones["left_elbow"] == "LeftHand" and moved.bones.get("left_wrist") != "LeftHand"
    with pytest.raises(RigError, match="no bone named 'LeftHnad'.*LeftHand"):
        auto_map(rig, {"left_wrist": "LeftHnad"})
    with pytest.raises(RigError, match="Unknown joint role 'left_hand'"):
        auto_map(rig, {"left_hand": "LeftHand"})
    unmapped = auto_map(rig, {"left_knee": ""})
    assert unmapped.missing == ["left_knee"]
    with pytest.raises(RigError, match="left_knee.*Bone Mapping box"):
        require_complete(unmapped)


def test_a_rig_without_arms_reports_them_missing():
    left = {k: v for k, v in side_names(MIXAMO, "Left").items() if k in ("thigh", "shin", "foot", "toe")}
    right = {k: v for k, v in side_names(MIXAMO, "Right").items() if k in ("thigh", "shin", "foot", "toe")}
    mapping = auto_map(make_rig("Hips", ["Spine", "Spine1", "Spine2"], "Neck", "Head", left, right))
    assert set(mapping.missing) == {
        f"{s}_{j}" for s in ("left", "right") for j in ("shoulder", "elbow", "wrist")
    }
    report = mapping.report()
    assert "left_elbow      -> MISSING" in report and "Bone Mapping box" in report
    with pytest.raises(RigError, match="No bone found for: left_shoulder"):
        require_complete(mapping)


def test_mapping_round_trips_through_a_dict():
    mapping = auto_map(build_case(CASES["smpl"])[0])
    again = BoneMapping.from_dict(mapping.to_dict())
    assert again == mapping and set(again.bones) == set(T2M_JOINT_NAMES)


# --- the rig description ---------------------------------------------------------------------------


def test_rig_description_round_trips_and_gives_geometry():
    rig, _ = build_case(CASES["mixamo"])
    data = rig.to_dict()
    data["rest_matrices"] = data["rest_matrices"].tolist()  # as it may arrive over the wire
    again = RigDescription.from_dict(data)
    np.testing.assert_array_equal(again.rest_matrices, rig.rest_matrices)
    assert again.bone_names == rig.bone_names and again.parents == rig.parents
    i = rig.index("LeftUpLeg")
    assert [rig.bone_names[c] for c in rig.children(i)] == ["LeftLeg"]
    np.testing.assert_allclose(rig.tails[i], rig.heads[rig.index("LeftLeg")], atol=1e-12)
    np.testing.assert_allclose(rig.up_axis, [0, 0, 1])


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: d.update(parents=d["parents"][:-1]), "parents for"),
        (lambda d: d["parents"].__setitem__(1, 999), "invalid parents"),
        (lambda d: d["parents"].__setitem__(0, 1), "parent cycle"),
        (lambda d: d["bone_names"].__setitem__(1, d["bone_names"][0]), "repeats bone names"),
        (lambda d: d["rest_matrices"].__setitem__((0, 0, 0), np.nan), "NaN"),
        (lambda d: d.update(rest_matrices=d["rest_matrices"][:, :3]), "shape"),
        (lambda d: d["rotation_modes"].__setitem__(0, "QUATERNIONS"), "rotation modes"),
        (lambda d: d.update(world_matrix=np.zeros((4, 4))), "zero scale"),
        (lambda d: d.pop("bone_names"), "lacks"),
    ],
)
def test_malformed_rig_descriptions_are_refused(breakage, message):
    data = build_case(CASES["mixamo"])[0].to_dict()
    breakage(data)
    with pytest.raises(RigError, match=message):
        RigDescription.from_dict(data)
