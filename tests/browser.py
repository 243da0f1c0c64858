"""A real browser for the HTML report tests (issue 19, "Tested in a real browser").

Debian's `chromium` (installed by `make setup`) driven by Playwright for Python through
`executable_path`: Playwright's own browser download is never used, so the tests need no
network and see the browser an admin's Debian machine has.  A missing browser is a test
failure saying what installs it, never a skip: a `make test` that silently skipped the
browser would claim the HTML was checked when it was not.

Every page is opened through `Watched`, which records what a user would never want a report
to do: print to the console, throw, open a dialog, break its own Content-Security-Policy, or
fetch anything from the network (the page must be one self-contained file that works offline).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MISSING = "chromium is not installed: `make setup` installs it (Debian package chromium, Playwright for Python)"

# Runs before any script of the page, in the page's own world, so it sees every violation the
# page causes.  Playwright injects it through the DevTools protocol, which the page's CSP does
# not govern (https://playwright.dev/python/docs/api/class-browsercontext#browser-context-add-init-script).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || ''));
}, true);
"""


def chromium_path() -> str:
    """The Debian browser, or a test failure naming what installs it."""
    path = shutil.which("chromium")
    if not path:
        pytest.fail(MISSING, pytrace=False)
    return path


@dataclass
class Watched:
    """A page and what it did that a report must never do."""

    page: Any
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return list(self.page.evaluate("window.__cspViolations || []"))

    def problems(self) -> list[str]:
        return ([f"console: {m}" for m in self.console] + [f"page error: {e}" for e in self.errors]
                + [f"dialog: {d}" for d in self.dialogs] + [f"fetch: {u}" for u in self.requests]
                + [f"CSP violation: {v}" for v in self.csp_violations()])

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the page did what a report never should:\n" + "\n".join(problems)

    def overflow(self) -> tuple[int, int]:
        """(document width, viewport width): the page scrolls sideways when the first is larger."""
        return tuple(self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"))  # type: ignore[return-value]


class Browser:
    """One chromium for the session; a fresh, offline context per page."""

    def __init__(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            pytest.fail(MISSING, pytrace=False)
        executable = chromium_path()
        self._pw = sync_playwright().start()
        # Chromium refuses to start as root with its sandbox on (the lab runs tests as root).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        try:
            self._browser = self._pw.chromium.launch(executable_path=executable, args=args, timeout=30_000)
        except Exception as e:  # noqa: BLE001 - one line, then the failure
            self._pw.stop()
            pytest.fail(f"chromium at {executable} does not start ({str(e).splitlines()[0]}); {MISSING}",
                        pytrace=False)

    def open(self, path: Path, width: int = 1280, height: int = 900, dark: bool = False,
             media: str = "screen") -> Watched:
        context = self._browser.new_context(viewport={"width": width, "height": height}, offline=True,
                                            color_scheme="dark" if dark else "light")
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.emulate_media(media=media)
        w = Watched(page)
        page.add_init_script(WATCH_CSP)
        page.on("console", lambda m: w.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: w.errors.append(str(e)))

        def dialog(d: Any) -> None:
            w.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)

        def route(r: Any) -> None:
            url = r.request.url
            if url.startswith("data:") or url.split("#")[0] == path.as_uri():
                r.continue_()
            else:                                   # never leaves the machine: aborted before any packet
                w.requests.append(url)
                r.abort()

        context.route("**/*", route)
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        return w

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical"),
                   allowed: frozenset[str] = frozenset()) -> list[str]:
    """axe-core's findings of the given impacts, one line each (rule, impact, first nodes).

    axe-core ships inside axe-playwright-python and is evaluated through the DevTools protocol
    (page.evaluate), so the page's CSP does not stop it and nothing is fetched."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    out = []
    for v in results.response["violations"]:
        if v["impact"] in impacts and v["id"] not in allowed:
            nodes = "; ".join(" ".join(n["target"]) for n in v["nodes"][:3])
            out.append(f"{v['id']} ({v['impact']}): {v['help']} at {nodes}")
    return out


# Screenshots for docs/img (README): `python tests/browser.py REPORT.html [DASHBOARD.html] OUT_DIR`,
# on the pages `make demo` writes.  The first screen of each, as a reader first sees it.
SHOTS = (("report-light.png", 1280, 900, False), ("report-dark.png", 1280, 900, True),
         ("report-phone.png", 375, 812, False))
PART_HEIGHT = 640
PARTS = (("report-spf-tree.png", "#pic-spf"), ("report-waterfall.png", "#pic-waterfall"))


def screenshots(report: Path, out_dir: Path, dashboard: Path | None = None) -> list[Path]:
    b = Browser()
    out = []
    try:
        for name, width, height, dark in SHOTS:
            w = b.open(report, width=width, height=height, dark=dark)
            w.assert_clean()
            out.append(out_dir / name)
            w.page.screenshot(path=str(out[-1]))
        w = b.open(report, width=1000, height=900)
        for name, selector in PARTS:
            part = w.page.locator(selector)
            box = part.first.bounding_box() if part.count() else None   # no data, no picture
            if box is not None:
                out.append(out_dir / name)
                clip = {**box, "height": min(box["height"], PART_HEIGHT)}   # the top of a long waterfall
                w.page.screenshot(path=str(out[-1]), full_page=True, clip=clip)
        if dashboard is not None:
            w = b.open(dashboard, width=1280, height=900)
            w.assert_clean()
            out.append(out_dir / "dashboard-light.png")
            w.page.screenshot(path=str(out[-1]))
    finally:
        b.close()
    return out


if __name__ == "__main__":
    import sys

    *pages, target = sys.argv[1:]
    for p in screenshots(Path(pages[0]).resolve(), Path(target), Path(pages[1]).resolve() if len(pages) > 1 else None):
        print(p)
