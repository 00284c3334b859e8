"""The reportcycles domain: states, schedule rules, policies and use cases.

Nothing in this package imports Flask or Celery; adapters in ``tasks`` and ``web`` call in.
"""
