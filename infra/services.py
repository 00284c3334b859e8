"""What the composition root hands to every adapter: settings, database and mail service."""
from __future__ import annotations

from dataclasses import dataclass

from infra.settings import Settings
from workflow.delivery import MailService
from workflow.uow import Database


@dataclass
class Services:
    settings: Settings
    database: Database
    mail: MailService
