"""The outage contract: which exceptions are outages, and the exact bytes of the answer."""

from __future__ import annotations

import json
import math

import psycopg
import psycopg_pool
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import errors as pg

from seerrperf import (
    CacheLoadAbortedError,
    CacheLoadTimeout,
    CacheOverloadedError,
    ConfigurationError,
    LockLost,
    LockTimeout,
    QueryTimeout,
    SeerrperfError,
    TmdbAuthError,
    TmdbError,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
)
from seerrperf._web import (
    Problem,
    classify_outage,
    error_headers,
    outage_problem,
    server_error_problem,
    too_large_problem,
)
from seerrperf._web.outage import PROBLEM_TYPE_BASE
from tests._support import SENTINEL


def state(code: str) -> BaseException:
    """A psycopg error as the driver raises it for SQLSTATE ``code``."""
    return pg.lookup(code)(f"server says {SENTINEL}")


def tmdb(cls: type[TmdbError], status: int | None = 503) -> TmdbError:
    return cls(f"TMDB /movie/1: {SENTINEL}", status=status, path="/movie/1")


OUTAGES: list[tuple[BaseException, str]] = [
    (psycopg.OperationalError(f"connection to {SENTINEL} failed"), "database-unavailable"),
    (psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec"), "database-unavailable"),
    (psycopg_pool.TooManyRequests("10 requests waiting already"), "database-unavailable"),
    (psycopg_pool.PoolClosed("the pool 'x' is already closed"), "database-unavailable"),
    (psycopg.errors.ConnectionTimeout("connection timeout expired"), "database-unavailable"),
    (state("08006"), "database-unavailable"),  # connection_failure
    (state("08001"), "database-unavailable"),  # unable to establish
    (state("53300"), "database-unavailable"),  # too_many_connections
    (state("53100"), "database-unavailable"),  # disk_full
    (state("57P01"), "database-unavailable"),  # admin_shutdown
    (state("57P03"), "database-unavailable"),  # cannot_connect_now
    (state("57P05"), "database-unavailable"),  # idle_session_timeout
    (state("58030"), "database-unavailable"),  # io_error
    (state("25006"), "database-unavailable"),  # read_only_sql_transaction (a standby)
    (state("57014"), "database-timeout"),  # query_canceled: statement_timeout
    (state("55P03"), "database-timeout"),  # lock_not_available: lock_timeout
    (tmdb(TmdbUnavailable), "upstream-unavailable"),
    (tmdb(TmdbUnavailable, None), "upstream-unavailable"),
    (tmdb(TmdbRateLimited, 429), "upstream-rate-limited"),
    (LockTimeout("advisory lock not acquired within the timeout"), "busy"),
    (CacheLoadAbortedError("the load was cancelled"), "interrupted"),
    (CacheLoadTimeout("the load took longer than 30 s"), "interrupted"),
    (QueryTimeout("no answer within the pool's query_timeout of 35 s"), "database-timeout"),
    (CacheOverloadedError("10,000 loads in flight"), "busy"),
    (LockLost("the session died while the lock was held", committed=False), "database-unavailable"),
]

NOT_OUTAGES: list[BaseException] = [
    state("23505"),  # unique_violation
    state("23503"),  # foreign_key_violation
    state("42P01"),  # undefined_table
    state("42601"),  # syntax_error
    state("22012"),  # division_by_zero
    state("40001"),  # serialization_failure: the app retries the transaction
    state("40P01"),  # deadlock_detected: a lock-ordering bug
    state("25P03"),  # idle_in_transaction_session_timeout: the request's own doing
    state("54000"),  # program_limit_exceeded
    state("55000"),  # object_not_in_prerequisite_state
    state("F0000"),  # config_file_error
    state("XX000"),  # internal_error
    psycopg.InterfaceError("the connection is closed"),
    psycopg.ProgrammingError("the query has 1 placeholder but 2 parameters were passed"),
    tmdb(TmdbNotFound, 404),
    tmdb(TmdbAuthError, 401),
    tmdb(TmdbResponseError, 400),
    ConfigurationError("bad"),
    SeerrperfError("closed"),
    TimeoutError("a generic timeout is the app's own"),
    ValueError("x"),
    KeyboardInterrupt(),
]


@pytest.mark.parametrize(("exc", "kind"), OUTAGES, ids=lambda v: type(v).__name__)
def test_outages_are_classified(exc: BaseException, kind: str) -> None:
    outage = classify_outage(exc)
    assert outage is not None
    assert outage.kind == kind
    assert outage.retry_after >= 1
    assert SENTINEL not in outage.detail + outage.title


@pytest.mark.parametrize("exc", NOT_OUTAGES, ids=lambda v: type(v).__name__)
def test_other_errors_are_not_outages(exc: BaseException) -> None:
    assert classify_outage(exc) is None


def test_a_wrapped_outage_is_the_wrappers_business() -> None:
    class AppError(Exception):
        pass

    wrapped = AppError("our own")
    wrapped.__cause__ = psycopg.OperationalError("lost")
    assert classify_outage(wrapped) is None


@pytest.mark.parametrize(
    ("given_seconds", "sent"),
    [(12.3, 13), (0.2, 1), (0, 1), (30, 30), (1e9, 3600), (math.nan, 10), (math.inf, 10),
     (-5, 10), (True, 10), ("12", 10), (None, 10)],
)  # fmt: skip
def test_retry_after_comes_from_the_error_when_it_knows(given_seconds: object, sent: int) -> None:
    error = tmdb(TmdbRateLimited, 429)
    error.retry_after = given_seconds  # type: ignore[assignment]  # a hostile value
    outage = classify_outage(error)
    assert outage is not None
    assert outage.retry_after == sent
    assert outage_problem(outage).headers()["Retry-After"] == str(sent)


def test_tmdb_errors_carry_no_retry_after_unless_told() -> None:
    assert tmdb(TmdbRateLimited, 429).retry_after is None


def test_a_hostile_sqlstate_cannot_make_classification_raise() -> None:
    weird = psycopg.OperationalError("x")
    weird.sqlstate = 57014  # type: ignore[assignment]  # not a str: treated as none
    outage = classify_outage(weird)
    assert outage is not None
    assert outage.kind == "database-unavailable"


# --- groups -------------------------------------------------------------------------------

LEAVES = st.sampled_from(
    [exc for exc, _ in OUTAGES[:3]] + [NOT_OUTAGES[0], NOT_OUTAGES[-3], LockTimeout("t")]
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, min_size=1, max_size=4).map(
        lambda items: (
            ExceptionGroup("group", [i for i in items if isinstance(i, Exception)])
            if all(isinstance(i, Exception) for i in items)
            else BaseExceptionGroup("group", items)
        )
    ),
    max_leaves=12,
)


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for child in exc.exceptions for leaf in leaves(child)]
    return [exc]


@given(TREES)
def test_a_group_is_an_outage_only_when_every_leaf_is(tree: BaseException) -> None:
    found = leaves(tree)
    expected = [classify_outage(leaf) for leaf in found]
    outage = classify_outage(tree)
    if any(item is None for item in expected):
        assert outage is None
    else:
        assert outage == expected[0]


# --- the bytes ----------------------------------------------------------------------------


def test_the_503_answer_byte_for_byte() -> None:
    outage = classify_outage(psycopg_pool.PoolTimeout(f"no connection ({SENTINEL})"))
    assert outage is not None
    problem = outage_problem(outage)
    assert problem.body() == (
        b'{"detail":"The database cannot be reached or has no free connection. Try again later.",'
        b'"status":503,"title":"Database unavailable",'
        b'"type":"https://github.com/seerrperf/seerrperf/blob/main/docs/outages.md'
        b'#database-unavailable"}'
    )
    assert problem.headers() == {
        "Content-Type": "application/problem+json",
        "Cache-Control": "no-store",
        "Retry-After": "5",
    }


@pytest.mark.parametrize(("exc", "kind"), OUTAGES, ids=lambda v: type(v).__name__)
def test_every_outage_body_is_rfc9457_and_says_nothing_of_the_error(
    exc: BaseException, kind: str
) -> None:
    outage = classify_outage(exc)
    assert outage is not None
    problem = outage_problem(outage)
    body = json.loads(problem.body())
    assert body == {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": outage.title,
        "status": 503,
        "detail": outage.detail,
    }
    assert SENTINEL.encode() not in problem.body()
    assert problem.headers()["Retry-After"].isdigit()


def test_the_500_and_413_answers() -> None:
    assert server_error_problem().body() == (
        b'{"detail":"The server could not answer this request.","status":500,'
        b'"title":"Internal Server Error","type":"about:blank"}'
    )
    assert server_error_problem().headers() == {
        "Content-Type": "application/problem+json",
        "Cache-Control": "no-store",
    }
    assert json.loads(too_large_problem(1024).body()) == {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": "The request body must not be larger than 1024 bytes.",
    }
    assert Problem(404, "Not Found").as_dict() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
    }


# --- error_headers ------------------------------------------------------------------------


def test_error_headers_make_any_error_uncacheable() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("cache-control", "public, max-age=600"),
        ("Set-Cookie", "a=1"),
        ("ETag", '"abc"'),
        ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("EXPIRES", "Sun, 06 Nov 2094 08:49:37 GMT"),
        ("Set-Cookie", "b=2"),
        ("Vary", "Accept"),
    ]
    assert error_headers(headers) == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Vary", "Accept"),
        ("Cache-Control", "no-store"),
    ]
    assert error_headers({"Cache-Control": "max-age=1"}) == [("Cache-Control", "no-store")]
    assert error_headers({}) == [("Cache-Control", "no-store")]
