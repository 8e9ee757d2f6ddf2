"""Checkpoints on disk: the official layout, opt.txt, the installer and random test weights."""
