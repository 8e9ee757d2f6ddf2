"""Steering a take in space (docs/retargeting.md §11): follow a path, pass waypoints at their frames,
and move the root's travel onto a root bone or the armature object.

The path and waypoint warps work on the 22 generated joints (Y up, metres, HumanML3D axes) *before*
the rig is solved, so the body's own motion is untouched and foot locking (``footlock.py``) re-pins
the feet afterwards:

1. **Decompose** the clip into a travel frame and the body's local motion: the travel ``c(t)`` is the
   pelvis' ground track low-passed over about one gait cycle (the sway stays in the local motion),
   ``s(t)`` its arc length; the heading is either the body's facing (hip and shoulder lines) or the
   travel direction, both smoothed.
2. **Re-time along the route** (the path's ground projection, or a smooth curve through the
   waypoints): the root goes to route arc length ``σ(t) = g(s(t))``: ``g`` is the identity (keep the
   speed), a scale (fit the duration) or a monotone C¹ cubic through the waypoints' knots, so the
   strides keep their timing and the root its continuous velocity.
3. **Re-place** every joint rigidly per frame: ``x' = P(σ) + R_y(φ(σ) − heading(t)) · (x − c(t))``,
   ``P`` the route point and ``φ`` its (corner-smoothed) tangent heading; heights are unchanged.

Root-motion extraction (:func:`extract_root`) works on the solved rig instead, in armature space.
numpy only, like the rest of ``backend/retarget`` (Blender's Python can run it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.motion.skeleton import T2M_JOINT_INDEX as J
from backend.portable.errors import InputError, RigError
from backend.portable.quaternion import matrix_to_quat, qcontinuous
from backend.retarget.geometry import cross, dot, rotate, unit
from backend.retarget.rig_setup import RigSetup, SourceToRig

#: Gaussian width (s) of the travel low-pass: one gait cycle is about 1 s; σ = 0.25 s keeps 29 % of a
#: 1 Hz sway in the travel, so the pelvis keeps most of its own sway around the route.
TRAVEL_SMOOTHING_S = 0.25
#: Gaussian width (s) of the heading low-pass (the hips yaw ±5–10° with every step).
HEADING_SMOOTHING_S = 0.25
#: Gaussian width (s) of the travel-direction low-pass (applied to the velocity vector).
DIRECTION_SMOOTHING_S = 0.5
#: Gaussian width (s) of the speed-weighted low-pass of the body's turn (:func:`steady_turn`).
TURN_SMOOTHING_S = 0.5
TURN_WEIGHT_FLOOR = 0.05         # m/s: frames standing still still weigh a little
#: Below this travel speed (source m/s) a frame's travel direction is not trusted (interpolated).
MIN_TRAVEL_SPEED = 0.15
#: A motion whose mean travel speed is below this (source m/s) "does not travel" (a wave, a dance).
STATIONARY_SPEED = 0.15
#: Half-width (source metres) of the tangent smoothing along the route: a 90° corner turns the body
#: over about 0.6 m (a step or two) while the root still passes the corner itself.
TANGENT_SMOOTHING_M = 0.3
#: The fastest a waypoint leg may ask for, in source (human) metres per second: a run; a rig's own
#: limit is this scaled by its size (leg length against HumanML3D's).
MAX_HUMAN_SPEED = 6.0
#: Pseudo arc length per second added to the travel so ``g`` stays a function where the motion stands.
CREEP_SPEED = 0.02
#: Stride changes beyond ±25 % are reported.
STRIDE_WARNING = 0.25
MIN_PATH_LENGTH = 0.01           # world metres
MAX_PATH_LENGTH = 10_000.0       # metres on the ground: the route is resampled every ROUTE_STEP
ROUTE_STEP = 0.01                # source metres between resampled route points


# --- 1-D helpers ---------------------------------------------------------------------------------------

def gaussian_smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian low-pass along axis 0 with odd reflection at the ends (a straight line stays straight)."""
    if sigma_frames <= 0 or len(x) < 3:
        return np.array(x, dtype=np.float64)
    radius = int(min(np.ceil(3 * sigma_frames), len(x) - 1))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    k /= k.sum()
    head = 2 * x[:1] - x[1:radius + 1][::-1]
    tail = 2 * x[-1:] - x[-radius - 1:-1][::-1]
    padded = np.concatenate([head, x, tail])
    out = np.zeros_like(x, dtype=np.float64)
    for i, w in enumerate(k):
        out += w * padded[i:i + len(x)]
    return out


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson slopes of the monotone C¹ cubic through increasing knots ``(x, y)``."""
    h, delta = np.diff(x), np.diff(y) / np.diff(x)
    m = np.zeros_like(y)
    if len(x) == 2:
        return np.full_like(y, delta[0])
    for i in range(1, len(x) - 1):
        if delta[i - 1] * delta[i] > 0:
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            m[i] = (w1 + w2) / (w1 / delta[i - 1] + w2 / delta[i])
    for i, (d0, d1, h0, h1) in ((0, (delta[0], delta[1], h[0], h[1])),
                                (-1, (delta[-1], delta[-2], h[-1], h[-2]))):
        end = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(end) != np.sign(d0):
            end = 0.0
        elif np.sign(d0) != np.sign(d1) and abs(end) > abs(3 * d0):
            end = 3 * d0
        m[i] = end
    return m


def hermite(x: np.ndarray, y: np.ndarray, m: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The cubic Hermite spline through ``(x, y)`` with slopes ``m``, at ``at`` (linear beyond the ends,
    with the end slopes)."""
    at = np.asarray(at, np.float64)
    i = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    tc = np.clip((at - x[i]) / h, 0, 1)
    h00, h10 = 2 * tc ** 3 - 3 * tc ** 2 + 1, tc ** 3 - 2 * tc ** 2 + tc
    h01, h11 = -2 * tc ** 3 + 3 * tc ** 2, tc ** 3 - tc ** 2
    value = h00 * y[i] + h10 * h * m[i] + h01 * y[i + 1] + h11 * h * m[i + 1]
    value = np.where(at < x[0], y[0] + m[0] * (at - x[0]), value)
    return np.where(at > x[-1], y[-1] + m[-1] * (at - x[-1]), value)


def heading_of(v: np.ndarray) -> np.ndarray:
    """Yaw (radians) of horizontal source vectors (x, z): 0 faces +Z, π/2 faces +X."""
    return np.arctan2(v[..., 0], v[..., 1])


def yaw_rotate(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Horizontal vectors (..., 2) as (x, z) turned by ``angle`` about +Y (heading increases)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1]], axis=-1)


# --- the route -----------------------------------------------------------------------------------------

@dataclass
class Route:
    """A ground polyline in source space (x, z), resampled every :data:`ROUTE_STEP` by arc length,
    with a corner-smoothed tangent heading per sample."""

    points: np.ndarray                         # (n, 2)
    arc: np.ndarray = field(init=False)        # (n,)
    heading: np.ndarray = field(init=False)    # (n,) smoothed tangent yaw, unwrapped

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, np.float64)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=-1)
        keep = np.concatenate([[True], seg > 1e-9])
        pts = pts[keep]
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=-1))])
        if arc[-1] < ROUTE_STEP:      # one point: no direction to walk in, and no sample spacing
            raise InputError(f"The route the root should follow is {arc[-1] * 100:.2f} cm long on the "
                             "ground (one waypoint where the take starts, or waypoints on one spot).",
                             "Place the waypoints apart from each other and from the take's start, add "
                             "a second waypoint, or pick a path that runs along the ground.")
        if arc[-1] > MAX_PATH_LENGTH:  # waypoints far apart, or a path on a tiny rig (source metres)
            raise InputError(f"The route the root should follow is {arc[-1] / 1000:.1f} km long in the "
                             f"motion's metres; at most {MAX_PATH_LENGTH / 1000:.0f} km is followed.",
                             "Place the waypoints closer together, or pick a shorter path.")
        count = max(int(np.ceil(arc[-1] / ROUTE_STEP)) + 1, 2)
        s = np.linspace(0.0, arc[-1], count)
        self.points = np.stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])], axis=-1)
        self.arc = s
        tangent = np.gradient(self.points, axis=0)
        tangent = unit(tangent)
        width = max(int(round(TANGENT_SMOOTHING_M / max(s[1] - s[0], 1e-9))), 0)
        if width:
            padded = np.concatenate([np.repeat(tangent[:1], width, 0), tangent,
                                     np.repeat(tangent[-1:], width, 0)])
            sums = np.cumsum(np.concatenate([np.zeros((1, 2)), padded]), axis=0)
            tangent = unit(sums[2 * width + 1:] - sums[:-2 * width - 1])
        self.heading = np.unwrap(heading_of(tangent))

    @property
    def length(self) -> float:
        return float(self.arc[-1])

    def at(self, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (T, 2) and tangent headings (T,) at arc lengths ``sigma``; beyond the ends the route
        continues straight along its end tangent (a motion that overshoots keeps walking)."""
        sigma = np.asarray(sigma, np.float64)
        clipped = np.clip(sigma, 0.0, self.length)
        pts = np.stack([np.interp(clipped, self.arc, self.points[:, k]) for k in range(2)], axis=-1)
        heading = np.interp(clipped, self.arc, self.heading)
        over = sigma - clipped
        direction = np.stack([np.sin(heading), np.cos(heading)], axis=-1)
        return pts + over[:, None] * direction, heading

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Arc length of the route point nearest ``point`` (2,) and the distance to it."""
        d = np.linalg.norm(self.points - point, axis=-1)
        i = int(np.argmin(d))
        return float(self.arc[i]), float(d[i])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance of each point (T, 2) to the polyline (to its segments, not only its samples)."""
        a, b = self.points[:-1], self.points[1:]
        ab = b - a
        t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-18), 0, 1)
        closest = a + t[..., None] * ab
        return np.linalg.norm(points[:, None] - closest, axis=-1).min(axis=1)


def smooth_route_through(points: np.ndarray, samples: int = 40) -> np.ndarray:
    """A C¹ curve (Catmull–Rom) through ``points`` (n, 2), as a dense polyline."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 3:
        return pts
    tangents = np.gradient(pts, axis=0)
    out = [pts[:1]]
    t = np.linspace(0, 1, samples + 1)[1:, None]
    for i in range(len(pts) - 1):
        h00, h10 = 2 * t ** 3 - 3 * t ** 2 + 1, t ** 3 - 2 * t ** 2 + t
        h01, h11 = -2 * t ** 3 + 3 * t ** 2, t ** 3 - t ** 2
        out.append(h00 * pts[i] + h10 * tangents[i] + h01 * pts[i + 1] + h11 * tangents[i + 1])
    return np.concatenate(out)


def waypoint_route(start: np.ndarray, knots: list[Knot]) -> Route:
    """The route without a path: a smooth curve from the clip's ground ``start`` (x, z) through the
    waypoints (one at frame 0 replaces the start)."""
    through = [start] + [k.point for k in knots if k.frame > 1e-9]
    if knots and knots[0].frame <= 1e-9:
        through[0] = knots[0].point
    distinct = [p for i, p in enumerate(through)               # a repeated point adds no leg
                if i == 0 or np.linalg.norm(np.subtract(p, through[i - 1])) > 1e-9]
    return Route(smooth_route_through(np.array(distinct)))


def check_inside_take(knots: list[Knot], frames: int, fps: float) -> None:
    """Refuse a waypoint after the take's last frame (``frames`` at ``fps``, the knots' rate)."""
    if knots and knots[-1].frame > frames - 1 + 1e-6:
        raise InputError(f"The last waypoint is at {knots[-1].frame / fps:.2f} s, after the take's end "
                         f"({(frames - 1) / fps:.2f} s).",
                         "Move the waypoint's frame inside the take, or make the take longer.")


# --- world ↔ source -----------------------------------------------------------------------------------

def world_to_source(points_world: np.ndarray, world_matrix: np.ndarray, transform: SourceToRig) -> np.ndarray:
    """World positions (n, 3; Blender Z up) → source space (n, 3; Y up) of this rig's solve."""
    pts = np.asarray(points_world, np.float64)
    inverse = np.linalg.inv(np.asarray(world_matrix, np.float64))
    armature = pts @ inverse[:3, :3].T + inverse[:3, 3]
    return transform.to_source(armature)


def world_per_source(world_matrix: np.ndarray, transform: SourceToRig) -> float:
    """World metres per source metre horizontally (the rig's scale and the object's)."""
    return float(transform.scale * np.linalg.norm(np.asarray(world_matrix, np.float64)[:3, 0]))


def check_path(points_world: np.ndarray) -> float:
    """The ground length (world metres) of a path; refuses a non-finite, zero-length or longer than
    :data:`MAX_PATH_LENGTH` one (docs/protocol.md, Steering)."""
    pts = np.asarray(points_world, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
        raise InputError(f"The path has shape {pts.shape}; it needs at least two (x, y, z) points.",
                         "Pick a curve with at least two points, or clear the path.")
    if not np.isfinite(pts).all():
        raise InputError("The path's points contain NaN or infinite values.",
                         "Check the curve object (apply its modifiers or pick another curve).")
    length = float(np.linalg.norm(np.diff(pts[:, :2], axis=0), axis=-1).sum())
    if length < MIN_PATH_LENGTH:
        raise InputError(f"The path is {length * 100:.2f} cm long on the ground (a curve of zero length "
                         "or a vertical one).", "Pick a curve that runs along the ground, or clear the path.")
    if length > MAX_PATH_LENGTH:
        raise InputError(f"The path is {length / 1000:.1f} km long on the ground; at most "
                         f"{MAX_PATH_LENGTH / 1000:.0f} km is followed (it is sampled every centimetre).",
                         "Pick a shorter curve, or scale the curve object down.")
    return length


# --- the warp ------------------------------------------------------------------------------------------

@dataclass
class Knot:
    """A waypoint in source terms: the root passes ``point`` (x, z) at source frame ``frame``."""

    frame: float
    point: np.ndarray


@dataclass
class SteerReport:
    path_length: float = 0.0         # world metres of the route
    travelled: float = 0.0           # the motion's own travel, world metres
    covered: float = 0.0             # where along the route the root ends, world metres
    speed: float = 0.0               # the motion's own mean travel speed, world m/s
    seconds_for_path: float | None = None   # the duration that speed needs (None: it does not travel)
    stride_scale: float = 1.0
    root_motion: str = "none"
    pelvis_lowered: float = 0.0      # world metres
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path_length": round(self.path_length, 4), "travelled": round(self.travelled, 4),
                "covered": round(self.covered, 4), "speed": round(self.speed, 4),
                "seconds_for_path": (None if self.seconds_for_path is None
                                     else round(self.seconds_for_path, 3)),
                "stride_scale": round(self.stride_scale, 4),
                "root_motion": self.root_motion, "pelvis_lowered": round(self.pelvis_lowered, 4),
                "warnings": list(self.warnings)}


def travel(joints: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The clip's travel frame: ground track ``c`` (T, 2), its arc length ``s`` (T,), the body's
    smoothed facing and the travel direction (T,) as unwrapped yaws."""
    root = joints[:, J["pelvis"]][:, [0, 2]]
    c = gaussian_smooth(root, TRAVEL_SMOOTHING_S * fps)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=-1))])
    left = (joints[:, J["left_hip"]] - joints[:, J["right_hip"]]
            + joints[:, J["left_shoulder"]] - joints[:, J["right_shoulder"]])
    forward = cross(unit(left), np.array([0.0, 1.0, 0.0]))[:, [0, 2]]
    forward = unit(gaussian_smooth(unit(forward), HEADING_SMOOTHING_S * fps))
    facing = np.unwrap(heading_of(forward))
    # The travel direction: the velocity low-passed as a vector, so slow frames (a pause, a turn on
    # the spot) weigh little and a reversal at walking pace turns over DIRECTION_SMOOTHING_S.
    velocity = gaussian_smooth(np.gradient(c, axis=0) * fps, DIRECTION_SMOOTHING_S * fps)
    speed = np.linalg.norm(velocity, axis=-1)
    moving = speed > MIN_TRAVEL_SPEED
    if moving.sum() >= 2:
        frames = np.arange(len(c))
        direction = np.unwrap(heading_of(velocity[moving]))
        # Keep the travel direction on the facing's side of the circle (no 2π offsets between them).
        offset = np.round((direction - facing[moving]).mean() / (2 * np.pi)) * 2 * np.pi
        moving_dir = np.interp(frames, frames[moving], direction - offset)
    else:
        moving_dir = facing.copy()
    return c, s, facing, moving_dir


def steady_turn(turn: np.ndarray, speed: np.ndarray, fps: float) -> np.ndarray:
    """The turn (T,) applied to the body, low-passed with weights growing with the travel speed: while
    walking it follows the path's tangent closely; where the motion slows down to pivot on the spot
    the path's heading and the body's own turn no longer agree, and cancelling the pivot at once would
    spin the planted feet, so the turn changes there only as fast as the walking frames around allow
    (a slow frame's misalignment costs little sliding: its travel is short)."""
    weight = (speed + TURN_WEIGHT_FLOOR) ** 2
    vectors = np.stack([np.cos(turn), np.sin(turn)], axis=-1) * weight[:, None]
    smooth = gaussian_smooth(vectors, TURN_SMOOTHING_S * fps)
    raw = np.arctan2(smooth[:, 1], smooth[:, 0])
    return turn + (raw - turn + np.pi) % (2 * np.pi) - np.pi      # smoothed, unwrapped like ``turn``


def steer_joints(joints: np.ndarray, fps: float, route: Route | None, knots: list[Knot],
                 timing: str = "keep_speed", facing: str = "tangent", world_scale: float = 1.0,
                 report: SteerReport | None = None, key_fps: float | None = None) -> np.ndarray:
    """``joints`` (T, 22, 3) re-placed along ``route`` (source space) and through ``knots``.

    ``route`` None with knots: a smooth curve from the clip's start through the knots. ``world_scale``
    (world metres per source metre) scales the report and the speed limit; ``key_fps`` is the rate
    errors name frames in. Heights are unchanged; contacts of the unwarped clip stay the contacts
    (the caller locks the feet with them).
    """
    joints = np.asarray(joints, np.float64)
    report = report if report is not None else SteerReport()
    frames = len(joints)
    c, s, body_facing, travel_dir = travel(joints, fps)
    duration = max((frames - 1) / fps, 1e-9)
    own = float(s[-1])
    report.travelled, report.speed = own * world_scale, own / duration * world_scale
    stationary = own / duration < STATIONARY_SPEED
    route = route or waypoint_route(c[0], knots)
    check_inside_take(knots, frames, fps)
    check_waypoint_speeds(route, knots, fps, world_scale, key_fps)
    report.path_length = route.length * world_scale
    report.seconds_for_path = None if stationary else route.length / (own / duration)

    u = s + CREEP_SPEED * np.arange(frames) / fps            # pseudo arc length: strictly increasing
    if knots:
        knot_u, knot_sigma = [0.0], [0.0]
        for k in knots:
            sigma, _ = route.project(k.point)
            if k.frame <= 1e-9:              # a waypoint at the first frame is where the root starts
                knot_sigma[0] = sigma
                continue
            knot_u.append(float(np.interp(k.frame, np.arange(frames), u)))
            knot_sigma.append(sigma)
        if knot_u[-1] < u[-1] - 1e-9:                        # after the last waypoint: the own speed
            knot_u.append(float(u[-1]))
            knot_sigma.append(knot_sigma[-1] + (u[-1] - knot_u[-1]))
        ku, ks = np.array(knot_u), np.array(knot_sigma)
        sigma_t = hermite(ku, ks, pchip_slopes(ku, ks), u)
        report.stride_scale = float((ks[-1] - ks[0]) / max(ku[-1] - ku[0], 1e-9))
        legs = np.diff(ks) / np.diff(ku)                     # each leg's own stride change
        worst = int(np.argmax(np.abs(np.log(np.maximum(legs, 1e-9)))))
        overall_ok = abs(report.stride_scale - 1) <= STRIDE_WARNING
        if not stationary and overall_ok and abs(legs[worst] - 1) > STRIDE_WARNING:
            report.warnings.append(f"Strides change by {100 * (legs[worst] - 1):+.0f}% on the way to "
                                   f"waypoint {worst + 1} to pass it at its frame.")
        if stationary:
            report.warnings.append(
                f"The motion travels {report.travelled:.2f} m in {duration:.1f} s: it does not walk, so "
                "passing the waypoints drags it over the ground. Use a travelling prompt (walk, run).")
    elif timing == "fit_duration" and not stationary:
        report.stride_scale = route.length / own
        sigma_t = s * report.stride_scale
    else:
        if timing == "fit_duration":
            report.warnings.append(
                f"The motion travels {report.travelled:.2f} m in {duration:.1f} s: it does not walk, so it "
                "is not stretched over the path; it stays at the path's start, facing along it. Use a "
                "travelling prompt (walk, run) for a path.")
        sigma_t = s
    if stationary and not knots and timing != "fit_duration":
        report.warnings.append(
            f"The motion travels {report.travelled:.2f} m in {duration:.1f} s: it does not walk, so it "
            "stays near the path's start instead of being dragged along it. Use a travelling prompt "
            "(walk, run) for a path.")
    if abs(report.stride_scale - 1) > STRIDE_WARNING:
        report.warnings.append(f"Strides change by {100 * (report.stride_scale - 1):+.0f}% to fit the "
                               "path or waypoints; feet are re-pinned, but the gait looks "
                               + ("stretched." if report.stride_scale > 1 else "shuffled."))
    end = float(sigma_t[-1])
    report.covered = min(end, route.length) * world_scale
    if not stationary and not knots and timing == "keep_speed":
        if end < route.length * 0.98:
            report.warnings.append(
                f"The motion ends {report.covered:.2f} m along the {report.path_length:.2f} m path; at its "
                f"own speed the whole path needs {report.seconds_for_path:.1f} s.")
        elif end > route.length * 1.02:
            report.warnings.append(
                f"The motion walks {(end - route.length) * world_scale:.2f} m past the path's end (straight "
                f"on); at its own speed the path needs {report.seconds_for_path:.1f} s.")

    point, tangent = route.at(sigma_t)
    own_heading = body_facing if facing == "tangent" else travel_dir
    turn = steady_turn(tangent - own_heading, np.linalg.norm(np.gradient(c, axis=0), axis=-1) * fps, fps)
    out = joints.copy()
    local = joints[..., [0, 2]] - c[:, None]
    out[..., [0, 2]] = point[:, None] + yaw_rotate(local, turn[:, None])
    return out


# --- root motion onto a root bone or the object ---------------------------------------------------------

def root_bone_index(setup: RigSetup, bone: str) -> int | None:
    """The bone that takes the root motion: ``bone`` (must be an ancestor of the pelvis bone), or with
    ``""`` an ancestor named "root" (any case, namespaces ignored); None: none, use the object."""
    pelvis = setup.pelvis
    ancestors = []
    b = int(setup.parents[pelvis])
    while b >= 0:
        ancestors.append(b)
        b = int(setup.parents[b])
    if bone:
        if bone not in setup.names:
            raise RigError(f"The root-motion bone {bone!r} is not a bone of this rig.",
                           "Pick one of the rig's bones (an ancestor of the hips), or choose Object.")
        index = setup.names.index(bone)
        if index not in ancestors:
            raise RigError(f"The root-motion bone {bone!r} is not an ancestor of the hips bone "
                           f"{setup.names[pelvis]!r}, so moving it would not carry the body.",
                           f"Pick a bone above {setup.names[pelvis]!r} in the hierarchy "
                           + (f"({', '.join(repr(setup.names[a]) for a in ancestors)})" if ancestors else
                              "(this rig has none: choose Object)") + ", or choose Object.")
        return index
    for a in ancestors:
        if setup.names[a].split(":")[-1].split("|")[-1].lower() == "root":
            return a
    return None


def check_root_bone(setup: RigSetup, mode: str, bone: str) -> None:
    """Refuse a root-motion bone that cannot carry the hips, before any work."""
    if mode == "root_bone":
        root_bone_index(setup, bone)


def heading_rotation(setup: RigSetup, pelvis_delta: np.ndarray, fps: float) -> np.ndarray:
    """Rotations (T, 3, 3) about the rig's up by the pelvis' smoothed yaw from its rest facing."""
    up, fwd = setup.up, setup.forward
    side = cross(up, fwd)
    f = rotate(pelvis_delta, fwd)
    flat = np.stack([dot(f, fwd), dot(f, side)], axis=-1)
    flat = unit(gaussian_smooth(unit(flat), 2 * HEADING_SMOOTHING_S * fps))
    angle = np.arctan2(flat[:, 1], flat[:, 0])
    # Rodrigues about ``up`` (unit): R = I + sin K + (1 − cos) K².
    k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@dataclass
class ExtractedRoot:
    mode: str                        # "root_bone" | "object"
    bone: int | None                 # the root bone (root_bone mode)
    rotation: np.ndarray             # (T, 3, 3) armature-space rotation of the root's motion
    translation: np.ndarray          # (T, 3) armature-space translation (g)
    centre: np.ndarray               # (3,) the point it turns about (the bone's rest head, or the origin)


def extract_root(setup: RigSetup, d: np.ndarray, root: np.ndarray, mode: str, bone: str, heading: bool,
                 fps: float) -> tuple[np.ndarray, np.ndarray, ExtractedRoot | None]:
    """Move the travel of the pelvis head ``root`` (T, 3) onto a root bone or the object.

    The root motion is ``G(x) = Rg · (x − c) + c + g``: ``Rg`` the pelvis' smoothed yaw (``heading``),
    ``g`` horizontal so the pelvis keeps its rest horizontal offset from the root (ground-projected: the
    root keeps its rest height). Returns the deltas and pelvis head relative to the moving root
    (``Rgᵀ · D``, ``G⁻¹(root)``) and the root's own motion; ``mode`` "root_bone" without a bone
    (``""``) and no "root" ancestor falls back to the object (``ExtractedRoot.mode`` says which).
    """
    index = root_bone_index(setup, bone) if mode == "root_bone" else None
    mode = "root_bone" if index is not None else "object"
    up = setup.up
    centre = setup.rest_head[index] if index is not None else np.zeros(3)
    pelvis = setup.pelvis
    frames = len(root)
    rot = (heading_rotation(setup, d[setup.driven.index(pelvis)], fps) if heading
           else np.broadcast_to(np.eye(3), (frames, 3, 3)).copy())

    def flat(v: np.ndarray) -> np.ndarray:
        return v - dot(v, up)[..., None] * up

    rest_offset = flat(setup.rest_head[pelvis] - centre)
    g = flat(root - centre) - rotate(rot, np.broadcast_to(rest_offset, root.shape))
    inverse = np.swapaxes(rot, -1, -2)
    d_rel = np.matmul(inverse[None], d)
    root_rel = rotate(inverse, root - centre - g) + centre
    return d_rel, root_rel, ExtractedRoot(mode, index, rot, g, centre)


def object_motion(world_matrix: np.ndarray, extracted: ExtractedRoot) -> tuple[np.ndarray, np.ndarray]:
    """The armature object's ``matrix_world`` per frame under the extracted motion: its location (T, 3)
    and rotation as quaternions (T, 4; w x y z, sign-continuous); its scale is unchanged."""
    w0 = np.asarray(world_matrix, np.float64)
    frames = len(extracted.translation)
    g = np.tile(np.eye(4), (frames, 1, 1))
    g[:, :3, :3] = extracted.rotation
    g[:, :3, 3] = extracted.translation + extracted.centre - rotate(extracted.rotation, extracted.centre)
    world = w0 @ g
    rot = world[:, :3, :3] / np.linalg.norm(world[:, :3, :3], axis=1, keepdims=True)
    return world[:, :3, 3], qcontinuous(matrix_to_quat(rot))


def root_bone_keys(setup: RigSetup, extracted: ExtractedRoot) -> tuple[np.ndarray, np.ndarray]:
    """The root bone's pose ``location`` (T, 3) and rotation quaternions (T, 4) (its parents at rest)."""
    b = extracted.bone
    assert b is not None
    rest = setup.rest_rot[b]
    location = extracted.translation @ rest                                  # L.rotᵀ · g
    basis = np.swapaxes(rest, -1, -2) @ extracted.rotation @ rest           # L.rotᵀ · Rg · L.rot
    return location, qcontinuous(matrix_to_quat(basis))


def check_waypoint_speeds(route: Route, knots: list[Knot], fps: float, world_scale: float,
                          key_fps: float | None = None) -> None:
    """Refuse waypoints behind the one before along the route, and legs faster than a human run
    (scaled by the rig's size), before any work. ``fps``: the knots' frame rate; ``key_fps``: the rate
    the user counts frames in (the error names a frame in it)."""
    key_fps = fps if key_fps is None else key_fps
    previous_sigma, previous_frame = 0.0, 0.0
    for i, k in enumerate(knots):
        sigma, _ = route.project(k.point)
        if k.frame <= 1e-9:
            previous_sigma = sigma
            continue
        if i and sigma <= previous_sigma + 1e-6:
            raise InputError(f"Waypoint {i + 1} lies behind waypoint {i} along the path.",
                             "Order the waypoints along the path, or move this one further along it.")
        seconds = (k.frame - previous_frame) / fps
        speed = (sigma - previous_sigma) / seconds
        if speed > MAX_HUMAN_SPEED:
            earliest = np.ceil((previous_frame / fps + (sigma - previous_sigma) / MAX_HUMAN_SPEED) * key_fps)
            what = "the take's start" if i == 0 or previous_frame == 0 else f"waypoint {i}"
            raise InputError(
                f"Waypoint {i + 1} needs {speed * world_scale:.1f} m/s from {what} "
                f"({(sigma - previous_sigma) * world_scale:.2f} m in {seconds:.2f} s); a person on this "
                f"rig manages about {MAX_HUMAN_SPEED * world_scale:.1f} m/s at a run.",
                f"Give waypoint {i + 1} a later frame (at least frame {earliest:.0f} of the take) or move "
                "it closer to the one before.")
        previous_sigma, previous_frame = sigma, k.frame


# --- one request's steering ---------------------------------------------------------------------------

@dataclass
class Steering:
    """What a ``retarget`` section asks (``messages.RetargetSpec``), in the solver's terms: ``path``
    (n, 3) and waypoint positions in world metres (Z up); waypoint ``frames`` in key frames."""

    path: np.ndarray | None = None
    timing: str = "keep_speed"
    facing: str = "tangent"
    waypoint_positions: np.ndarray | None = None      # (n, 3)
    waypoint_frames: np.ndarray | None = None         # (n,)
    root_mode: str = "none"
    root_bone: str = ""
    heading: bool = True
    ground: bool = False

    @property
    def warps(self) -> bool:
        return self.path is not None or self.waypoint_positions is not None

    @property
    def extracts(self) -> bool:
        return self.root_mode in ("root_bone", "object")

    def route_and_knots(self, transform: SourceToRig, world_matrix: np.ndarray, src_fps: float,
                        key_fps: float) -> tuple[Route | None, list[Knot]]:
        route = None
        if self.path is not None:
            route = Route(world_to_source(self.path, world_matrix, transform)[:, [0, 2]])
        knots: list[Knot] = []
        if self.waypoint_positions is not None and self.waypoint_frames is not None:
            src = world_to_source(self.waypoint_positions, world_matrix, transform)
            frames = np.asarray(self.waypoint_frames, np.float64) * (src_fps / key_fps)
            knots = [Knot(float(f), src[i, [0, 2]]) for i, f in enumerate(frames)]
        return route, knots

    def check(self, setup: RigSetup, transform: SourceToRig, world_matrix: np.ndarray, src_fps: float,
              key_fps: float, frames: int | None = None) -> None:
        """Every check that needs only the rig, before any generation: the path's length, In Place with
        a path, the root bone's ancestry, the waypoints' speeds (and frames, given the take's length
        ``frames`` in model frames)."""
        if self.path is not None:
            check_path(self.path)
        if self.root_mode == "in_place" and self.warps:
            raise InputError("A path or waypoints with In Place root motion: the travel along them would "
                             "be dropped again.", "Choose root motion None, Root Bone or Object, or clear "
                             "the path and waypoints.")
        if self.root_mode == "root_bone":
            root_bone_index(setup, self.root_bone)
        route, knots = self.route_and_knots(transform, world_matrix, src_fps, key_fps)
        if frames is not None:
            check_inside_take(knots, frames, src_fps)
        if knots:
            check_waypoint_speeds(route or waypoint_route(np.zeros(2), knots), knots, src_fps,
                                  world_per_source(world_matrix, transform), key_fps)

    def warp(self, joints: np.ndarray, src_fps: float, key_fps: float, transform: SourceToRig,
             world_matrix: np.ndarray, report: SteerReport) -> np.ndarray:
        route, knots = self.route_and_knots(transform, world_matrix, src_fps, key_fps)
        return steer_joints(joints, src_fps, route, knots, self.timing, self.facing,
                            world_per_source(world_matrix, transform), report, key_fps)
