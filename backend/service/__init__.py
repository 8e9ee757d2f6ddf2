"""`python -m backend serve`: the NDJSON transport and one module per request."""
