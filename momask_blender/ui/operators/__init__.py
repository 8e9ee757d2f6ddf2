"""Operators, one module per use case: generating (generate), the running job (results), the backend
process (backend), takes (takes), the bone mapping (mapping) and installing the weights
(install_weights) and the backend's environment (install_backend); what they share is in common."""

from __future__ import annotations

from . import backend, generate, install_backend, install_weights, mapping, results, takes

#: Registered in this order (Blender registers each class once; the panel's buttons need them all).
classes = (*generate.classes, *results.classes, *backend.classes, *takes.classes, *mapping.classes,
           *install_weights.classes, *install_backend.classes)
