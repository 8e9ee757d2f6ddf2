"""Text to motion: the MoMask pipeline, its samplers and the fast transformer forward."""
