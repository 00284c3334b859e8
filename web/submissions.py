"""Coordinators' pages (being built): see the module's owner in the dashboard work."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("submissions", __name__)
