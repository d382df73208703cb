"""End-to-end in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the app started on 127.0.0.1 as its own process with a real `rq worker node-local`.

Screenshots of the main pages go to test-output/screenshots/."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
import requests

from tests.conftest import ROOT, browser_login, fixture_path
from tests.test_multinode import Node

SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
        if os.path.isfile(p)
    ),
    None,
)
ARGS = [
    "--no-sandbox",  # the suite may run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Chromium is missing: `make test` installs it (scripts/install-system-deps.sh)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def stack(app, tmp_path):
    """The app node's web process and its worker, as ops run them."""
    node = Node(app, "local", tmp_path).start()
    worker = node.worker(app)
    yield node
    worker.terminate()
    worker.wait(timeout=15)
    node.stop()


def new_page(browser, node):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda resp: (
            errors.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 and resp.status != 429
            else None
        ),
    )
    page.js_errors = errors
    return page


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.evaluate(
        "document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')"
    )
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page, node, username, password):
    page.goto(f"{node.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]:has-text('Log in')")
    page.wait_for_url(lambda url: "/login" not in url)


def make_admin(app, username="admin"):
    from pixelfox.services import accounts

    with app.app_context():
        accounts.create_user(username, f"{username}@example.org", "admin pass 1", "admin")


def test_uploader_sees_processing_finish_without_reloading(app, stack, browser):
    page = new_page(browser, stack)
    page.goto(f"{stack.url}/register")
    page.fill("input[name=username]", "uploader")
    page.fill("input[name=email]", "uploader@example.org")
    page.fill("input[name=password]", "browser pass 1")
    page.fill("input[name=password_confirm]", "browser pass 1")
    page.click("form button[type=submit]")
    page.goto(f"{stack.url}/")
    shot(page, "upload-form")
    page.set_input_files("input[name=file]", str(fixture_path("photo.jpg")))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/image/*")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    status = page.locator("#image-status")
    assert status.get_attribute("data-status") in ("pending", "processing", "complete")
    page.wait_for_selector("#image-status[data-status=complete]", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True
    preview = page.locator("#image-status img.preview")
    preview.wait_for()
    page.wait_for_function("document.querySelector('#image-status img.preview').naturalWidth > 0")
    # <picture>: AVIF and WebP before the original format, with its size (no layout jump);
    # Chromium takes the AVIF.
    sources = page.locator("#image-status picture source")
    assert [sources.nth(i).get_attribute("type") for i in range(sources.count())] == [
        "image/avif",
        "image/webp",
    ]
    assert preview.get_attribute("width") and preview.get_attribute("height")
    assert page.evaluate("document.querySelector('#image-status img.preview').currentSrc").endswith(
        "_medium.avif"
    )
    cells = page.locator("#image-status table.grid a")
    assert cells.count() >= 6  # sizes × formats, each a link to a real file
    for href in [cells.nth(i).get_attribute("href") for i in range(cells.count())]:
        assert requests.get(href, timeout=10).status_code == 200
    shot(page, "viewer")
    assert page.js_errors == []


def _images_for_move(stack, tmp_path, count=12) -> list[str]:
    """Upload `count` distinct ~800×600 JPEGs over HTTP as a user; wait until processed."""
    from pixelfox.imaging.magick import Image

    session, token = browser_login(stack.url, "mover")
    uuids = []
    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as photo:
        for i in range(count):
            path = tmp_path / f"m{i}.jpg"
            with photo.clone() as img:
                img.resize(820 + i, 615)
                img.compression_quality = 95
                img.save(filename=f"jpeg:{path}")
            with open(path, "rb") as fh:
                resp = session.post(
                    f"{stack.url}/upload",
                    files={"file": (path.name, fh, "image/jpeg")},
                    data={"csrf_token": token},
                    headers={"Accept": "application/json"},
                )
            assert resp.status_code == 201, resp.text
            uuids.append(resp.json()["image_uuid"])
    deadline = time.time() + 180
    while time.time() < deadline:
        states = [session.get(f"{stack.url}/api/v1/images/{u}/status").json() for u in uuids]
        if all(s["status"] == "complete" for s in states):
            return uuids
        time.sleep(0.5)
    raise AssertionError(f"images not processed: {[s['status'] for s in states]}")


def test_admin_creates_a_pool_moves_into_it_pauses_and_resumes(app, stack, browser, tmp_path):
    from pixelfox.services import settings

    uuids = _images_for_move(stack, tmp_path)
    make_admin(app)
    with app.app_context():
        settings.update({"move_max_mb_per_second": 1})  # slow enough to pause mid-way
    page = new_page(browser, stack)
    login(page, stack, "admin", "admin pass 1")

    # Create a pool; its badge turns healthy once the node's worker has sent a heartbeat.
    page.goto(f"{stack.url}/admin/storage/create")
    page.fill("input[name=name]", "cold")
    page.fill("input[name=node_id]", "local")
    page.select_option("select[name=storage_tier]", "cold")
    page.fill("input[name=base_path]", str(tmp_path / "cold"))
    page.fill("input[name=public_base_url]", stack.url)
    page.fill("input[name=max_size_gb]", "5")
    page.fill("input[name=priority]", "50")
    page.click("button:has-text('Save pool')")
    page.wait_for_url("**/admin/storage")
    assert "Pool cold saved." in page.inner_text(".flashes")
    badge_id = page.locator("tr", has_text="cold").locator("span[id^=badge-]").get_attribute("id")
    # The badge is swapped in place (out of band) by the page's 5 s poll.
    page.wait_for_selector(f"#{badge_id}.badge-healthy", timeout=30_000)
    assert page.inner_text(f"#{badge_id}").startswith("healthy")
    shot(page, "admin-storage")

    # Pre-flight, then start; the bar moves, pause holds it, resume finishes it.
    page.locator("tr", has_text="default").locator("a:has-text('Move')").click()
    page.select_option("select[name=target_pool_id]", label="cold (node local, cold)")
    page.click("button:has-text('Pre-flight check')")
    assert "Images to move" in page.inner_text("table.grid")
    assert f"<td>{len(uuids)}</td>" in page.content()
    page.click("button:has-text('Start move')")
    page.wait_for_url("**/admin/moves/*")
    progress = page.locator("#move-progress")

    def done_count() -> int:
        return int(page.locator("#move-progress [data-k=done]").inner_text())

    page.wait_for_function(  # the bar moves while the batch runs, not only at its end
        "() => +document.querySelector('#move-progress [data-k=done]').textContent > 0"
    )
    shot(page, "admin-move-running")
    page.click("#move-progress button:has-text('Pause')")
    page.wait_for_selector("#move-progress[data-status=paused]")
    time.sleep(2.5)  # a batch in flight finishes its current image, then stops
    held = done_count()
    time.sleep(2.5)
    assert done_count() == held < len(uuids), "a paused move kept copying"
    shot(page, "admin-move-paused")
    page.click("#move-progress button:has-text('Resume')")
    page.wait_for_function(  # the bar moves again after the resume
        f"() => +document.querySelector('#move-progress [data-k=done]').textContent > {held}"
    )
    page.wait_for_selector("#move-progress[data-status=done]", timeout=120_000)
    assert float(progress.locator("progress").get_attribute("value")) == 100
    assert done_count() == len(uuids)
    text = progress.inner_text()
    assert re.search(r"\b100(\.0)? %", text) and f"of {len(uuids)} images" in text
    shot(page, "admin-move-done")
    for name in ("admin", "admin/nodes", "admin/queues", "admin/images", "admin/users"):
        page.goto(f"{stack.url}/{name}")
        shot(page, name.replace("/", "-"))

    # A destructive action asks first (hx-confirm); dismissing keeps the image, accepting
    # deletes it and says so in a toast, without leaving the list.
    page.goto(f"{stack.url}/admin/images")
    row = page.locator(f"#image-{uuids[0]}")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    row.locator("button:has-text('Delete')").click()
    page.wait_for_timeout(500)
    assert questions == ["Delete this image and all its files?"]
    assert page.locator(f"#image-{uuids[0]}").count() == 1
    page.once("dialog", lambda d: answer(d, True))
    row.locator("button:has-text('Delete')").click()
    page.locator(".flashes", has_text="deleted").wait_for()
    assert page.locator(f"#image-{uuids[0]}").count() == 0
    assert "/admin/images" in page.url
    assert page.js_errors == []


def test_admin_changes_the_upload_rate_limit_and_it_is_enforced(app, stack, browser):
    make_admin(app)
    page = new_page(browser, stack)
    login(page, stack, "admin", "admin pass 1")
    page.goto(f"{stack.url}/admin/settings")
    page.fill("input[name=upload_rate_limit_per_minute]", "2")
    page.click("form button[type=submit]:has-text('Save')")
    assert "saved" in page.inner_text(".flashes").lower()
    assert page.input_value("input[name=upload_rate_limit_per_minute]") == "2"
    shot(page, "admin-settings")
    for i, name in enumerate(["tiny.png", "alpha.png", "photo.jpg"]):
        page.goto(f"{stack.url}/")
        page.set_input_files("input[name=file]", str(fixture_path(name)))
        page.click("#upload-form button[type=submit]")
        if i < 2:
            page.wait_for_url("**/image/*")
        else:
            result = page.locator("#upload-result")
            result.get_by_text("Too many uploads", exact=False).wait_for()
            assert "/image/" not in page.url
            shot(page, "upload-rate-limited")
