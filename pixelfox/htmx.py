"""Small HTMX helpers: detect HTMX requests, render a partial or the page."""

from __future__ import annotations

from flask import render_template, request


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def partial_or_page(partial: str, page: str, **context) -> str:
    return render_template(partial if is_htmx() else page, **context)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )
