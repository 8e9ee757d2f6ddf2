"""One error type for everything a user can get wrong.

Every failure the user can act on is a :class:`MoMaskError` carrying the problem and the fix, so the
CLI, the service and the Blender panel all show the same two sentences. Stdlib only.
"""

from __future__ import annotations


class MoMaskError(Exception):
    """A problem the user can fix. ``str(err)`` is ``"<problem> Fix: <fix>"``."""

    #: Stable machine-readable category, sent over the protocol (``error.code``).
    code = "error"

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem.strip()
        self.fix = fix.strip()
        super().__init__(self.problem + (f" Fix: {self.fix}" if self.fix else ""))


class InputError(MoMaskError):
    """A request argument is invalid (prompt, length, range, source motion...)."""

    code = "bad_input"


class CheckpointError(MoMaskError):
    """Weights are missing, partial, corrupt, unsafe or inconsistent with their opt.txt."""

    code = "bad_weights"


class RigError(MoMaskError):
    """The armature cannot be mapped or driven."""

    code = "bad_rig"


class CancelledError(MoMaskError):
    """The user cancelled the job; not a failure."""

    code = "cancelled"

    def __init__(self, problem: str = "Cancelled by the user.", fix: str = "") -> None:
        super().__init__(problem, fix)
