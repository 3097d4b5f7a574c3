"""Who a visitor is (services/visitors.py), below the server: the login from Gradio's auth or
from the Spaces OAuth session, quotas by address with IPv6 grouped by prefix, work owned by the
browser's signed token, and the Space's owner as admin. Through the running app (cookies, two
browsers behind one address, Gradio's mocked OAuth routes) it is in test_public_server.py and
test_oauth_server.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from services import public, quotas, visitors
from services.quotas import LimitReached, Work


def request(host: str = "203.0.113.5", cookies: dict | None = None, session: dict | None = None, hash_: str = "s1"):
    """A Starlette-like request: client address, cookies, the session middleware's scope."""
    scope = {"type": "http"} | ({"session": session} if session is not None else {})
    return SimpleNamespace(client=SimpleNamespace(host=host), cookies=cookies or {}, scope=scope, session_hash=hash_)


@pytest.fixture(autouse=True)
def public_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_VISITOR_SALT", "test-salt")
    monkeypatch.setattr(quotas, "_quotas", None)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", True),  # one /64
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),  # the next /64
        ("::ffff:198.51.100.7", "198.51.100.7", True),  # IPv4-mapped is the IPv4 address
        ("198.51.100.7", "198.51.100.8", False),
    ],
)
def test_quotas_count_an_ipv6_prefix_as_one_visitor(a, b, same):
    first, second = visitors.of(request(a)), visitors.of(request(b))
    assert (first.quota_key == second.quota_key) is same


def test_the_ipv6_prefix_is_a_setting(monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_IPV6_PREFIX", "48")
    assert visitors.grouped("2001:db8:1:2::1") == visitors.grouped("2001:db8:1:ffff::1") == "2001:db8:1::/48"


def test_rotating_addresses_inside_a_64_spends_one_quota(monkeypatch):
    monkeypatch.setenv("FMG_PUBLIC_CALLS_PER_MINUTE", "3")
    prices = {"fake": {"fake-model": {"input_per_1m": 1.0, "output_per_1m": 1.0}}}
    monkeypatch.setattr(quotas, "price_table", lambda: prices)
    made = 0
    with pytest.raises(LimitReached):
        for i in range(1, 10):
            rotated = visitors.of(request(f"2001:db8:aa:bb::{i:x}"))
            quotas.charge(rotated, "fake", "fake-model", Work(input_chars=10, output_tokens=10), own_key=False)
            made += 1
    assert made == 3


def test_work_belongs_to_the_browser_not_the_address():
    token = visitors.mint_browser_token()
    mine = visitors.of(request("198.51.100.9", cookies={visitors.COOKIE: token}, hash_="page-1"))
    reloaded = visitors.of(request("198.51.100.9", cookies={visitors.COOKIE: token}, hash_="page-2"))
    neighbour = visitors.of(request("198.51.100.9", cookies={visitors.COOKIE: visitors.mint_browser_token()}))
    assert mine.key == reloaded.key != neighbour.key  # a reload keeps one's runs; the neighbour has their own
    assert mine.quota_key == neighbour.quota_key  # one address: one quota
    assert token.split(".")[0] not in mine.id  # the stores never hold the token itself


@pytest.mark.parametrize("cookie", ["", "abc", "abc.def", "a.b.c", "x" * 200 + ".y"])
def test_a_cookie_we_did_not_sign_is_no_browser(cookie):
    visitor = visitors.of(request(cookies={visitors.COOKIE: cookie}, hash_="sess"))
    assert visitor.id == "session:sess"


def test_a_forged_signature_fails_and_a_new_salt_invalidates_old_tokens(monkeypatch):
    token = visitors.mint_browser_token()
    assert visitors.browser_of(token) is not None
    assert visitors.browser_of(token.split(".")[0] + "." + "0" * 32) is None
    monkeypatch.setenv("FMG_VISITOR_SALT", "another-salt")
    assert visitors.browser_of(token) is None


def oauth(user: str, expires_in: float = 3600) -> dict:
    return {"oauth_info": {"expires_at": time.time() + expires_in, "userinfo": {"preferred_username": user}}}


def test_the_spaces_oauth_login_is_the_visitor_and_its_quota(monkeypatch):
    ada = visitors.of(request("198.51.100.1", session=oauth("ada")))
    elsewhere = visitors.of(request("2001:db8::5", session=oauth("ada")))
    assert ada.id == "user:ada" and ada.logged_in and not ada.admin
    assert ada.key == elsewhere.key and ada.quota_key == elsewhere.quota_key  # the login, wherever it is


def test_an_expired_login_is_anonymous():
    assert visitors.of(request(session=oauth("ada", expires_in=-5), hash_="s9")).id == "session:s9"


def test_the_spaces_owner_is_an_admin_besides_the_listed_ones(monkeypatch):
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "Owner")
    monkeypatch.setenv("FMG_PUBLIC_ADMINS", "helper")
    assert visitors.of(request(session=oauth("owner"))).admin
    assert visitors.of(request(session=oauth("helper"))).admin
    assert not visitors.of(request(session=oauth("someone"))).admin
    assert public.limits().admins == "helper"


def test_gradio_password_auth_still_names_the_user():
    named = SimpleNamespace(**vars(request()), username="bo")
    assert visitors.of(named).id == "user:bo"
