"""reportcycles' entry points: the command line, the composition root, WSGI and Celery apps."""
