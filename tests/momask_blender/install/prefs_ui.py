"""What the install scripts in Blender (tests/blender/install_weights.py, install_backend.py) share to
see the preferences as a user would: a layout that records what a draw function shows, and the
message of a refused operator."""

from __future__ import annotations


class Layout:
    """Records what a draw function shows (labels, fields, progress bars, buttons), as text."""

    def __init__(self, shown: list[str]) -> None:
        self.shown = shown

    def box(self) -> Layout:
        return self

    def row(self) -> Layout:
        return self

    def column(self) -> Layout:
        return self

    def label(self, text: str = "", icon: str = "") -> None:
        self.shown.append(f"[{icon}] {text}")

    def prop(self, data, name: str, text: str = "") -> None:
        self.shown.append(f"({name}={getattr(data, name)!r})")

    def progress(self, factor: float = 0.0, type: str = "", text: str = "") -> None:
        self.shown.append(f"[PROGRESS {factor:.2f}] {text}")

    def operator(self, idname: str, icon: str = "", text: str = "") -> None:
        self.shown.append(f"<{idname}>")


def drawn(draw, *args) -> str:
    """What ``draw(layout, *args)`` shows, one line per item."""
    shown: list[str] = []
    draw(Layout(shown), *args)
    return "\n".join(shown)


def refused(call) -> str:
    """The ERROR an operator reported (Blender raises it as RuntimeError to a Python caller)."""
    try:
        result = call()
    except RuntimeError as err:
        return str(err)
    raise AssertionError(f"the operator was not refused (returned {result})")
