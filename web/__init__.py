"""Flask app factory: one blueprint per audience; views parse, call a use case, redirect."""
from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect

from reportcycles.settings import Settings

csrf = CSRFProtect()


def create_app(settings: Settings | None = None, services=None) -> Flask:
    from reportcycles.bootstrap import build
    from web import mailbox, partner, public

    settings = settings or Settings.from_env()
    if services is None:
        services = build(settings, "inline" if settings.embedded else "celery")
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=2 * 1024 * 1024,
                      WTF_CSRF_TIME_LIMIT=None, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax")
    app.extensions["reportcycles"] = services
    csrf.init_app(app)
    app.register_blueprint(public.bp)
    app.register_blueprint(partner.bp)
    if settings.maildir is not None:
        app.register_blueprint(mailbox.bp)

    @app.after_request
    def security_headers(response):
        # The personal link is in the URL: it must not leak to other sites via Referer.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def error_page(status, title, message):
        return render_template("error.html", title=title, message=message), status

    app.register_error_handler(404, lambda e: error_page(
        404, "Seite nicht gefunden", "Diese Adresse gibt es nicht. Bitte prüfen Sie den Link."))
    app.register_error_handler(405, lambda e: error_page(
        405, "Nicht erlaubt", "Diese Aktion ist hier nicht möglich."))
    app.register_error_handler(413, lambda e: error_page(
        413, "Zu groß", "Die gesendeten Daten sind zu groß."))
    app.register_error_handler(CSRFError, lambda e: error_page(
        400, "Formular abgelaufen", "Das Formular war abgelaufen oder ungültig. Bitte laden Sie "
        "die Seite neu und versuchen Sie es noch einmal."))
    return app


def services_of(app: Flask):
    return app.extensions["reportcycles"]
