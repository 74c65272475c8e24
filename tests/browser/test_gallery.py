"""The gallery page (GET /) in headless Chromium against the local API: a photo from disk is
searched through POST /similarity, the ranked thumbnails and scores are the API's, a record
opens; API errors (missing key, unknown image) are shown on the page; an image generates."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import requests
from playwright.sync_api import expect

from lambdas.api.handler import make_handler
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from tests.browser.conftest import MODEL, PROMPT, photos
from tests.browser.gallery_page import Gallery, keep_screenshot


def test_upload_a_photo_search_and_open_a_record(gallery_api, browser, tmp_path):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos()["coffee"])
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    gallery = Gallery(page).open(gallery_api.url)
    assert gallery.wait_for_prompts() == [f"{PROMPT} (12 images, {MODEL})"]
    gallery.wait_for_results(11)  # the prompt's newest image against the 11 others

    gallery.by_id("k").fill("8")
    gallery.by_id("file").set_input_files(photo)
    gallery.by_id("search-file").click()
    expect(gallery.by_id("summary")).to_contain_text("8 results")
    shown = gallery.wait_for_results(8)

    # exactly what the API ranks for the same photo, in order, with its scores
    answer = requests.post(
        f"{gallery_api.url}/similarity",
        json={"prompt": PROMPT, "k": 8, "images": [base64.b64encode(photo.read_bytes()).decode()]},
        timeout=120,
    ).json()["queries"][0]["results"]
    assert [i for i, _ in shown] == [r["image_id"] for r in answer]
    assert [s for _, s in shown] == [round(r["similarity"], 4) for r in answer]
    assert shown[0] == ("coffee", 1.0)  # the same photo is in the index
    assert [s for _, s in shown] == sorted((s for _, s in shown), reverse=True)
    thumbnails = gallery.by_id("results").locator("img")
    page.wait_for_function(
        "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)",
        arg=thumbnails.element_handles(),
    )

    record = gallery.open_record(1)
    assert record["image_id"] == shown[1][0] and record["status"] == "embedded"
    assert gallery.loaded_width("record-image") > 0
    expect(gallery.by_id("error")).to_be_hidden()

    screenshot = tmp_path / "gallery.png"
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.stat().st_size > 10_000
    keep_screenshot(screenshot)
    page.close()


def test_choosing_a_prompt_searches_its_newest_image_then_more_like_this(gallery_api, browser):
    page = browser.new_page()
    gallery = Gallery(page).open(gallery_api.url)
    gallery.wait_for_prompts()
    newest = requests.get(f"{gallery_api.url}/prompts", timeout=30).json()["prompts"][0]["newest"]
    expect(gallery.by_id("image-id")).to_have_value(newest["image_id"])
    first = gallery.wait_for_results(12 - 1)  # every other image of the prompt (k=12)
    assert newest["image_id"] not in [i for i, _ in first]

    target = first[-1][0]
    page.get_by_test_id("result").nth(len(first) - 1).get_by_role(
        "button", name="more like this"
    ).click()
    expect(gallery.by_id("image-id")).to_have_value(target)
    expect(gallery.by_id("query")).to_contain_text(f"image {target}")
    # the list is now the target's: it is no longer in it, and the newest image is
    expect(gallery.by_id("results").locator(f'[data-image-id="{target}"]')).to_have_count(0)
    after = gallery.wait_for_results(11)
    assert target not in [i for i, _ in after] and newest["image_id"] in [i for i, _ in after]
    page.close()


def test_api_errors_are_shown_and_the_key_is_sent(gallery_api, browser):
    """With IMGSIM_API_KEYS set, the page first shows the 401; with a key typed in, /prompts
    loads; an unknown image id shows the 404 in the same box."""
    settings = replace(gallery_api.settings, api_keys=("gallery-key",))
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        page = browser.new_page()
        gallery = Gallery(page).open(server.url)
        assert gallery.error().startswith("401 api_key_missing:")

        gallery.by_id("api-key").fill("wrong-key")
        gallery.by_id("api-key").press("Enter")
        expect(gallery.by_id("error")).to_contain_text("403 api_key_refused")

        gallery.by_id("api-key").fill("gallery-key")
        gallery.by_id("api-key").press("Enter")
        gallery.wait_for_prompts()
        gallery.wait_for_results(11)
        expect(gallery.by_id("error")).to_be_hidden()

        gallery.by_id("image-id").fill("0123456789abcdef")
        gallery.by_id("search-id").click()
        assert gallery.error().startswith("404 image_not_found:")

        page.reload()  # the key lives in sessionStorage for the tab
        expect(gallery.by_id("api-key")).to_have_value("gallery-key")
        gallery.wait_for_results(11)
        page.close()
    finally:
        server.stop()


def test_upload_to_the_pipeline_and_generate(gallery_api, browser, tmp_path):
    """A file that is not an image gets the API's 415 on the page; a photo is stored and queued
    (its pending record opens); a generated image's record opens (the Bedrock emulator paints
    it: a stand-in)."""
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"this is a text file, not a photo")
    page = browser.new_page()
    gallery = Gallery(page).open(gallery_api.url)
    gallery.wait_for_prompts()
    gallery.by_id("file").set_input_files(not_a_photo)
    gallery.by_id("upload-file").click()
    assert gallery.error().startswith("415 not_an_image:")

    photo = tmp_path / "rocket.jpg"
    photo.write_bytes(photos()["rocket-crop"])
    gallery.by_id("file").set_input_files(photo)
    gallery.by_id("upload-file").click()  # stored and queued through POST /images
    expect(gallery.by_id("record")).to_contain_text('"status": "pending"')
    expect(gallery.by_id("error")).to_be_hidden()
    uploaded = json.loads(gallery.by_id("record").inner_text())
    assert uploaded["prompt"] == PROMPT and uploaded["source"] == "uploaded"
    expect(gallery.by_id("query")).to_contain_text(f"as {uploaded['image_id']}")

    gallery.by_id("generate-prompt").fill("A Lighthouse at  Dusk")
    gallery.by_id("generate").click()
    expect(gallery.by_id("record")).to_contain_text('"source": "generated"')
    expect(gallery.by_id("error")).to_be_hidden()
    record = gallery.by_id("record").inner_text()
    assert '"prompt": "a lighthouse at dusk"' in record and '"status": "pending"' in record
    assert gallery.loaded_width("record-image") > 0
    page.close()
