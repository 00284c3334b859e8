"""Coordinators' sign-in: sessions (Flask-Login), roles, single-use links, accounts (admins).

Every page needs a signed-in person except the partner's link pages, static files, the
language switch, /healthz and the sign-in pages themselves: a guard in front of every request
refuses the rest (deny by default, so a new page cannot be left open by mistake). Viewers may
look but not act: any request other than GET/HEAD/OPTIONS is refused for them with 403, except
signing out and switching the language.
"""
from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from email.utils import make_msgid
from functools import wraps
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from itsdangerous import BadSignature, URLSafeSerializer
from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from infra.mail import format_datetime
from web import reading, services_of
from web.ratelimit import client_key
from workflow.composition import OutgoingMail
from workflow.delivery import PermanentMailError, ServerUnavailable, TransientMailError
from workflow.api_tokens import issue_token, revoke_token, tokens_of
from workflow.errors import InvalidInput, NotFound
from workflow.models import LinkPurpose, Role, utcnow
from workflow.users import (LINK_LIFETIME, MIN_PASSWORD_LENGTH, AccountExists, AccountView,
                            InvalidEmail, IssuedLink, LinkNotUsable, WeakPassword,
                            create_account, find_account, get_account, issue_link,
                            list_accounts, normalise_email, open_link, set_password_with_link,
                            sign_in_with_link, verify_password)

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"static", "public.healthz", "switch_language", "auth.sign_in",
                              "auth.sign_out", "auth.forgot", "auth.link"})
PUBLIC_BLUEPRINTS = frozenset({"partner"})  # the personal link is the partner's key
TOKEN_BLUEPRINTS = frozenset({"api"})  # a bearer token, or a session; else 401, not a redirect
VIEWER_MAY_POST = frozenset({"auth.sign_out", "switch_language"})
SESSION_MAX_AGE = 12 * 3600  # then sign in again, whatever the activity
KNOWN_BROWSER_COOKIE = "rc_known"


class SignedIn(UserMixin):
    """The person behind the session. The id carries the account's session epoch, so a new
    password ends every session signed in with the old one."""

    def __init__(self, account: AccountView):
        self.account = account
        self.email, self.name, self.role = account.email, account.name, account.role
        self.can_act, self.is_admin = account.can_act, account.is_admin

    @property
    def is_active(self):
        return self.account.active

    def get_id(self):
        return f"{self.account.id}.{self.account.session_epoch}"


class SignInLimit:
    """Failed sign-ins counted in the `limits` library's storage (Redis in production, shared
    by every worker; memory in the embedded mode), in fixed windows of ``seconds``.

    Over the limit, no password is even checked (else the limit would not slow guessing).
    Failures from unknown browsers count per client address and per account. A browser that
    signed in to the account before carries a signed cookie and counts on its own: an attacker
    hammering an account elsewhere never locks its owner out of their usual browser, and the
    "forgot password" link always works.
    """

    def __init__(self, storage_url: str, *, per_address: int = 20, per_account: int = 10,
                 per_browser: int = 10, resets_per_address: int = 10,
                 resets_per_account: int = 3, seconds: int = 900):
        options = {} if storage_url.startswith("memory") else {
            "socket_timeout": 2, "socket_connect_timeout": 2}
        self.limiter = FixedWindowRateLimiter(
            storage_from_string(storage_url, wrap_exceptions=True, **options))
        self.address = RateLimitItemPerSecond(per_address, seconds, namespace="sign-in-address")
        self.account = RateLimitItemPerSecond(per_account, seconds, namespace="sign-in-account")
        self.browser = RateLimitItemPerSecond(per_browser, seconds, namespace="sign-in-browser")
        self.reset_address = RateLimitItemPerSecond(resets_per_address, seconds,
                                                    namespace="reset-address")
        self.reset_account = RateLimitItemPerSecond(resets_per_account, seconds,
                                                    namespace="reset-account")

    def wait(self, counters) -> int | None:
        """Seconds until the first exhausted counter of ``counters`` resets, else None."""
        try:
            for item, key in counters:
                if not self.limiter.test(item, key):
                    reset_at = self.limiter.get_window_stats(item, key).reset_time
                    return max(1, math.ceil(reset_at - time.time()))
        except StorageError:
            log.warning("sign-in rate limit storage unavailable; not checked", exc_info=True)
        return None

    def count(self, counters) -> bool:
        """Count one attempt on each counter; False when one of them is now over its limit."""
        allowed = True
        try:
            for item, key in counters:
                allowed = self.limiter.hit(item, key) and allowed
        except StorageError:
            log.warning("sign-in rate limit storage unavailable; not counted", exc_info=True)
        return allowed


def account_key(email: str) -> str:
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]


def init_app(app):
    """Sessions, the guard in front of every request, the sign-in pages and the 403 page."""
    settings = services_of(app).settings
    manager = LoginManager(app)
    manager.session_protection = "basic"
    manager.user_loader(_load_user)
    manager.unauthorized_handler(_to_sign_in)
    app.extensions["sign_in_limit"] = SignInLimit(settings.ratelimit_storage_url)
    # First of all before_request functions: a request nobody may make is refused before
    # anything else looks at it (the CSRF check included).
    app.before_request_funcs.setdefault(None, []).insert(0, _guard)
    app.register_blueprint(bp)
    app.register_error_handler(403, lambda e: (render_template(
        "error.html", title=_("Keine Berechtigung"),
        message=_("Ihre Rolle erlaubt diese Aktion nicht. Bitte wenden Sie sich an die "
                  "Administration.")), 403))


def _load_user(user_id: str):
    try:
        account_id, epoch = (int(part) for part in user_id.split("."))
    except ValueError:
        return None
    with reading() as uow:  # on every signed-in request
        account = get_account(uow, account_id)
    if account is None or not account.active or account.session_epoch != epoch:
        return None
    return SignedIn(account)


def _guard():
    # Load the person now, before a view opens its transaction: the header of every page asks
    # for them, and a second transaction inside the view's would wait for it on SQLite.
    signed_in = current_user.is_authenticated
    endpoint = request.endpoint
    if endpoint is None:  # no such page or method: the 404/405 page answers
        return None
    if endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None
    if request.blueprint in TOKEN_BLUEPRINTS and (
            "Authorization" in request.headers or not signed_in):
        return None  # the API checks the token itself, or answers 401
    if not signed_in:
        return _to_sign_in()
    if time.time() - session.get("signed_in_at", 0) > SESSION_MAX_AGE:
        _sign_out()
        return _to_sign_in()
    if (request.method not in SAFE_METHODS and endpoint not in VIEWER_MAY_POST
            and not current_user.can_act):
        abort(403)
    return None


def _to_sign_in():
    target = request.full_path.rstrip("?") if request.method in SAFE_METHODS else None
    return redirect(url_for("auth.sign_in", next=target if target and target != "/" else None),
                    303)


def login_required(view):
    """The page needs a signed-in person (the guard checks this too; this states it)."""
    @wraps(view)
    def checked(*args, **kwargs):
        if not current_user.is_authenticated:
            return _to_sign_in()
        return view(*args, **kwargs)
    return checked


def role_required(*roles: Role):
    """Only these roles may open the page at all (others get 403)."""
    def decorate(view):
        @wraps(view)
        @login_required
        def checked(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)
        return checked
    return decorate


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (//evil.example, /\\evil.example)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _sign_in(account: AccountView):
    language = session.get("lang")
    session.clear()  # nothing of the anonymous session carries over, the language aside
    if language:
        session["lang"] = language
    login_user(SignedIn(account))
    session["signed_in_at"] = int(time.time())
    log.info("account %s signed in", account.id)


def _sign_out():
    language = session.get("lang")
    logout_user()
    session.clear()
    if language:
        session["lang"] = language


def _page_language() -> str:
    from flask_babel import get_locale
    return str(get_locale() or "de")


def _known_browsers() -> dict:
    serializer = URLSafeSerializer(current_app.secret_key, salt="reportcycles-known-browser")
    try:
        known = serializer.loads(request.cookies.get(KNOWN_BROWSER_COOKIE, ""))
    except BadSignature:
        return {}
    return known if isinstance(known, dict) else {}


def _remember_browser(response, key: str):
    known = _known_browsers()
    known.setdefault(key, secrets.token_hex(8))
    known = dict(list(known.items())[-5:])
    serializer = URLSafeSerializer(current_app.secret_key, salt="reportcycles-known-browser")
    response.set_cookie(KNOWN_BROWSER_COOKIE, serializer.dumps(known), max_age=365 * 86400,
                        path=url_for("auth.sign_in"), httponly=True, samesite="Lax",
                        secure=services_of(current_app).settings.secure_cookies)


def _error_list(errors: dict, order=("email", "password", "password2", "name", "role")):
    return [(field, errors[field]) for field in order if field in errors]


@bp.route("/login", methods=["GET", "POST"])
def sign_in():
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(target, 303)
        return render_template("sign_in.html", next=target, email="", errors={}, error_list=[])
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    errors = {}
    if not email:
        errors["email"] = _("Bitte geben Sie Ihre E-Mail-Adresse ein.")
    if not password:
        errors["password"] = _("Bitte geben Sie Ihr Passwort ein.")
    if errors:
        return render_template("sign_in.html", next=target, email=email, errors=errors,
                               error_list=_error_list(errors)), 422
    limit = current_app.extensions["sign_in_limit"]
    key = account_key(email)
    browser = _known_browsers().get(key)
    counters = ([(limit.browser, f"{key}:{browser}")] if browser else
                [(limit.address, client_key(request.remote_addr or "?")), (limit.account, key)])
    wait = limit.wait(counters)
    if wait is not None:
        return render_template("sign_in.html", next=target, email=email, errors={},
                               error_list=[], wait_minutes=max(1, math.ceil(wait / 60))), \
            429, {"Retry-After": str(wait)}
    with services_of(current_app).database.unit_of_work() as uow:
        account = verify_password(uow, email, password, now=utcnow())
        uow.commit()
    if account is None:
        limit.count(counters)
        errors = {"email": _("E-Mail-Adresse oder Passwort stimmt nicht.")}
        return render_template("sign_in.html", next=target, email=email, errors=errors,
                               error_list=_error_list(errors), wrong=True), 422
    _sign_in(account)
    response = redirect(target, 303)
    _remember_browser(response, key)
    return response


@bp.post("/logout")
def sign_out():
    _sign_out()
    flash(_("Sie sind abgemeldet."), "success")
    return redirect(url_for("auth.sign_in"), 303)


@bp.route("/login/forgot", methods=["GET", "POST"])
def forgot():
    if request.method == "GET":
        return render_template("forgot_password.html", email="", errors={}, error_list=[])
    email = request.form.get("email", "").strip()
    if not email:
        errors = {"email": _("Bitte geben Sie Ihre E-Mail-Adresse ein.")}
        return render_template("forgot_password.html", email=email, errors=errors,
                               error_list=_error_list(errors)), 422
    limit = current_app.extensions["sign_in_limit"]
    by_address = [(limit.reset_address, client_key(request.remote_addr or "?"))]
    wait = limit.wait(by_address)
    if wait is not None:
        return render_template("forgot_password.html", email=email, errors={}, error_list=[],
                               wait_minutes=max(1, math.ceil(wait / 60))), \
            429, {"Retry-After": str(wait)}
    limit.count(by_address)
    # The same answer whether or not the address has an account (it names none); a few mails
    # per account and window at most, so the form cannot flood anyone's inbox.
    if limit.count([(limit.reset_account, account_key(email))]):
        with services_of(current_app).database.unit_of_work() as uow:
            account = find_account(uow, email)
            link = None
            if account is not None and account.active:
                link = issue_link(uow, account.id, LinkPurpose.RESET, now=utcnow(),
                                  actor="forgot-password")
                uow.commit()
        if link is not None:
            send_link_mail(link)
    return render_template("forgot_password.html", email="", errors={}, error_list=[],
                           sent=True, hours=_hours(LinkPurpose.RESET))


def _hours(purpose: LinkPurpose) -> int:
    return int(LINK_LIFETIME[purpose].total_seconds() // 3600)


@bp.route("/login/link/<token>", methods=["GET", "POST"])
def link(token):
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        try:
            purpose, account = open_link(uow, token, now=utcnow())
            if purpose == LinkPurpose.SIGN_IN:
                if request.method != "GET":
                    raise LinkNotUsable("unknown")
                # Printed on the console by `reportcycles run`, never mailed: no scanner opens
                # it, so opening it signs in (the newcomer's one step).
                account = sign_in_with_link(uow, token, now=utcnow())
                uow.commit()
                _sign_in(account)
                return redirect("/", 303)
        except LinkNotUsable as refused:
            return _link_refused(refused)
        if request.method == "GET":
            return render_template("set_password.html", token=token, account=account,
                                   min_length=MIN_PASSWORD_LENGTH,
                                   purpose=str(purpose), errors={}, error_list=[])
        password = request.form.get("password", "")
        errors = {}
        if password != request.form.get("password2", ""):
            errors["password2"] = _("Die beiden Passwörter stimmen nicht überein.")
        else:
            try:
                account = set_password_with_link(uow, token, password, now=utcnow())
            except WeakPassword as weak:
                errors["password"] = _weak_password_message(weak)
            except LinkNotUsable as refused:
                return _link_refused(refused)
        if errors:
            return render_template("set_password.html", token=token, account=account,
                                   min_length=MIN_PASSWORD_LENGTH,
                                   purpose=str(purpose), errors=errors,
                                   error_list=_error_list(errors)), 422
        uow.commit()
    _sign_in(account)
    flash(_("Ihr Passwort ist gespeichert. Sie sind angemeldet."), "success")
    return redirect("/", 303)


def _weak_password_message(weak: WeakPassword) -> str:
    if weak.reason == "short":
        return _("Das Passwort muss mindestens %(num)d Zeichen lang sein.",
                 num=MIN_PASSWORD_LENGTH)
    if weak.reason == "email":
        return _("Das Passwort darf nicht Ihre E-Mail-Adresse sein.")
    return _("Das Passwort ist zu lang.")


def _link_refused(refused: LinkNotUsable):
    if refused.reason == "unknown":
        # Guessed tokens count like guessed partner links (256 random bits: hopeless anyway).
        wait = current_app.extensions["token_limit"].failure(request.remote_addr or "?")
        if wait is not None:
            return render_template("error.html", title=_("Zu viele Anfragen"), message=_(
                "Bitte warten Sie eine Minute und versuchen Sie es dann noch einmal.")), \
                429, {"Retry-After": str(wait)}
    return render_template("link_gone.html"), 404 if refused.reason == "unknown" else 410


def send_link_mail(link: IssuedLink) -> bool:
    """Mail an invitation or reset link straight to the account (not through the partners'
    ledger: no cycle, no ladder); rendered from web/templates/mail/. False if it did not leave."""
    services = services_of(current_app)
    settings = services.settings
    language = link.account.language if link.account.language in ("de", "en") else "de"
    context = {
        "purpose": str(link.purpose), "url": settings.base_url + link.path,
        "account": link.account, "language": language, "hours": _hours(link.purpose),
        "expires": format_datetime(link.expires_at.astimezone(ZoneInfo(settings.timezone)),
                                   language),
        "sign_in_url": settings.base_url + url_for("auth.sign_in"),
    }
    folder = f"mail/account_link/{language}"
    mail = OutgoingMail(
        subject=" ".join(render_template(f"{folder}/subject.txt", **context).split()),
        text=render_template(f"{folder}/body.txt", **context).strip() + "\n",
        html=render_template(f"{folder}/body.html", **context),
        sender=settings.mail_from, to=[link.account.email], cc=[],
        message_id=make_msgid(domain=urlsplit(settings.base_url).hostname
                              or "reportcycles.invalid"),
        language=language, rung=f"account_{link.purpose}")
    try:
        with services.mail.transport.connect() as connection:
            connection.send(mail)
    except (ServerUnavailable, TransientMailError, PermanentMailError) as exc:
        log.warning("account mail (%s) for account %s not sent: %s", link.purpose,
                    link.account.id, exc)
        return False
    return True


ROLE_ORDER = (Role.COORDINATOR, Role.VIEWER, Role.ADMIN)


@bp.get("/users")
@role_required(Role.ADMIN)
def users():
    with services_of(current_app).database.unit_of_work() as uow:
        accounts = list_accounts(uow)
    return render_template("users.html", accounts=accounts)


@bp.route("/users/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def new_user():
    form = request.form if request.method == "POST" else {}
    if request.method == "GET":
        return render_template("user_new.html", form={"role": "coordinator",
                                                      "language": _page_language()},
                               errors={}, error_list=[], roles=ROLE_ORDER)
    errors = {}
    if not form.get("email", "").strip():
        errors["email"] = _("Bitte geben Sie die E-Mail-Adresse ein.")
    if form.get("role") not in {r.value for r in Role}:
        errors["role"] = _("Bitte wählen Sie eine Rolle.")
    link = None
    if not errors:
        with services_of(current_app).database.unit_of_work() as uow:
            try:
                account = create_account(
                    uow, form["email"], form["role"], name=form.get("name", ""),
                    language=form.get("language", "de"), now=utcnow(),
                    actor=f"account:{current_user.account.id}")
                link = issue_link(uow, account.id, LinkPurpose.INVITE, now=utcnow(),
                                  actor=f"account:{current_user.account.id}")
            except AccountExists:
                errors["email"] = _("Für diese Adresse gibt es schon ein Konto.")
            except InvalidEmail:
                errors["email"] = _("Bitte geben Sie eine gültige E-Mail-Adresse ein, z. B. "
                                    "name@example.org.")
            except InvalidInput as exc:
                errors["email"] = str(exc)
            else:
                uow.commit()
    if errors:
        return render_template("user_new.html", form=form, errors=errors,
                               error_list=_error_list(errors), roles=ROLE_ORDER), 422
    _flash_invitation(link)
    return redirect(url_for("auth.users"), 303)


def _flash_invitation(link: IssuedLink):
    if send_link_mail(link):
        flash(ngettext("Einladung an %(email)s geschickt; der Link darin gilt %(num)d Stunde.",
                       "Einladung an %(email)s geschickt; der Link darin gilt %(num)d Stunden.",
                       _hours(link.purpose), email=link.account.email), "success")
    else:
        flash(_("Das Konto %(email)s ist angelegt, aber die Einladung konnte nicht versendet "
                "werden. Bitte versuchen Sie es später mit „Einladung erneut senden“.",
                email=link.account.email), "error")


@bp.post("/users/<int:account_id>/invite")
@role_required(Role.ADMIN)
def resend_invitation(account_id):
    with services_of(current_app).database.unit_of_work() as uow:
        account = get_account(uow, account_id)
        if account is None:
            abort(404)
        if account.has_password:
            flash(_("%(email)s hat schon ein Passwort. Ein vergessenes setzt die Person selbst "
                    "über „Passwort vergessen?“ neu.", email=account.email), "error")
            return redirect(url_for("auth.users"), 303)
        link = issue_link(uow, account.id, LinkPurpose.INVITE, now=utcnow(),
                          actor=f"account:{current_user.account.id}")
        uow.commit()
    _flash_invitation(link)
    return redirect(url_for("auth.users"), 303)


@bp.route("/account/tokens", methods=["GET", "POST"])
@role_required(Role.ADMIN, Role.COORDINATOR)
def api_tokens():
    """One's own tokens for the JSON API; a new token is shown once, on this page only."""
    database = services_of(current_app).database
    issued, error = None, None
    if request.method == "POST":
        with database.unit_of_work() as uow:
            try:
                issued = issue_token(uow, current_user.account.id, request.form.get("name", ""),
                                     now=utcnow(), actor=current_user.email)
            except InvalidInput as exc:
                error = str(exc)
            else:
                uow.commit()
    with database.unit_of_work() as uow:
        tokens = tokens_of(uow, current_user.account.id)
    response = render_template("api_tokens.html", tokens=tokens, issued=issued, error=error,
                               form=request.form)
    if issued is not None:  # the token is on this page: no cache may keep it
        return response, 201, {"Cache-Control": "no-store"}
    return response, 422 if error else 200


@bp.post("/account/tokens/<int:token_id>/revoke")
@role_required(Role.ADMIN, Role.COORDINATOR)
def revoke_api_token(token_id: int):
    with services_of(current_app).database.unit_of_work() as uow:
        try:
            token = revoke_token(uow, current_user.account.id, token_id, now=utcnow(),
                                 actor=current_user.email)
        except NotFound:
            abort(404)
        uow.commit()
    flash(_("Das Token „%(name)s“ ist widerrufen.", name=token.name), "success")
    return redirect(url_for("auth.api_tokens"), 303)
