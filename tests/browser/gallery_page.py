"""Debian's chromium driven by Playwright (no `playwright install`: browser downloads do not
work offline; `make browser` installs the browser), and the gallery page as a test reads it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = os.environ.get("IMGSIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000  # an image query embeds on the emulator's endpoint; 2 busy cores


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(f"no browser at {CHROMIUM}: run `make browser` (Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def keep_screenshot(path: Path) -> None:
    """Copy a screenshot to $IMGSIM_SCREENSHOT_DIR when set (how docs/ gets the README's)."""
    target = os.environ.get("IMGSIM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


class Gallery:
    """The page's controls by their test ids."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []  # what the page logged and threw, for failure messages
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)

    def open(self, api_url: str) -> Gallery:
        self.page.goto(api_url + "/")
        return self

    def by_id(self, test_id: str) -> Locator:
        return self.page.get_by_test_id(test_id)

    def wait_for_prompts(self) -> list[str]:
        expect(self.by_id("prompt-select").locator("option").first).to_be_attached()
        return self.by_id("prompt-select").locator("option").all_inner_texts()

    def choose_prompt(self, prompt: str) -> None:
        options = self.by_id("prompt-select").locator("option")
        label = next(t for t in options.all_inner_texts() if t.startswith(prompt + " ("))
        self.by_id("prompt-select").select_option(label=label)

    def results(self) -> list[tuple[str, float]]:
        """(image id, score) of each result shown, in the page's order."""
        items = self.by_id("results").get_by_test_id("result")
        ids = [items.nth(i).get_attribute("data-image-id") or "" for i in range(items.count())]
        scores = [float(s) for s in items.get_by_test_id("score").all_inner_texts()]
        return list(zip(ids, scores, strict=True))

    def wait_for_results(self, count: int) -> list[tuple[str, float]]:
        expect(self.by_id("results").get_by_test_id("result")).to_have_count(count)
        return self.results()

    def open_record(self, rank: int) -> dict:
        self.by_id("results").get_by_test_id("open-record").nth(rank).click()
        record = self.by_id("record")
        image_id = self.results()[rank][0]
        expect(record).to_contain_text(f'"image_id": "{image_id}"')
        return json.loads(record.inner_text())

    def error(self) -> str:
        expect(self.by_id("error")).to_be_visible()
        return self.by_id("error").inner_text()

    def loaded_width(self, test_id: str) -> int:
        """The natural width of an <img> once it has loaded (0: it did not load)."""
        image = self.by_id(test_id)
        self.page.wait_for_function("img => img.complete", arg=image.element_handle())
        return int(image.evaluate("img => img.naturalWidth"))
