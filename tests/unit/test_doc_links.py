"""Every link of README.md, CONTRIBUTING.md, ARCHITECTURE.md and docs/*.md points at something
that exists: a file or folder of the repository, a heading of the page it names (GitHub's
anchors), or a well-formed external URL (checked offline, never fetched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_links import anchors, links, problem, slug

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / n for n in ("README.md", "CONTRIBUTING.md", "ARCHITECTURE.md")] + sorted(
    (ROOT / "docs").glob("*.md")
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_the_page_points_at_something_that_exists(page):
    broken = [f"{link}: {why}" for link in links(page) if (why := problem(link, ROOT))]
    assert not broken, "\n".join(broken)


def test_the_pages_have_links_to_check():
    assert len([link for page in PAGES for link in links(page)]) > 50


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("4. First upload, first lookup", "4-first-upload-first-lookup"),
        (
            "The serving container image (wheels, workers)",
            "the-serving-container-image-wheels-workers",
        ),
        ("`GET /prompts` and the gallery", "get-prompts-and-the-gallery"),
        ("Bedrock: region & model access", "bedrock-region--model-access"),
        ("[The API](docs/api.md) *in short*", "the-api-in-short"),
        ("snake_case names", "snake_case-names"),
    ],
)
def test_anchors_are_githubs_slugs(heading, anchor):
    assert slug(heading) == anchor


def test_each_kind_of_broken_link_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Other page\n\n## Usage\n\n## Usage\n\n## The `imgsim` CLI\n"
    )
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#usage-1) [ok](other.md#the-imgsim-cli) [ok](#page)\n"
        "[ok](../docs/) ![ok](other.md)\n"
        "[ok](https://docs.aws.amazon.com/sagemaker/) [ok](mailto:team@example.com)\n"
        "`[in code](missing.md)`\n"
        "```\n[in a fence](missing.md)\n```\n"
        "[gone](missing.md) [no heading](other.md#install) [here](#nowhere)\n"
        "[outside](../../etc/passwd) [bad url](https://localhost) [odd](ftp://x.org/y)\n"
        '<img src="missing.png"> [ref]: missing-ref.md\n'
    )
    (tmp_path / "etc").mkdir()
    found = {link.target: problem(link, tmp_path) for link in links(page)}
    assert {t for t, why in found.items() if why is None} == {
        "other.md#usage-1",
        "other.md#the-imgsim-cli",
        "#page",
        "../docs/",
        "other.md",
        "https://docs.aws.amazon.com/sagemaker/",
        "mailto:team@example.com",
    }
    assert found["missing.md"] == "no such file"
    assert found["other.md#install"] == "no heading or anchor #install in other.md"
    assert found["#nowhere"] == "no heading or anchor #nowhere in page.md"
    assert found["../../etc/passwd"] == "points outside the repository"
    assert found["https://localhost"] == "not a well-formed URL"
    assert found["ftp://x.org/y"].startswith("a ftp: link")
    assert found["missing.png"] == "no such file"
    assert anchors(tmp_path / "docs" / "other.md") == {
        "other-page",
        "usage",
        "usage-1",
        "the-imgsim-cli",
    }
