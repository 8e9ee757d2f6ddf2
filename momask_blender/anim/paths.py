"""A curve object as the path a take's root follows: its evaluated shape sampled densely in world space
and projected on the ground (docs/protocol.md "Steering": ``path.points``).

The curve is read as Blender evaluates it (``Object.to_mesh`` of the evaluated object: Bezier, poly and
NURBS splines at their own resolution, modifiers included), in world space (``matrix_world``), walked in
the spline's order along its edges, put on the ground (z = 0: the backend uses the ground projection
only) and resampled so no step is longer than :data:`SPACING` (the curve's own points, a polyline's
corners among them, are kept exactly). A curve that is no single line, or is shorter than
:data:`MIN_LENGTH`, is refused with the fix.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..remote.client import load_backend_module
from .armature import MoMaskError

messages = load_backend_module("messages")

#: Longest step between two path points sent (metres): dense enough that the polyline is the curve.
SPACING = 0.02
#: A shorter path has no direction to follow.
MIN_LENGTH = 0.01


def evaluated_polyline(obj) -> np.ndarray:
    """The curve's evaluated vertices in order along it (n, 3), world space; a closed curve repeats
    its first point at the end."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        if mesh is None or len(mesh.vertices) == 0:
            raise MoMaskError(f"The curve '{obj.name}' has no points.",
                              "Draw the path with at least two points (Add > Curve > Path or Bezier).")
        if len(mesh.polygons):
            raise MoMaskError(f"The curve '{obj.name}' has a bevel or an extrusion, so it is a surface, not "
                              "a line.", "Set its Geometry > Extrude and Bevel Depth to 0 (and no Bevel "
                              "Object), or pick a plain curve.")
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3)
        edges = np.empty(len(mesh.edges) * 2, dtype=np.int64)
        mesh.edges.foreach_get("vertices", edges)
        edges = edges.reshape(-1, 2)
        world = np.array(obj.matrix_world, dtype=np.float64)
    finally:
        evaluated.to_mesh_clear()
    order = _walk(len(co), edges, obj.name)
    points = co[order] @ world[:3, :3].T + world[:3, 3]
    return points


def _walk(count: int, edges: np.ndarray, name: str) -> list[int]:
    """The vertices in order along the single line the edges make (closed: back to the start)."""
    if count == 1:
        return [0]
    neighbours: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        if a != b:
            neighbours[a].append(int(b))
            neighbours[b].append(int(a))
    if any(len(n) > 2 for n in neighbours):
        raise MoMaskError(f"The curve '{name}' branches, so it is no single path.",
                          "Use a curve with one spline that does not branch.")
    ends = [i for i, n in enumerate(neighbours) if len(n) == 1]
    start = ends[0] if ends else 0
    order, previous = [start], -1
    while True:
        here = order[-1]
        step = [n for n in neighbours[here] if n != previous]
        if not step or (step[0] == start):
            if step and step[0] == start:
                order.append(start)          # closed: round to the start again
            break
        previous = here
        order.append(step[0])
    if len(set(order)) != count:
        raise MoMaskError(f"The curve '{name}' has separate parts (several splines); a path is one line.",
                          "Keep one spline in the curve (separate the others: Edit Mode > P), or join them.")
    return order


def ground_path(obj, spacing: float = SPACING) -> np.ndarray:
    """The path points (n, 3) sent for curve ``obj``: world space, on the ground, no step above
    ``spacing`` (more when a very long curve would exceed the protocol's point count)."""
    if obj is None or obj.type != "CURVE":
        raise MoMaskError("No path curve is picked.", "Pick a curve object in Follow Path (or untick it).")
    points = evaluated_polyline(obj)
    points[:, 2] = 0.0
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-9])           # repeated points carry no direction
    points, steps = points[keep], steps[keep[1:]]
    length = float(steps.sum())
    if len(points) < 2 or length < MIN_LENGTH:
        what = "one point" if len(points) < 2 else f"{length * 100:.1f} cm"
        raise MoMaskError(f"The path curve '{obj.name}' is {what} long on the ground; it has no direction "
                          "to follow.", "Draw the path with two or more points apart on the ground plane "
                          "(a curve seen only from the side has no ground length).")
    most = int(messages.BOUNDS["path_points"].high)
    spacing = max(spacing, length / (most - len(points)))
    out = [points[:1]]
    for a, b, step in zip(points[:-1], points[1:], steps, strict=True):
        pieces = max(1, int(np.ceil(step / spacing)))
        t = np.arange(1, pieces + 1)[:, None] / pieces
        out.append(a + t * (b - a))
    return np.concatenate(out)


def path_length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points[:, :2], axis=0), axis=1).sum())
