#!/usr/bin/env bash
# The suite needs MariaDB/MySQL and Redis on loopback (override with TEST_DB_* / TEST_REDIS_*).
set -u
db_host=${TEST_DB_HOST:-127.0.0.1}; db_port=${TEST_DB_PORT:-3306}
redis_host=${TEST_REDIS_HOST:-127.0.0.1}; redis_port=${TEST_REDIS_PORT:-6379}
ok=1
if ! (exec 3<>"/dev/tcp/$db_host/$db_port") 2>/dev/null; then
  echo "MariaDB/MySQL is not reachable on $db_host:$db_port (set TEST_DB_HOST/TEST_DB_PORT)." >&2
  ok=0
fi
if ! (exec 3<>"/dev/tcp/$redis_host/$redis_port") 2>/dev/null; then
  echo "Redis is not reachable on $redis_host:$redis_port (set TEST_REDIS_HOST/TEST_REDIS_PORT)." >&2
  ok=0
fi
[ $ok -eq 1 ]
