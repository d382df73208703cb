"""Accounts: register, login by username or e-mail, throttling, logout, passwords, CLI."""

from __future__ import annotations

from tests.conftest import csrf_from


def test_register_logs_in_and_hashes_password_slowly(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import User

    resp = auth.register("bob", "Bob@Example.org")
    assert resp.status_code == 302
    assert "Log out (bob)" in client.get("/").get_data(as_text=True)
    with app.app_context():
        user = db.session.execute(db.select(User)).scalar_one()
        assert user.email == "bob@example.org" and user.role == "user"
        assert user.status == "active"
        assert user.password_hash.startswith("scrypt:")
        assert "correct horse" not in user.password_hash


def test_register_rejects_bad_input_and_duplicates(client, auth):
    auth.register("bob")
    auth.logout()
    dup = auth.register("bob", "other@example.org")
    assert dup.status_code == 400
    assert "already registered" in dup.get_data(as_text=True)
    token = auth.token("/register")
    short = client.post(
        "/register",
        data={
            "username": "carol",
            "email": "carol@example.org",
            "password": "short",
            "password_confirm": "short",
            "csrf_token": token,
        },
    )
    assert short.status_code == 400
    mismatch = client.post(
        "/register",
        data={
            "username": "carol",
            "email": "carol@example.org",
            "password": "long enough 1",
            "password_confirm": "long enough 2",
            "csrf_token": token,
        },
    )
    assert mismatch.status_code == 400 and "Passwords differ" in mismatch.get_data(as_text=True)


def test_login_with_username_or_email_and_wrong_password(client, auth):
    auth.register("dave")
    auth.logout()
    assert auth.login("dave", "wrong password").status_code == 401
    assert auth.login("dave").status_code == 302
    auth.logout()
    assert auth.login("DAVE@example.org").status_code == 302
    assert "Log out (dave)" in client.get("/").get_data(as_text=True)


def test_login_open_redirect_is_refused(client, auth):
    auth.register("erin")
    auth.logout()
    token = auth.token("/login")
    resp = client.post(
        "/login?next=https://evil.example/x",
        data={"username": "erin", "password": "correct horse 1", "csrf_token": token},
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


def test_login_rate_limited_per_username_with_retry_after(app, client, auth):
    app.config["LOGIN_LIMIT_PER_USERNAME"] = 3
    auth.register("frank")
    auth.logout()
    for _ in range(3):
        assert auth.login("frank", "nope nope").status_code == 401
    resp = auth.login("frank")  # even the right password waits now
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    # Another account from the same IP is not locked by frank's limit.
    auth.register("grace")
    auth.logout()
    assert auth.login("grace").status_code == 302


def test_login_rate_limited_per_ip(app, client, auth):
    app.config["LOGIN_LIMIT_PER_IP"] = 2
    auth.register("heidi")
    auth.logout()
    auth.login("x1", "nope nope")
    auth.login("x2", "nope nope")
    assert auth.login("heidi").status_code == 429


def test_disabled_user_cannot_log_in(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import User

    auth.register("ivan")
    auth.logout()
    with app.app_context():
        db.session.execute(db.update(User).values(status="disabled"))
        db.session.commit()
    assert auth.login("ivan").status_code == 401


def test_logout_needs_post_with_csrf(client, auth):
    auth.register("judy")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert auth.logout().status_code == 302
    assert "Log in" in client.get("/").get_data(as_text=True)


def test_password_change(client, auth):
    auth.register("kim")
    token = auth.token("/user/settings")
    wrong = client.post(
        "/user/settings",
        data={
            "current_password": "not it at all",
            "new_password": "brand new pass",
            "new_password_confirm": "brand new pass",
            "csrf_token": token,
        },
    )
    assert wrong.status_code == 400
    ok = client.post(
        "/user/settings",
        data={
            "current_password": "correct horse 1",
            "new_password": "brand new pass",
            "new_password_confirm": "brand new pass",
            "csrf_token": token,
        },
    )
    assert ok.status_code == 302
    auth.logout()
    assert auth.login("kim").status_code == 401
    assert auth.login("kim", "brand new pass").status_code == 302


def test_cli_users_create_list_set_password(app, client, auth):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--admin",
            "--username",
            "root",
            "--email",
            "root@example.org",
            "--password",
            "admin pass 1",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "created admin root" in result.output
    dup = runner.invoke(
        args=[
            "users",
            "create",
            "--username",
            "root",
            "--email",
            "r2@example.org",
            "--password",
            "admin pass 1",
        ]
    )
    assert dup.exit_code != 0 and "already registered" in dup.output
    listed = runner.invoke(args=["users", "list"])
    assert "root\troot@example.org\tadmin\tactive" in listed.output
    changed = runner.invoke(
        args=["users", "set-password", "--username", "root", "--password", "another pass 2"]
    )
    assert changed.exit_code == 0
    assert auth.login("root", "admin pass 1").status_code == 401
    assert auth.login("root", "another pass 2").status_code == 302


def test_api_key_create_rotate_revoke(app, client, auth):
    auth.register("lena")
    token = auth.token("/user/settings")
    page = client.post("/user/settings/api-key", data={"csrf_token": token})
    html = page.get_data(as_text=True)
    key = html.split('id="new-api-key"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert key.startswith("pxl_")
    assert client.get("/api/v1/ping").get_json() == {"ping": "pong"}
    from pixelfox.extensions import db
    from pixelfox.models import User

    with app.app_context():
        user = db.session.execute(db.select(User)).scalar_one()
        assert user.api_key_hash and key not in (user.api_key_hash, user.api_key_prefix)
    # The key is shown once: the settings page shows only its prefix.
    settings_page = client.get("/user/settings").get_data(as_text=True)
    assert key not in settings_page and key[:10] in settings_page
    token = csrf_from(settings_page)
    rotated = client.post("/user/settings/api-key", data={"csrf_token": token})
    new_key = rotated.get_data(as_text=True).split('id="new-api-key"')[0]
    new_key = new_key.rsplit('value="', 1)[1].split('"')[0]
    assert new_key != key
    client.post("/user/settings/api-key/revoke", data={"csrf_token": token})
    with app.app_context():
        assert db.session.execute(db.select(User.api_key_hash)).scalar() is None
