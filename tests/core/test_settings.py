"""One settings module: every environment variable is read in billing_core/settings.py and listed in the README."""

from __future__ import annotations

import re

import pytest

from billing_core import settings
from billing_core.database import PROJECT_ROOT
from billing_core.errors import InvalidInput

# the product's own code: what runs in the app, the CLI and the launch scripts (tests and benches set variables)
PRODUCT_FILES = ["app.py", "start.sh", "test.sh"]
PRODUCT_FOLDERS = ["billing_core", "billing_demo", "pages", "api"]
ENV_READ = re.compile(r"os\.environ|os\.getenv|getenv\(")


def _product_sources() -> list:
    files = [PROJECT_ROOT / name for name in PRODUCT_FILES if (PROJECT_ROOT / name).is_file()]
    for folder in PRODUCT_FOLDERS:
        files += sorted((PROJECT_ROOT / folder).rglob("*.py"))
    return files


def test_only_the_settings_module_reads_the_environment():
    readers = [
        str(path.relative_to(PROJECT_ROOT))
        for path in _product_sources()
        if path.suffix == ".py" and path.name != "settings.py" and ENV_READ.search(path.read_text())
    ]
    assert readers == []


def test_every_variable_the_scripts_read_is_a_setting():
    names = {variable.name for variable in settings.VARIABLES}
    for script in ("start.sh", "test.sh"):
        used = set(re.findall(r"\$\{?(BILLING_\w+|DATABASE_URL)", (PROJECT_ROOT / script).read_text()))
        assert used <= names, script


def test_the_readme_configuration_table_lists_every_variable():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(variable.name for variable in settings.VARIABLES)


def test_values_are_read_on_each_call_and_an_empty_value_is_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "   ")
    assert settings.database_url() is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@h/db")
    assert settings.database_url() == "postgresql://x@h/db"
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "data"))
    assert settings.data_dir() == (tmp_path / "data").resolve()
    monkeypatch.delenv("BILLING_DATA_DIR")
    assert settings.data_dir() == PROJECT_ROOT / ".billing-data"  # a checkout keeps its data beside the code
    monkeypatch.delenv("BILLING_DEBUG", raising=False)
    assert settings.debug() is False
    monkeypatch.setenv("BILLING_DEBUG", "1")
    assert settings.debug() is True


def test_numbers_are_checked_with_a_message_naming_the_variable(monkeypatch):
    monkeypatch.delenv("BILLING_LOGIN_SLEEP_SECONDS", raising=False)
    assert settings.login_sleep_seconds() == 0.0
    monkeypatch.setenv("BILLING_LOGIN_SLEEP_SECONDS", "0.7")
    assert settings.login_sleep_seconds() == 0.7
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv("BILLING_LOGIN_SLEEP_SECONDS", bad)
        with pytest.raises(InvalidInput, match="BILLING_LOGIN_SLEEP_SECONDS"):
            settings.login_sleep_seconds()
    monkeypatch.delenv("BILLING_PORT", raising=False)
    assert settings.port() == 8501
    monkeypatch.setenv("BILLING_PORT", "70000")
    with pytest.raises(InvalidInput, match="BILLING_PORT"):
        settings.port()


def test_a_short_cookie_key_is_refused(monkeypatch):
    monkeypatch.setenv("BILLING_COOKIE_KEY", "short")
    with pytest.raises(InvalidInput, match="too short"):
        settings.cookie_key()
    monkeypatch.setenv("BILLING_COOKIE_KEY", " " + "k" * 40 + " ")
    assert settings.cookie_key() == "k" * 40
