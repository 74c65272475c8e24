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
from tests.browser.gallery_data import MODEL, PROMPT, SMALL_PROMPTS, photos
from tests.browser.gallery_page import Gallery, keep_screenshot


def _newest(api_url: str, prompt: str) -> str:
    listed = requests.get(f"{api_url}/prompts", timeout=30).json()["prompts"]
    return next(p["newest"]["image_id"] for p in listed if p["prompt"] == prompt)


def test_the_page_opens_on_the_prompt_with_the_most_images_and_shows_its_results(
    gallery_api, browser
):
    """The prompts are listed alphabetically; the one first ("a cat") has a single image, so
    opening on it would show nothing: the page opens on the biggest, with its newest image as
    the query and that image's neighbours as the first results."""
    page = browser.new_page()
    gallery = Gallery(page).open(gallery_api.url)
    counts = {PROMPT: 12, **{p: len(ids) for p, ids in SMALL_PROMPTS.items()}}
    labels = [f"{p} ({n} images, {MODEL})" for p, n in sorted(counts.items())]
    assert gallery.wait_for_prompts() == labels
    assert labels[0].startswith("a cat (1 images") and max(counts, key=counts.get) == PROMPT
    expect(gallery.by_id("prompt-select")).to_have_value(str(sorted(counts).index(PROMPT)))
    expect(gallery.by_id("image-id")).to_have_value(_newest(gallery_api.url, PROMPT))
    expect(gallery.by_id("summary")).to_contain_text("11 results")
    assert len(gallery.wait_for_results(11)) == 11  # the newest image against the 11 others

    # a reload of the list keeps the prompt chosen, even when it is not the biggest
    gallery.choose_prompt("an astronaut")
    expect(gallery.by_id("status")).to_have_text("search: done")
    gallery.by_id("reload-prompts").click()
    expect(gallery.by_id("status")).to_have_text("prompts: done")
    expect(gallery.by_id("prompt-select")).to_have_value(str(sorted(counts).index("an astronaut")))
    assert len(gallery.wait_for_results(2)) == 2  # the astronaut's newest against its 2 others
    page.close()


def test_upload_a_photo_search_and_open_a_record(gallery_api, browser, tmp_path):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos()["coffee"])
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    gallery = Gallery(page).open(gallery_api.url)
    assert f"{PROMPT} (12 images, {MODEL})" in gallery.wait_for_prompts()
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
    newest = _newest(gallery_api.url, PROMPT)
    expect(gallery.by_id("image-id")).to_have_value(newest)
    first = gallery.wait_for_results(12 - 1)  # every other image of the prompt (k=12)
    assert newest not in [i for i, _ in first]

    target = first[-1][0]
    page.get_by_test_id("result").nth(len(first) - 1).get_by_role(
        "button", name="more like this"
    ).click()
    expect(gallery.by_id("image-id")).to_have_value(target)
    expect(gallery.by_id("query")).to_contain_text(f"image {target}")
    # the list is now the target's: it is no longer in it, and the newest image is
    expect(gallery.by_id("results").locator(f'[data-image-id="{target}"]')).to_have_count(0)
    after = gallery.wait_for_results(11)
    assert target not in [i for i, _ in after] and newest in [i for i, _ in after]
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
