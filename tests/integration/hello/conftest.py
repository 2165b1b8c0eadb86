"""Fixtures for the hello tests: the CLI as a subprocess, random loopback ports, headless Chromium."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys

import psutil
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", *args]


def leftovers(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions `marker` (a test's own tmp dir): none may survive."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.fixture
def proc_group():
    """Start subprocesses in their own session; whatever is still alive at the end gets killed."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], **kwargs) -> subprocess.Popen:
        p = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        for pipe in (p.stdout, p.stderr):  # closed here, not by the garbage collector
            if pipe is not None:
                pipe.close()


@pytest.fixture
def browser_factory(tmp_path):
    """Start Debian's chromium through its chromedriver with a fresh profile (nothing downloaded);
    ``extra`` adds flags such as ``--host-resolver-rules=...``. Every browser started is quit."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/setup.d/50-chromium.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver
    started: list = []

    def start(*extra: str):
        profile = tmp_path / f"chromium-profile-{len(started)}"
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,900", *extra):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(60)
        started.append((driver, profile))
        return driver

    try:
        yield start
    finally:
        for driver, profile in started:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(browser_factory):
    return browser_factory()


def artefact(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    out = tmp_path / "artefacts"
    out.mkdir(exist_ok=True)
    return out / name
