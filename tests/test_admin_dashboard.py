"""The admin dashboard and the queues page."""

from __future__ import annotations

from tests.conftest import csrf_from, fixture_path, run_jobs, upload
from tests.test_admin import make_admin


def test_dashboard_shows_totals_chart_pools_nodes_and_failures(app, client):
    from pixelfox.services import heartbeat

    make_admin(app, client)
    upload(client, fixture_path("tiny.png"))
    upload(client, fixture_path("alpha.png"))
    run_jobs(app)
    with app.app_context():
        heartbeat.beat()
    page = client.get("/admin/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<strong data-k="images">2</strong>' in html
    assert '<strong data-k="users">1</strong>' in html
    assert html.count("<rect ") == 30  # one bar per day
    assert ": 2</title>" in html  # today's bar carries both uploads
    assert "default" in html and "badge-healthy" in html
    assert "<code>local</code>" in html
    fragment = client.get("/admin/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('<div id="dashboard"') and 'hx-trigger="every 5s"' in fragment


def test_queues_page_lists_failed_jobs_with_traceback_retry_and_delete(app, client):
    from rq import Queue
    from rq.registry import FailedJobRegistry

    make_admin(app, client)
    with app.app_context():
        redis = app.extensions["pixelfox_redis"]
        q = Queue("node-local", connection=redis)
        q.enqueue("pixelfox.jobs.images.process_image", 987654)  # no such image: "gone"
        q.enqueue("os.path.getsize", "/nonexistent/file")  # raises FileNotFoundError
    page = client.get("/admin/queues").get_data(as_text=True)
    assert "jobs waiting, no live worker" in page and "2 queued" in page
    run_jobs(app)
    page = client.get("/admin/queues").get_data(as_text=True)
    assert "1 failed" in page and "FileNotFoundError" in page
    token = csrf_from(page)
    with app.app_context():
        failed_id = FailedJobRegistry(queue=q).get_job_ids()[0]
    resp = client.post(
        "/admin/queues/failed/retry", data={"csrf_token": token, "job_id": failed_id}
    )
    assert resp.status_code == 302
    with app.app_context():
        assert q.count == 1 and FailedJobRegistry(queue=q).count == 0
    run_jobs(app)
    client.post("/admin/queues/failed/delete", data={"csrf_token": token, "job_id": failed_id})
    with app.app_context():
        assert FailedJobRegistry(queue=q).count == 0
    assert client.post("/admin/queues/failed/retry", data={"job_id": failed_id}).status_code == 400


def test_queues_page_shows_periodic_jobs(app, client):
    make_admin(app, client)
    app.test_cli_runner().invoke(args=["scheduler", "--sync-only"])
    page = client.get("/admin/queues").get_data(as_text=True)
    for name in ("pool_stats", "sweeper", "heartbeat"):
        assert f"periodic-{name}-local" in page
