"""Modules both processes load: stdlib + numpy only, loadable by file path from Blender."""
