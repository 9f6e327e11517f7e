"""Take a screenshot of a compat HTML report in headless Chromium (Debian's ``chromium`` package).

Usage: python scripts/screenshot.py [report/index.html] [--out report/screenshot.png] [--anchor ID] [--size 1400,1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        sys.exit("no chromium on PATH: apt-get install chromium")
    return found


def run_page(page: Path, *flags: str, anchor: str | None = None, timeout: float = 60) -> str:
    """Load the page (running its script) and return what Chromium printed (the DOM for --dump-dom)."""
    url = page.resolve().as_uri() + (f"#{anchor}" if anchor else "")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *flags, url],
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def screenshot(page: Path, out: Path, size: str = "1400,1000", anchor: str | None = None) -> Path:
    run_page(page, f"--screenshot={out.resolve()}", f"--window-size={size}", anchor=anchor)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("page", type=Path, nargs="?", default=Path("report/index.html"))
    parser.add_argument("--out", type=Path, default=Path("report/screenshot.png"))
    parser.add_argument("--anchor", help="an element id to open and scroll to (a cell's evidence)")
    parser.add_argument("--size", default="1400,1000")
    args = parser.parse_args()
    print(screenshot(args.page, args.out, args.size, args.anchor))


if __name__ == "__main__":
    main()
