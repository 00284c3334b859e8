"""Entry point for `celery -A reportcycles.worker worker` (`reportcycles worker` does the same)."""
from reportcycles.bootstrap import celery_from_env

app = celery_from_env()
