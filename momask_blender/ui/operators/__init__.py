"""Operators, one module per use case: generating (generate), the running job (results), the backend
process (backend), takes (takes), the bone mapping (mapping) and installing the weights
(install_weights), the backend's environment (install_backend), generating through keyed poses
(targets), Apply Motion and Copy Take (apply_motion), steering and waypoints (steer), sequences,
Continue and Lead-in (compose); what they share is in common."""

from __future__ import annotations

from . import (
    apply_motion,
    backend,
    compose,
    generate,
    install_backend,
    install_weights,
    mapping,
    results,
    steer,
    takes,
    targets,
)

#: Registered in this order (Blender registers each class once; the panel's buttons need them all).
classes = (*generate.classes, *results.classes, *backend.classes, *takes.classes, *mapping.classes,
           *install_weights.classes, *install_backend.classes, *targets.classes, *apply_motion.classes,
           *steer.classes, *compose.classes)
