"""Settings from the environment: a wrong value is a clear ConfigError, never a traceback later."""
import pytest

from infra.settings import ConfigError, Settings


@pytest.mark.parametrize("name, value, said", [
    ("DATABASE_URL", "garbage", "DATABASE_URL must be sqlite:///"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must be sqlite:///"),
    ("TIMEZONE", "Mars/X", "TIMEZONE must be a zone like Europe/Berlin"),
    ("TIMEZONE", "../../etc/passwd", "TIMEZONE must be a zone"),
    ("CELERY_BROKER_URL", "garbage://", "CELERY_BROKER_URL must be redis://"),
    ("CELERY_BROKER_URL", "localhost:6379", "CELERY_BROKER_URL must be redis://"),
])
def test_a_setting_nobody_can_use_is_refused_by_name(monkeypatch, tmp_path, name, value, said):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env()
    assert said in str(refused.value)


def test_an_instance_path_that_is_a_file_is_refused(monkeypatch, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv("INSTANCE_PATH", str(a_file))
    with pytest.raises(ConfigError, match="cannot be used as a folder"):
        Settings.from_env()


@pytest.mark.parametrize("url", ["sqlite:////tmp/x.sqlite", "postgresql+psycopg://u@h/d",
                                 "postgresql://u@h/d"])
def test_the_databases_the_service_runs_on_are_taken(monkeypatch, tmp_path, url):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("SMTP_URL", "smtp://127.0.0.1:25")
    assert Settings.from_env().database_url == url


@pytest.mark.parametrize("name, value", [("SEND_BATCH_SIZE", "0"), ("SEND_BATCH_SIZE", "-5"),
                                         ("SWEEP_INTERVAL_SECONDS", "0"),
                                         ("MAX_SEND_ATTEMPTS", "0")])
def test_a_count_that_would_stop_all_mail_is_refused(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} must be at least 1"):
        Settings.from_env()


def test_a_batch_larger_than_the_lock_table_allows_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("SEND_BATCH_SIZE", "5000")
    with pytest.raises(ConfigError, match="SEND_BATCH_SIZE must be at most 500, not 5000"):
        Settings.from_env()
