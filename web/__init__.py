"""Flask app factory: one blueprint per audience; views parse, call a use case, redirect."""
from __future__ import annotations

import re
from pathlib import Path

from babel import Locale
from flask import Flask, current_app, g, redirect, render_template, request, session
from flask_babel import Babel
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from infra.services import Services
from infra.settings import Settings
from web.forms import Request
from web.ratelimit import FailedLookupLimit
from workflow.errors import DomainError

csrf = CSRFProtect()
babel = Babel()
LANGUAGES = ("de", "en")
# Parsed once: babel looks for a locale's data file on disk each time it parses its name.
LOCALES = {language: Locale.parse(language) for language in LANGUAGES}


LOCAL_PATH = re.compile(r"/(?![/\\])[\x21-\x7e]*")  # this site only: no scheme, host or spaces


def local_path(target: str | None) -> str:
    """Where to go back to after a form: a path of this site, else the start page."""
    return target if target and LOCAL_PATH.fullmatch(target) else "/"


class IdConverter(IntegerConverter):
    """``<int:…>`` in this app's URLs is always a row's id, a PostgreSQL ``integer``: a larger
    number names no row and answers 404 without reaching the database (SQLite cannot even
    bind a number beyond 64 bits)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", ID_MAX)
        super().__init__(url_map, *args, **kwargs)


ID_MAX = 2**31 - 1
ID_TEXT = re.compile(r"[0-9]{1,10}")


def parse_id(text: str | None) -> int | None:
    """An id typed into a form field or a query: digits 0-9 naming a possible row, else None
    (a superscript two passes str.isdigit but not int(), and 11 digits overflow PostgreSQL)."""
    if text is None or not ID_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if value <= ID_MAX else None


def select_locale():
    """The page's language: chosen on the page, else the contact's, else German."""
    chosen = session.get("lang")
    if chosen not in LANGUAGES:
        chosen = getattr(g, "contact_language", None) or "de"
    return LOCALES.get(chosen, chosen)


def create_app(settings: Settings, services: Services, *, show_mailbox: bool = False) -> Flask:
    """The web app. ``show_mailbox``: the embedded demo's /mailbox page of the local Maildir."""
    from web import (actions, api, auth, exports, mailbox, overview, partner, privacy, public,
                     setup, submissions)

    app = Flask(__name__)
    app.request_class = Request
    app.url_map.converters["int"] = IdConverter  # before any route is added
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=12 * 1024 * 1024,
                      WTF_CSRF_TIME_LIMIT=None, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.secure_cookies)
    app.extensions["reportcycles"] = services
    app.teardown_appcontext(_close_reads)
    app.extensions["token_limit"] = FailedLookupLimit(settings.ratelimit_storage_url)
    if settings.trusted_proxies > 0:
        # Only behind that many proxies do X-Forwarded-For/-Proto name the client and the scheme;
        # without them the headers are ignored, or a forged one would give a link guesser a new
        # address per request. The host is not taken: links are built from BASE_URL.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,
                                x_proto=settings.trusted_proxies)
    csrf.init_app(app)
    auth.init_app(app)  # sign-in required everywhere but the partner's link pages
    babel.init_app(app, locale_selector=select_locale, default_locale="de",
                   default_translation_directories=str(Path(__file__).parent / "translations"))

    @app.post("/language")
    def switch_language():
        language = request.form.get("lang")
        if language in LANGUAGES:
            session["lang"] = language
        return redirect(local_path(request.form.get("next")), 303)
    from flask_babel import get_locale

    from workflow.report_form import display
    from web.labels import page_date, page_datetime, page_gettext, partner_labels
    app.context_processor(page_gettext)
    app.jinja_env.globals.update(get_locale=get_locale, display=display,
                                 partner_labels=partner_labels)
    app.jinja_env.filters.update(fdate=page_date, local_datetime=page_datetime)
    app.register_blueprint(public.bp)
    app.register_blueprint(overview.bp)
    app.register_blueprint(submissions.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(setup.bp)
    app.register_blueprint(privacy.bp)
    app.register_blueprint(partner.bp)
    if show_mailbox:
        if settings.maildir is None:
            raise ValueError("the mailbox page needs the embedded Maildir (SMTP_URL unset)")
        app.register_blueprint(mailbox.bp)

    @app.after_request
    def security_headers(response):
        # The personal link is in the URL: it must not leak to other sites via Referer.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def error_page(status, title, message):
        if request.path.startswith("/api/"):  # a program asked: it gets JSON it can read
            return api.json_error(status)
        return render_template("error.html", title=title, message=message), status

    app.register_error_handler(404, lambda e: error_page(
        404, _("Seite nicht gefunden"), _("Diese Adresse gibt es nicht. Bitte prüfen Sie den "
                                          "Link.")))
    app.register_error_handler(405, lambda e: error_page(
        405, _("Nicht erlaubt"), _("Diese Aktion ist hier nicht möglich.")))
    app.register_error_handler(413, lambda e: error_page(
        413, _("Zu groß"), _("Die gesendeten Daten sind zu groß (höchstens 12 MB auf einmal). "
                             "Ihr gespeicherter Entwurf ist unverändert.")))
    app.register_error_handler(CSRFError, lambda e: error_page(
        400, _("Formular abgelaufen"), _("Das Formular war abgelaufen oder ungültig. Bitte laden "
                                         "Sie die Seite neu und versuchen Sie es noch einmal.")))
    app.register_error_handler(InternalServerError, lambda e: error_page(
        500, _("Ein Fehler ist aufgetreten"), _("Das hat nicht geklappt. Der Fehler liegt bei uns "
                                                "und ist protokolliert; bitte versuchen Sie es "
                                                "später noch einmal.")))
    app.register_error_handler(DomainError, lambda e: error_page(
        400, _("Nicht möglich"), str(e)))
    return app


def services_of(app: Flask):
    return app.extensions["reportcycles"]


def reading():
    """A unit of work for one single-query read in this request (``SharedReads``). The
    request's reads share one connection, given back when the request ends."""
    shared = g.get("shared_reads")
    if shared is None:
        shared = g.shared_reads = services_of(current_app).database.shared_reads()
    return shared()


def _close_reads(_error=None):
    shared = g.pop("shared_reads", None)
    if shared is not None:
        shared.close()
