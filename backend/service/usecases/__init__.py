"""One module per request type: each ``run(request, job, state)`` returns the result's ``data``."""
