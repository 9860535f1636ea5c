"""Bounded ``db_operation_name`` values: a fixed vocabulary plus a small cap, then ``_OTHER``.

Operation names become label values, so they must never be statement text (unbounded, and it
may hold data) nor an unbounded set of command names.
"""

from __future__ import annotations

import re

from inferwatch.metrics.labels import OTHER, BoundedLabel
from inferwatch.pools.instruments import OPERATION

# First keywords of SQL statements worth telling apart; anything else is _OTHER.
_SQL_WORDS = """SELECT INSERT UPDATE DELETE MERGE UPSERT REPLACE WITH VALUES BEGIN START COMMIT
    ROLLBACK SAVEPOINT RELEASE CREATE DROP ALTER TRUNCATE GRANT REVOKE SET SHOW EXPLAIN
    ANALYZE VACUUM PRAGMA CALL EXECUTE PREPARE DEALLOCATE COPY LOCK LISTEN NOTIFY DECLARE
    FETCH CLOSE REINDEX CLUSTER COMMENT DO"""
SQL_OPERATIONS = frozenset(_SQL_WORDS.split())
_SQL_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_SQL_WORD = re.compile(r"[A-Za-z]+")


def sql_operation(statement: object) -> str:
    """The statement's first keyword, upper-cased, if it is in :data:`SQL_OPERATIONS`."""
    if not isinstance(statement, str):
        return OTHER
    start = _SQL_NOISE.match(statement)
    word = _SQL_WORD.match(statement, start.end() if start else 0)
    keyword = word.group(0).upper() if word else ""
    return keyword if keyword in SQL_OPERATIONS else OTHER


# Redis commands common enough to always get their own series.
_REDIS_WORDS = """GET SET SETEX PSETEX SETNX GETEX GETDEL GETSET MGET MSET MSETNX APPEND STRLEN INCR
    INCRBY INCRBYFLOAT DECR DECRBY DEL UNLINK EXISTS EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL
    PTTL PERSIST TYPE KEYS SCAN RENAME COPY DUMP RESTORE TOUCH HGET HSET HSETNX HMGET HMSET
    HGETALL HDEL HEXISTS HINCRBY HINCRBYFLOAT HKEYS HVALS HLEN HSCAN LPUSH RPUSH LPOP RPOP
    LLEN LRANGE LINDEX LSET LREM LTRIM LMOVE BLPOP BRPOP BLMOVE SADD SREM SMEMBERS SISMEMBER
    SMISMEMBER SCARD SPOP SRANDMEMBER SSCAN SINTER SUNION SDIFF ZADD ZREM ZRANGE ZRANGEBYSCORE
    ZREVRANGE ZREVRANGEBYSCORE ZSCORE ZINCRBY ZCARD ZCOUNT ZRANK ZREVRANK ZPOPMIN ZPOPMAX
    BZPOPMIN BZPOPMAX ZSCAN ZREMRANGEBYSCORE ZREMRANGEBYRANK XADD XREAD XREADGROUP XACK XLEN
    XRANGE XREVRANGE XDEL XTRIM XGROUP XCLAIM XAUTOCLAIM XPENDING XINFO PUBLISH SUBSCRIBE
    PSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE PFADD PFCOUNT PFMERGE SETBIT GETBIT BITCOUNT EVAL
    EVALSHA EVAL_RO EVALSHA_RO FCALL FCALL_RO SCRIPT FUNCTION MULTI EXEC DISCARD WATCH UNWATCH
    PING ECHO AUTH HELLO SELECT INFO CONFIG CLIENT DBSIZE FLUSHDB FLUSHALL TIME MEMORY OBJECT
    COMMAND WAIT"""
REDIS_COMMANDS = frozenset(_REDIS_WORDS.split())
# Module commands (JSON.GET, FT.SEARCH) and rarer built-ins: the first few distinct
# well-formed names get their own series, the rest share _OTHER.
EXTRA_REDIS_COMMANDS = 32
_COMMAND = re.compile(r"[A-Z][A-Z0-9_.|-]{0,31}")


class RedisCommandNames:
    """Maps a command's first argument to a bounded label value: the common commands as
    they are, the first ``extra`` other well-formed names (across all workers, in
    multiprocess mode) as they are, anything else ``_OTHER``."""

    def __init__(self, extra: int = EXTRA_REDIS_COMMANDS) -> None:
        self._extra = BoundedLabel(OPERATION, name=f"pools.redis.{OPERATION}", max_values=extra)

    def __call__(self, command: object) -> str:
        if isinstance(command, bytes):
            command = command.decode("ascii", "replace")
        if not isinstance(command, str):
            return OTHER
        # redis-py passes subcommands in one argument ("CLIENT SETNAME"): the command is
        # the first word.
        name = command.split(" ", 1)[0].upper()
        if name in REDIS_COMMANDS:
            return name
        if not _COMMAND.fullmatch(name):
            return OTHER
        return self._extra(name)
