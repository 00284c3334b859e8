"""Coordinators' set-up pages (being built): cycles before they open, partners, report forms."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("setup", __name__)
