"""SMTP settings as operators write them: ordinary passwords, the usual ports, no clear-text login."""
import pytest

from infra.settings import ConfigError, SmtpConfig


def test_a_password_with_at_and_hash_is_kept_whole_when_given_as_parts():
    config = SmtpConfig.from_parts(host="mail.example.org", port="587", user="berichte@example.org",
                                   password="p@ss#w0rd")
    assert (config.host, config.port, config.user, config.password) == (
        "mail.example.org", 587, "berichte@example.org", "p@ss#w0rd")


def test_a_percent_encoded_password_in_smtp_url_is_decoded():
    config = SmtpConfig.from_url("smtp://berichte%40example.org:p%40ss%23w0rd@mail.example.org:587")
    assert config.user == "berichte@example.org" and config.password == "p@ss#w0rd"
    assert config.host == "mail.example.org" and config.starttls


def test_an_unencoded_hash_in_smtp_url_is_a_clear_error_not_a_wrong_host():
    with pytest.raises(ConfigError, match="percent-encoded"):
        SmtpConfig.from_url("smtp://user:p@ss#w0rd@mail.example.org:587")


def test_port_587_uses_starttls_and_465_implicit_tls_by_default():
    assert SmtpConfig.from_parts(host="h", port=587, user=None, password=None).starttls
    tls = SmtpConfig.from_parts(host="h", port=465, user="u", password="p")
    assert tls.scheme == "smtps" and not tls.starttls and tls.encrypted
    assert SmtpConfig.from_url("smtps://u:p@h").port == 465


def test_starttls_can_be_switched_off_on_587_only_explicitly():
    assert not SmtpConfig.from_parts(host="h", port=587, user=None, password=None,
                                     starttls="0").starttls


def test_a_password_is_never_sent_in_clear_text_unless_allowed():
    with pytest.raises(ConfigError, match="unencrypted"):
        SmtpConfig.from_parts(host="h", port=25, user="u", password="p")
    with pytest.raises(ConfigError, match="SMTP_ALLOW_PLAINTEXT"):
        SmtpConfig.from_url("smtp://u:p@h:25")
    allowed = SmtpConfig.from_parts(host="h", port=25, user="u", password="p",
                                    allow_plaintext="1")
    assert allowed.allow_plaintext_auth and not allowed.encrypted


def test_no_login_needs_no_encryption():
    assert SmtpConfig.from_url("smtp://relay.internal:25").user is None


def test_descriptions_never_show_the_password():
    config = SmtpConfig.from_parts(host="h", port=587, user="u", password="geheim")
    assert "geheim" not in config.describe() and "geheim" not in repr(config)


def test_bad_flags_and_ports_are_named():
    with pytest.raises(ConfigError, match="SMTP_STARTTLS"):
        SmtpConfig.from_parts(host="h", port=587, user=None, password=None, starttls="vielleicht")
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        SmtpConfig.from_parts(host="h", port="abc", user=None, password=None)
