"""The test harness's own promise: a test's Redis database is one no earlier test's client is
still connected to (a leaked consumer there would take the new test's messages)."""

from __future__ import annotations

import redis

from tests.support import redis_server
from tests.support.redis_server import PrivateRedis


def test_fresh_db_passes_over_a_database_an_earlier_client_still_uses(private_redis: PrivateRedis) -> None:
    first = private_redis.fresh_db()
    db = int(first.rsplit("/", 1)[1])
    taken = (db % (redis_server.DATABASES - 1)) + 1  # the database the next call would hand out
    with redis.Redis(port=private_redis.port, db=taken) as leftover:
        leftover.set("left", 1)  # connected, as a leaked consumer would be
        url = private_redis.fresh_db()
        assert url != private_redis.url(taken)
        assert any(line.startswith(f"db {taken}: ") for line in redis_server.LEFTOVERS)
    with redis.Redis(port=private_redis.port, db=int(url.rsplit("/", 1)[1])) as r:
        assert r.dbsize() == 0
    redis_server.LEFTOVERS.clear()  # this one was made on purpose
