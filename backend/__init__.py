"""MoMask inference backend.

Run as ``python -m backend <command>``. Importing this package must stay cheap and must not import
torch: the Blender add-on loads a few stdlib-only modules from here (``backend/portable/``: ``protocol``,
``errors``, ``weights_installer``...) by file path.
"""

__version__ = "0.1.0"
