"""Checkpoints on disk: the official layout, opt.txt and random test weights (the installer is
backend/portable/weights_installer.py)."""
