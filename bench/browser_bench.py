"""Speed as a person feels it: the app in headless Chromium on the demo data, against issue 9's targets.

README
======
Run from the repository root (about 2 minutes, plus a minute to load the demo when no database is given):

    .venv/bin/python bench/browser_bench.py                 # embedded scratch server, demo loaded, 3 runs
    .venv/bin/python bench/browser_bench.py --runs 5        # more runs of each figure
    DATABASE_URL=postgresql://... .venv/bin/python bench/browser_bench.py   # a database with the demo loaded

With DATABASE_URL, that database must hold the demo (`billing demo`); the confirmed form allocates 1 credit
per run there (take it back afterwards if it matters). Without it, an embedded PostgreSQL in a temporary
folder gets the demo (billing_demo.load) and is deleted at the end.

What it measures (wall-clock, in the browser, from the click to the page fully drawn):
  first login   a freshly started app process: its first login form shown (`first form shown`), then
                "Log in" to the landing page drawn (the first logins after a start pay the imports and the
                caches' first fill)
  login form    the app's URL to the login form drawn, on the running app
  warm login    a new browser (no cookie) on the running app, for each demo login
  page switch   a click in the navigation to that screen drawn, every screen of every demo login
  confirm       the org admin allocates 1 credit: "Allocate credits" to the question, "Confirm" to the result
"Fully drawn": the app's script is not running, no element is stale or a skeleton, every chart has drawn its
SVG, and this has held for QUIET_MS (so a rerun that a component's answer triggers is counted).

What bounds each figure: the app runs in this script's own process (`--serve`, started by the bench)
with timers around each script run of Streamlit, each billing_core database call (by function), the
bcrypt check and the authenticator's pre-login sleep. For each interaction the bench sums the script
runs that overlapped it: `runs` (reruns triggered by components count), `script` (server time),
`sql` (time inside billing_core database calls, by call), `bcrypt`, `sleep`; the rest of the wall
time is the browser's: websocket, React rendering, Plotly, the component iframes' round trips.

Targets (issue 9): first page drawn <= 2 s after login, page switch <= 1.5 s, confirmed form <= 1 s.
Exit status 0 when every flow ran (targets met or not), 3 when one failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "billing-demo"
LOGINS = {
    "system admin": "admin@billing-demo.example",
    "org admin": "grace.choi@tidewater-shipping.example",
    "member": "grace.haddad@tidewater-shipping.example",
}
TARGETS = {"first login": 2.0, "warm login": 2.0, "page switch": 1.5, "confirm": 1.0}
QUIET_MS = 600
TIMEOUT_S = 60

# the page is drawn: no script run, nothing stale or loading in sight, every Plotly chart has its SVG
DRAWN_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return 'script running';
  // a skeleton counts when it shows: the cookie component's hidden iframes keep theirs
  const shows = (e) => e.getClientRects().length > 0 && e.getBoundingClientRect().height > 0;
  const busy = [...document.querySelectorAll('[data-stale="true"], [data-testid="stSkeleton"], [data-testid="stSpinner"]')]
    .find(shows);
  if (busy) return 'busy: ' + (busy.getAttribute('data-testid') || busy.outerHTML.slice(0, 120));
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (!chart.querySelector('.main-svg')) return 'chart not drawn';
  return '';
}"""


# =========================================================================== the instrumented app (--serve)


class _RunClock:
    """Per script run (one thread): SQL calls by billing_core function, bcrypt, sleep; one JSON line per run."""

    def __init__(self, log_path: str, install) -> None:
        self.install = install  # called once, in the first script run
        self.local = threading.local()
        self.out = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the server
        self.lock = threading.Lock()

    def current(self) -> dict | None:
        return getattr(self.local, "run", None)

    def add(self, bucket: str, seconds: float, name: str | None = None) -> None:
        run = self.current()
        if run is None:
            return
        run[bucket] += seconds
        if name:
            entry = run["calls"].setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    def wrap_run(self, original):
        clock = self

        def run_script(runner, rerun_data):
            clock.local.run = {"start": time.time(), "sql": 0.0, "bcrypt": 0.0, "sleep": 0.0, "page": 0.0,
                               "calls": {}}
            with clock.lock:
                if clock.install is not None:  # the imports it makes are the first run's anyway
                    clock.install(clock)
                    clock.install = None
            try:
                return original(runner, rerun_data)
            finally:
                run = clock.local.run
                clock.local.run = None
                run["end"] = time.time()
                run["session"] = getattr(runner, "_session_id", "?")
                with clock.lock:
                    clock.out.write(json.dumps(run) + "\n")

        return run_script


def _caller() -> str:
    """The billing_core function (outside database.py) that asked for this database call."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("billing_core.") and module != "billing_core.database":
            return f"{module.removeprefix('billing_core.')}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "other"


def _install_timers(clock: _RunClock) -> None:
    """Time billing_core's database calls, the screens, bcrypt and the authenticator's sleep. Called in the
    first script run: the authenticator's cookie component, imported before Streamlit's runtime exists,
    would be declared to no runtime (and answer 404)."""
    import bcrypt
    from streamlit_authenticator.views import authentication_view

    import pages
    from billing_core import database

    def timer(function, bucket: str, named: bool = False):
        def timed_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock.add(bucket, time.perf_counter() - started, _caller() if named else None)

        return timed_call

    database._run = timer(database._run, "sql", named=True)  # every fetch/call goes through it
    pages.render = timer(pages.render, "page")  # app.py's navigation looks it up on each run
    bcrypt.checkpw = timer(bcrypt.checkpw, "bcrypt")

    def timed_sleep(seconds: float) -> None:
        clock.add("sleep", seconds)
        time.sleep(seconds)

    # the authenticator sleeps before each login form: its module's `time`, with sleep timed
    authentication_view.time = types.SimpleNamespace(**{**vars(time), "sleep": timed_sleep})


def serve(port: int, log_path: str) -> None:
    """Run `streamlit run app.py` in this process, with the timers of _RunClock installed."""
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.web import cli

    clock = _RunClock(log_path, _install_timers)
    # private API, bench only: every script run of every session passes through ScriptRunner._run_script
    script_runner.ScriptRunner._run_script = clock.wrap_run(script_runner.ScriptRunner._run_script)
    sys.argv = ["streamlit", "run", str(REPO / "app.py"), "--server.headless", "true", "--server.address",
                "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    os.chdir(REPO)
    cli.main()


# =========================================================================== the database


@contextlib.contextmanager
def demo_database(keep: bool) -> Iterator[str]:
    """DATABASE_URL (the demo already loaded), or an embedded scratch server with the demo loaded."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    import shutil

    import psycopg

    import billing_demo as demo
    from billing_core import database, migrations

    folder = Path(tempfile.mkdtemp(prefix="browser-bench-pg-"))
    server = database.embedded_server(folder / "data", stop_on_exit=not keep)
    try:
        admin_url = server.get_uri("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("alter system set fsync = off")  # a scratch server: the load is faster
            conn.execute("select pg_reload_conf()")
        database.ensure_database(admin_url, database.DATABASE_NAME)
        url = server.get_uri(database.DATABASE_NAME)
        migrations.migrate(url)
        started = time.perf_counter()
        demo.load(database.get_engine(url))
        database.dispose_engine(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum (analyze)")  # what autovacuum does within a minute or two
        print(f"demo loaded in {time.perf_counter() - started:.0f} s into an embedded server in {folder}")
        yield url
    finally:
        if keep:
            print(f"kept: {folder}")
        else:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


# =========================================================================== the app under the bench


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class App:
    base: str
    log: Path

    def runs_between(self, start: float, end: float) -> list[dict]:
        """The script runs (of any session) that overlapped [start, end] (wall clock, seconds)."""
        runs = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in runs if r["end"] >= start and r["start"] <= end]


@contextlib.contextmanager
def running_app(url: str, workdir: Path) -> Iterator[App]:
    """This script in --serve mode on a free port, against `url`; stopped at the end."""
    port = free_port()
    log = workdir / f"runs-{port}.jsonl"
    log.write_text("")
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("BILLING_LOGIN_SLEEP_SECONDS", None)  # the product's default: what a user gets
    with (workdir / f"streamlit-{port}.log").open("w") as out:
        process = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(log)], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as answer:
                if answer.read() == b"ok":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start: {(workdir / f'streamlit-{port}.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield App(base, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# =========================================================================== measuring in the browser


@dataclass
class Sample:
    figure: str
    what: str
    seconds: float
    runs: list[dict] = field(default_factory=list)
    started: float = 0.0

    def after_server(self) -> float:
        """Seconds from the end of the last script run to the page drawn: the browser's own share."""
        return self.started + self.seconds - max((r["end"] for r in self.runs), default=self.started)


def wait_drawn(page, started: float, ready=None, drawn: bool = True) -> float:
    """Seconds from `started` (time.time()) to the page fully drawn (and `ready()` true), held QUIET_MS;
    with drawn=False, to `ready()` alone."""
    since = None
    deadline = started + TIMEOUT_S
    while time.time() < deadline:
        now = time.time()
        waiting = (page.evaluate(DRAWN_JS) if drawn else "") or ("" if ready is None or ready() else "not ready")
        if not waiting:
            since = since or now
            if now - since >= QUIET_MS / 1000:
                return since - started
        else:
            since = None
        page.wait_for_timeout(40)
    page.screenshot(path=str(Path(tempfile.gettempdir()) / "browser-bench-timeout.png"), full_page=True)
    raise TimeoutError(f"the page was not drawn within {TIMEOUT_S} s ({waiting}): {page.url}")


def timed(app: App, samples: list[Sample], figure: str, what: str, page, action, ready=None, drawn=True) -> float:
    """Do `action()` (a click), wait for the page drawn; record the time and the script runs it took."""
    started = time.time()
    action()
    seconds = wait_drawn(page, started, ready, drawn)
    samples.append(Sample(figure, what, seconds, app.runs_between(started, started + seconds), started))
    print(f"  {figure:<16} {seconds:6.2f} s  {what}", flush=True)
    return seconds


def open_login(app: App, samples: list[Sample], figure: str, page) -> None:
    """Open the app's URL in `page` and time it to the login form drawn (a fresh process's first run goes on
    after the form is drawn: pages.warm_up; the form's own time is printed as `first form shown`)."""
    button = page.get_by_role("button", name="Log in")
    if figure == "first form":
        timed(app, samples, "first form shown", "the app's URL to the Log in button", page,
              lambda: page.goto(app.base), ready=lambda: button.is_visible(), drawn=False)
        wait_drawn(page, time.time())
        return
    timed(app, samples, figure, "the app's URL to the login form", page, lambda: page.goto(app.base),
          ready=lambda: button.count() > 0)


def log_in(app: App, samples: list[Sample], figure: str, page, email: str) -> None:
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    logged_in = page.get_by_text("Logged in as")
    timed(app, samples, figure, email, page, page.get_by_role("button", name="Log in").click,
          ready=lambda: logged_in.count() > 0)


def navigation(page) -> list[str]:
    return [t.strip().split("\n")[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def switch_pages(app: App, samples: list[Sample], page, role: str) -> None:
    """Click every screen of the navigation in turn (and back to the first)."""
    titles = navigation(page)
    for title in titles[1:] + titles[:1]:
        link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first
        timed(app, samples, "page switch", f"{role}: {title}", page, link.click)


def confirm_allocation(app: App, samples: list[Sample], page) -> None:
    """The org admin allocates 1 credit: the question, then the confirmed result."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Organization billing").first.click()
    page.get_by_role("textbox", name="Credits to allocate").wait_for()
    wait_drawn(page, time.time())
    page.get_by_role("tab", name="Allocations").click()
    page.get_by_role("textbox", name="Credits to allocate").fill("1")
    confirm = page.get_by_role("button", name="Confirm")
    timed(app, samples, "question", "org admin: Allocate credits", page,
          page.get_by_role("button", name="Allocate credits").click, ready=lambda: confirm.count() > 0)
    done = page.get_by_text(re.compile(r"^Allocated 1 credit: "))
    timed(app, samples, "confirm", "org admin: Confirm allocation", page, confirm.click,
          ready=lambda: done.count() > 0)


def bench(url: str, runs: int, workdir: Path) -> list[Sample]:
    from playwright.sync_api import sync_playwright

    samples: list[Sample] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):  # a fresh server process each time: its first login
                with running_app(url, workdir) as app:
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    open_login(app, samples, "first form", page)
                    log_in(app, samples, "first login", page, LOGINS["org admin"])
                    context.close()
            with running_app(url, workdir) as app:
                warm = browser.new_context()
                open_login(app, [], "", warm.new_page())  # the process's first run, not measured here
                warm.close()
                for run in range(runs):
                    for role, email in LOGINS.items():
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        page = context.new_page()
                        open_login(app, samples, "login form", page)
                        log_in(app, samples, "warm login", page, email)
                        if run == 0 or role != "system admin":  # the admin's many screens: once
                            switch_pages(app, samples, page, role)
                        if role == "org admin":
                            confirm_allocation(app, samples, page)
                        context.close()
        finally:
            browser.close()
    return samples


# =========================================================================== the report


def bounds(sample: Sample) -> str:
    """What the server did during an interaction: its script runs, their SQL (top calls), bcrypt, sleep; then
    the browser's time after the last run."""
    runs = sample.runs
    if not runs:
        return "no script run"
    script = sum(r["end"] - r["start"] for r in runs)
    sql = sum(r["sql"] for r in runs)
    calls: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for r in runs:
        for name, (count, seconds) in r["calls"].items():
            calls[name][0] += count
            calls[name][1] += seconds
    top = sorted(calls.items(), key=lambda item: -item[1][1])[:3]
    page = sum(r.get("page", 0.0) for r in runs)
    parts = [f"{len(runs)} runs, script {script:.2f} s (screen {page:.2f} s), sql {sql:.2f} s"
             f" in {sum(c for c, _ in calls.values())} calls"]
    extra = [f"{label} {sum(r[key] for r in runs):.2f} s" for key, label in (("bcrypt", "bcrypt"), ("sleep", "sleep"))
             if sum(r[key] for r in runs) > 0]
    extra.append(f"browser after the last run {sample.after_server():.2f} s")
    return "; ".join(parts + extra) + (" (" + ", ".join(f"{n} {c}x {s * 1000:.0f} ms" for n, (c, s) in top) + ")"
                                       if top else "")


def report(samples: list[Sample]) -> str:
    lines = [f"{'figure':<16} {'n':>3} {'p50 s':>6} {'max s':>6} {'target':>7}  verdict  slowest case and what bounds it"]
    for figure in ("first form shown", "login form", "first login", "warm login", "page switch", "question", "confirm"):
        chosen = [s for s in samples if s.figure == figure]
        if not chosen:
            continue
        times = [s.seconds for s in chosen]
        p50, worst = statistics.median(times), max(chosen, key=lambda s: s.seconds)
        target = TARGETS.get(figure)
        verdict = "-" if target is None else ("met" if worst.seconds <= target else
                                              "p50 met" if p50 <= target else "MISSED")
        lines.append(f"{figure:<16} {len(chosen):>3} {p50:>6.2f} {worst.seconds:>6.2f} "
                     f"{(f'{target:.1f}' if target else '-'):>7}  {verdict:<7}  {worst.what}: {bounds(worst)}")
    lines.append("\nEvery page switch (p50 of its runs), slowest first:")
    by_what: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in samples:
        if s.figure == "page switch":
            by_what[s.what].append(s)
    for what, group in sorted(by_what.items(), key=lambda item: -statistics.median(s.seconds for s in item[1])):
        middle = sorted(group, key=lambda s: s.seconds)[len(group) // 2]
        lines.append(f"  {middle.seconds:5.2f} s  {what:<42} {bounds(middle)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]), argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the embedded scratch server (its folder is printed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="browser-bench-") as folder, demo_database(args.keep) as url:
        try:
            samples = bench(url, args.runs, Path(folder))
        except Exception as exc:  # a flow that failed: its figures would mean nothing
            print(f"FAILED: {exc}")
            return 3
        print(report(samples))
        print(f"\nload average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} on"
              f" {os.cpu_count()} cores: above the core count, every figure above is inflated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
