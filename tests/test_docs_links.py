"""Every relative link and image in README.md and docs/*.md points at a file that exists, and every #anchor at a heading.

Links to web pages (http, https, mailto) are not followed: the tests never use
the network. Anchors are matched against the headings' slugs as GitHub makes
them (lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats)
and against explicit <a id="..."> or <a name="..."> anchors. Text inside code
blocks and inline code is not a link, so it is skipped.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    prose = without_code(text)
    return [*INLINE_LINK.findall(prose), *REFERENCE_DEFINITION.findall(prose), *HTML_LINK.findall(prose)]


def github_slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps only its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # GitHub keeps letters, digits, underscores, hyphens and spaces
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    found, seen = set(HTML_ANCHOR.findall(text)), {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I))  # http:, https:, mailto:, ...


def broken_links(document: Path, root: Path = REPO) -> list[str]:
    """What is wrong with each link of `document` that should resolve inside `root`."""
    broken = []
    for target in links(document.read_text(encoding="utf-8")):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (document.parent / path_part).resolve() if path_part else document
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor.lower() not in anchors(destination):
            broken.append(f"{target} (no heading #{anchor} in {destination.relative_to(root)})")
        elif root not in destination.parents and destination != root:
            broken.append(f"{target} (outside the repository)")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(document):
    assert broken_links(document) == [], f"{document.relative_to(REPO)} has broken links"


def test_the_checker_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Results across seeds\n## Results across seeds\n", encoding="utf-8")
    (tmp_path / "picture.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#results-across-seeds) [ok](other.md#results-across-seeds-1) ![ok](picture.png)\n"
                    "[gone](missing.md) ![gone](docs/missing.png) [bad](other.md#no-such-heading) [web](https://example.org)\n"
                    "`[code](not-a-link.md)`\n```\n[code](not-a-link-either.md)\n```\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == ["missing.md (no such file)", "docs/missing.png (no such file)",
                                            "other.md#no-such-heading (no heading #no-such-heading in other.md)"]


def test_github_slugs_drop_punctuation_and_keep_hyphens():
    assert github_slug("4. Results: loss *and* probes (3 seeds)") == "4-results-loss-and-probes-3-seeds"
    assert github_slug("The `LoRALinear` layer") == "the-loralinear-layer"
    assert github_slug("Choosing a method — which when?") == "choosing-a-method--which-when"
