"""Celery and APScheduler adapters: ids in, reload, re-check, act, record."""
