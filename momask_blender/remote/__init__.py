"""Talking to the backend process: the client and the jobs that run requests off the main thread."""
