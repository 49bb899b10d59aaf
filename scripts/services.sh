#!/usr/bin/env bash
# Makes sure RabbitMQ, Redis, PostgreSQL and PgBouncer (in front of it, in
# transaction mode) run on loopback, installing them with apt-get (as root)
# on a fresh Debian machine. Idempotent: a service
# that already answers is left alone. Sourced by .ci/run and scripts/demo.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    log "cannot install $* without root; install it and re-run"; return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    port_open "$2" && return 0
    sleep 0.2
  done
  log "$1 did not come up on 127.0.0.1:$2 within $3 s"; return 1
}

ensure_rabbitmq() {
  if port_open 5672 && rabbitmqctl -q status >/dev/null 2>&1; then return 0; fi
  command -v rabbitmq-server >/dev/null || { log "installing rabbitmq-server"; apt_install rabbitmq-server; }
  log "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  wait_port RabbitMQ 5672 120
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then return 0; fi
  command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
  wait_port Redis 6379 30
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  command -v pg_ctlcluster >/dev/null || { log "installing postgresql"; apt_install postgresql; }
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  wait_port PostgreSQL 5432 60
}

# PgBouncer on 127.0.0.1:6432 in transaction mode, the way workers may be
# deployed: the worker tests run their tenant traffic through it to prove no
# session state outlives a transaction. Any database name is forwarded to
# the local PostgreSQL, so the tests' throwaway databases need no config.
ensure_pgbouncer() {
  if port_open 6432; then return 0; fi
  [ -x /usr/sbin/pgbouncer ] || { log "installing pgbouncer"; apt_install pgbouncer; }
  local dir="${TMPDIR:-/tmp}/arrakis-pgbouncer"
  mkdir -p "$dir"
  printf '"postgres" ""\n' >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = $dir/userlist.txt
max_client_conn = 2000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
  log "starting PgBouncer"
  if [ "$(id -u)" -eq 0 ]; then
    # PgBouncer refuses to run as root.
    chown -R postgres "$dir"
    /usr/sbin/pgbouncer -d -u postgres "$dir/pgbouncer.ini" >/dev/null
  else
    /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini" >/dev/null
  fi
  wait_port PgBouncer 6432 30
}

ensure_rabbitmq
ensure_redis
ensure_postgres
ensure_pgbouncer
log "RabbitMQ, Redis, PostgreSQL and PgBouncer are up"
