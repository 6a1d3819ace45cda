"""A non-editable install ships the SQL: the wheel holds sql/ (as billing_core/sql) and the demo package, and
its `billing db migrate` migrates an empty database from a folder that holds no checkout.

The wheel is built by pip from a copy of the files pyproject.toml packages (so the checkout gets no build/
folder), with the build backend pyproject.toml names (pip gets it from the configured package index; without
one the test is skipped, saying so), then unpacked as pip would install it (pure Python: the files as they
are) and run with only that folder on PYTHONPATH (10 to 20 s in all).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest

from billing_core.database import PROJECT_ROOT

BACKEND_MISSING = "satisfies the requirement setuptools"  # pip's words when no index offers the backend
SHIPPED = ["pyproject.toml", "README.md", "billing_core", "billing_demo", "api", "sql"]
# what the console script `billing` runs (pip writes the same two lines); prints where the SQL came from first
BILLING = (
    "import sys\nfrom billing_core import migrations\nprint('sql from', migrations.SQL_DIR)\n"
    "from billing_core.cli import main\nsys.exit(main())"
)


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for name in SHIPPED:
        if (PROJECT_ROOT / name).is_dir():
            shutil.copytree(PROJECT_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    out = tmp_path / "wheel"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    if built.returncode != 0 and BACKEND_MISSING in built.stdout + built.stderr:
        pytest.skip(f"pip could not get the build backend (setuptools) from any package index:\n{built.stderr[-800:]}")
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_a_wheel_install_migrates_an_empty_database_from_another_folder(pg_server, tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        site = tmp_path / "site-packages"
        archive.extractall(site)
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    sql_files = sorted(str(p.relative_to(PROJECT_ROOT / "sql")) for p in (PROJECT_ROOT / "sql").glob("*/*.sql"))
    assert sql_files and all(f"billing_core/sql/{name}" in names for name in sql_files)
    assert "billing_demo/__init__.py" in names and "billing_core/cli.py" in names
    assert "billing = billing_core.cli:main" in entry_points

    elsewhere = tmp_path / "elsewhere"  # no sql/, no checkout: only the installed files
    elsewhere.mkdir()
    name = f"billing_test_wheel_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    env = {k: v for k, v in os.environ.items() if k not in ("BILLING_DATA_DIR", "BILLING_DEBUG")}
    env.update(PYTHONPATH=str(site), DATABASE_URL=url)
    try:
        runs = [
            subprocess.run([sys.executable, "-c", BILLING, "db", "migrate"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
            for _ in range(2)
        ]
        for run in runs:
            assert run.returncode == 0, f"billing db migrate exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        first, again = runs
        assert f"sql from {site / 'billing_core' / 'sql'}" in first.stdout  # the wheel's files, not a checkout's
        assert "applied migrations/0001_ledger_tables.sql" in first.stdout
        assert "applied routines/990_access.sql" in first.stdout
        assert "applied" not in again.stdout  # twice changes nothing
        with psycopg.connect(url) as conn:
            applied = {row[0] for row in conn.execute("select name from schema_migrations")}
            assert applied == set(sql_files)
            assert conn.execute("select to_regproc('ledger_violations') is not null").fetchone()[0] is True
        assert not (elsewhere / ".billing-data").exists() and list(elsewhere.iterdir()) == []
    finally:
        pg_server.drop_database(name)
