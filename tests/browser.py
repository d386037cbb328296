"""Headless Chromium for the tests that look at a page in a real browser.

The browser is Debian's `chromium` package, installed here when it is missing (a fresh
machine or CI): Playwright drives it through `executable_path`, so no browser build is ever
downloaded from elsewhere (`playwright install` is not used). If apt-get cannot install it,
the test fails with apt's output: a browser test that skips would prove nothing.
"""

from __future__ import annotations

import shutil
import subprocess

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def _apt(*args: str) -> None:
    done = subprocess.run(
        ["apt-get", *args], env=APT_ENV, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"apt-get {' '.join(args)} failed ({done.returncode}); the browser tests need "
            f"Debian's chromium package:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


def chromium_path() -> str:
    """The Debian chromium binary, installing the package first if it is not there."""
    found = shutil.which("chromium")
    if found is None:
        if shutil.which("apt-get") is None:
            raise RuntimeError("chromium is not installed and there is no apt-get to install it")
        _apt("update")
        _apt("install", "-y", "--no-install-recommends", "chromium")
        found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("apt-get installed chromium, yet no `chromium` is on PATH")
    return found


if __name__ == "__main__":
    print(chromium_path())
