"""json_response: the ETag is over exactly the bytes sent; 304 on a match; errors no-store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask, Response, request

from seerrperf import CacheControl, ConfigurationError, etag_for
from seerrperf.flask import Seerrperf, json_response

PUBLIC = CacheControl(public=True, max_age=60, stale_while_revalidate=600)
DATA = {"b": [1, 2.5, None], "a": "Amélie", "c": {"z": True}}
CHANGED = dt.datetime(2024, 5, 1, 12, 0, 30, 123, tzinfo=dt.UTC)


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config["SEERRPERF_DATABASE_URL"] = "postgresql://app@db.invalid/app"
    Seerrperf(app)

    @app.route("/data", methods=["GET", "POST"])
    def data() -> Response:
        status = int(request.args.get("status", "200"))
        weak = "weak" in request.args
        return json_response(
            DATA, cache_control=PUBLIC, status=status, headers={"Vary": "Accept"}, weak=weak
        )

    @app.get("/dated")
    def dated() -> Response:
        return json_response([1], cache_control=PUBLIC, last_modified=CHANGED)

    return app


def test_the_etag_is_the_hash_of_the_bytes_sent(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/data")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["ETag"] == etag_for(response.get_data()) == etag_for(DATA)
    assert response.get_data() == '{"a":"Amélie","b":[1,2.5,null],"c":{"z":true}}'.encode()
    assert response.headers["Cache-Control"] == "public, max-age=60, stale-while-revalidate=600"
    assert response.headers["Vary"] == "Accept"
    weak = client.get("/data?weak=1")
    assert weak.headers["ETag"] == "W/" + response.headers["ETag"]


def test_a_matching_if_none_match_gets_304_without_a_body(app: Flask) -> None:
    client = app.test_client()
    tag = client.get("/data").headers["ETag"]
    for method in ("GET", "HEAD"):
        again = client.open("/data", method=method, headers={"If-None-Match": f'"other", {tag}'})
        assert again.status_code == 304
        assert again.get_data() == b""
        assert again.headers["ETag"] == tag
        assert again.headers["Cache-Control"] == PUBLIC.to_header()
        assert "Content-Type" not in again.headers
    weak_match = client.get("/data", headers={"If-None-Match": f"W/{tag}"})
    assert weak_match.status_code == 304  # the weak comparison, as RFC 9110 asks
    other = client.get("/data", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    post = client.post("/data", headers={"If-None-Match": tag})
    assert post.status_code == 200  # only GET and HEAD get a 304
    head = client.head("/data")
    assert (head.status_code, head.get_data()) == (200, b"")
    assert head.headers["Content-Length"] == str(len(client.get("/data").get_data()))


def test_last_modified_and_if_modified_since(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/dated")
    assert first.headers["Last-Modified"] == "Wed, 01 May 2024 12:00:30 GMT"
    since = client.get("/dated", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304
    older = client.get("/dated", headers={"If-Modified-Since": "Wed, 01 May 2024 12:00:29 GMT"})
    assert older.status_code == 200


@pytest.mark.parametrize("status", [201, 204])
def test_other_successes_keep_the_policy(app: Flask, status: int) -> None:
    response = app.test_client().post(f"/data?status={status}")
    assert response.status_code == status
    assert response.headers["Cache-Control"] == PUBLIC.to_header()


@pytest.mark.parametrize("status", [301, 400, 404, 409, 503])
def test_any_other_status_is_no_store_without_validators(app: Flask, status: int) -> None:
    response = app.test_client().get(f"/data?status={status}")
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers
    assert response.get_json() == DATA


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"headers": {"etag": '"x"'}}, "headers must not set etag"),
        ({"headers": {"Content-Type": "text/plain"}}, "headers must not set Content-Type"),
        ({"cache_control": "public"}, "cache_control must be a CacheControl"),
        ({"status": 42}, "status"),
        ({"last_modified": dt.datetime(2024, 1, 1)}, "timezone-aware"),
        ({"data": {"x": float("nan")}}, "JSON-serialisable"),
        ({"data": {1, 2}}, "JSON-serialisable"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    app: Flask, arguments: dict[str, Any], message: str
) -> None:
    call: dict[str, Any] = {"data": DATA, "cache_control": PUBLIC, **arguments}
    with app.test_request_context("/"), pytest.raises(ConfigurationError, match=message):
        json_response(**call)
