"""Folders of documents and articles export files (Zendesk Help Center, Intercom Articles) as listings."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .documents import Document, Listing, Problem
from .errors import ImportFailed, PageFailed, PageSkipped
from .extraction import extract_html, extract_pdf, split_markdown_title

FOLDER_SUFFIXES = {".md", ".markdown", ".html", ".htm", ".txt", ".pdf"}
EXPECTED_EXPORT = ('a Zendesk Help Center articles export ({"articles": [{"title", "body", "html_url", ...}]}) '
                   'or an Intercom articles list ({"type": "list", "data": [{"title", "body", "url", ...}]})')


def read_file(path: Path, key: str) -> Document:
    """One file of a folder as a document, by its suffix; PageFailed when it has no usable text."""
    suffix = path.suffix.lower()
    fallback = path.stem.replace("-", " ").replace("_", " ").strip().capitalize() or path.name
    if suffix == ".pdf":
        title, text = extract_pdf(path.read_bytes(), key)
        return Document(key, title or fallback, text)
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        title, markdown, anchors = extract_html(text, key)
        return Document(key, title, markdown, anchors)
    if suffix in (".md", ".markdown"):
        title, body = split_markdown_title(text, fallback)
        return Document(key, title, body)
    return Document(key, fallback, text.strip())


def list_folder(root: Path, max_file_bytes: int) -> Listing:
    """Every Markdown, HTML, text and PDF file under `root` (hidden ones left out), keyed by relative path."""
    if not root.is_dir():
        raise ImportFailed(str(root), "not a folder")
    listing = Listing()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.suffix.lower() not in FOLDER_SUFFIXES:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        key = relative.as_posix()
        try:
            if path.stat().st_size > max_file_bytes:
                raise PageFailed(key, f"too large ({path.stat().st_size} bytes; the limit is {max_file_bytes})")
            document = read_file(path, key)
            if not document.markdown.strip():
                raise PageSkipped(key, "empty")
            listing.items.append(document)
        except PageSkipped as error:
            listing.items.append(Problem(key, error.reason, "skipped"))
        except PageFailed as error:
            listing.items.append(Problem(key, error.reason, "failed"))
        except OSError as error:
            listing.items.append(Problem(key, f"cannot be read ({error.strerror or error})", "failed"))
    if not listing.items:
        raise ImportFailed(str(root), f"no {', '.join(sorted(FOLDER_SUFFIXES))} files in it")
    return listing


def list_export(path: Path, max_bytes: int) -> Listing:
    """The articles of an export file; ImportFailed naming the file when it is not one of the two shapes."""
    try:
        if path.stat().st_size > max_bytes:
            raise ImportFailed(str(path), f"too large ({path.stat().st_size} bytes; the limit is {max_bytes})")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ImportFailed(str(path), f"cannot be read ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ImportFailed(str(path), f"not valid JSON ({error}); expected {EXPECTED_EXPORT}") from None
    shape = export_shape(data)
    if shape is None:
        raise ImportFailed(str(path), f"not an articles export; expected {EXPECTED_EXPORT}")
    articles, read = shape
    listing = Listing()
    for n, article in enumerate(articles):
        listing.items.append(_article(article, n, path.name, read))
    return listing


Reader = Callable[[dict[str, Any], int, str], Document]


def export_shape(data: Any) -> tuple[list[Any], Reader] | None:
    """The article list and the reader for its shape, or None when it is neither Zendesk's nor Intercom's."""
    if isinstance(data, dict) and isinstance(data.get("articles"), list):
        return data["articles"], _zendesk_article
    if isinstance(data, dict) and data.get("type") == "list" and isinstance(data.get("data"), list):
        return data["data"], _intercom_article
    return None


def _article(article: Any, n: int, file_name: str, read: Reader) -> Document | Problem:
    where = f"{file_name}: article {n + 1}"
    if not isinstance(article, dict):
        return Problem(where, "not an object", "failed")
    try:
        return read(article, n, file_name)
    except PageSkipped as error:
        return Problem(error.url, error.reason, "skipped")
    except PageFailed as error:
        return Problem(error.url, error.reason, "failed")


def _body(article: dict[str, Any], key: str) -> tuple[str, dict[str, str]]:
    body = article.get("body")
    if not isinstance(body, str) or not body.strip():
        raise PageSkipped(key, "no body")
    # The body is already the article: wrapped as a page so the extractor keeps it whole.
    _title, markdown, anchors = extract_html(f"<html><body><article>{body}</article></body></html>", key,
                                        skip_link_lists=False)
    return markdown, anchors


def _title(article: dict[str, Any], key: str) -> str:
    title = article.get("title") or article.get("name")
    if not isinstance(title, str) or not title.strip():
        raise PageFailed(key, "no title")
    return title.strip()[:500]


def _zendesk_article(article: dict[str, Any], n: int, file_name: str) -> Document:
    key = str(article.get("html_url") or f"{file_name}#article-{article.get('id', n + 1)}")
    if article.get("draft") is True:
        raise PageSkipped(key, "a draft")
    title = _title(article, key)
    markdown, anchors = _body(article, key)
    return Document(key, title, markdown, anchors, updated_at=_time(article.get("updated_at")))


def _intercom_article(article: dict[str, Any], n: int, file_name: str) -> Document:
    key = str(article.get("url") or f"{file_name}#article-{article.get('id', n + 1)}")
    if article.get("state", "published") != "published":
        raise PageSkipped(key, f"not published ({article.get('state')})")
    title = _title(article, key)
    markdown, anchors = _body(article, key)
    return Document(key, title, markdown, anchors, updated_at=_time(article.get("updated_at")))


def _time(value: Any) -> datetime | None:
    """An ISO 8601 string (Zendesk) or Unix seconds (Intercom) as an aware datetime."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
