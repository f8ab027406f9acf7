#!/usr/bin/env bash
# Makes sure Redis, a Redis Cluster, PostgreSQL, MySQL/MariaDB and NATS (with JetStream) answer on loopback for the
# tests, and that Chromium is installed for the console's browser journeys: a running server is used as it is, an installed one that is stopped
# is started, a missing one is installed with apt-get (when run as root).
# Then the test database and user are created if they are missing.
#
# Point the tests elsewhere with ARCMILL_REDIS_ADDR, ARCMILL_REDIS_CLUSTER_ADDRS (comma-separated
# host:port of the cluster's nodes), ARCMILL_POSTGRES_DSN and ARCMILL_MYSQL_DSN and ARCMILL_NATS_URL:
# a service named by one of them is only checked, never started, installed or changed. Idempotent,
# and quick when all is up.
#
# What it leaves running, besides the distribution's own services it started:
#   - redis-server on 127.0.0.1:6379, no persistence, data in /var/lib/redis;
#   - a Redis Cluster of six redis-server processes on 127.0.0.1:7000-7005 (three primaries,
#     each with one replica; --cluster-enabled yes, no persistence, cluster-node-timeout 5 s),
#     daemonized, each with its directory (nodes-<port>.conf, redis.log) under
#     /var/lib/redis-cluster/<port> (/tmp/arcmill-redis-cluster/<port> when not root). Stop them
#     with `redis-cli -p <port> shutdown nosave`; delete the directories to start from scratch;
#   - nats-server -js on 127.0.0.1:4222.
set -euo pipefail

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

# Defaults, shared with internal/testenv.
DEFAULT_REDIS_ADDR=127.0.0.1:6379
DEFAULT_POSTGRES_DSN='postgres://postgres:postgres@127.0.0.1:5432/arcmill?sslmode=disable'
DEFAULT_MYSQL_DSN='arcmill:arcmill@tcp(127.0.0.1:3306)/arcmill?parseTime=true'
DEFAULT_NATS_URL=nats://127.0.0.1:4222
DEFAULT_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005

reachable() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() { # name host port
	for _ in $(seq 1 60); do
		reachable "$2" "$3" && return 0
		sleep 0.5
	done
	die "$1 did not come up on $2:$3 within 30 s"
}

apt_updated=false
install_packages() {
	[ "$(id -u)" = 0 ] || die "$* missing and not root: install it, or point the ARCMILL_* variables at a server"
	command -v apt-get >/dev/null || die "$* missing and no apt-get: install it by hand"
	if ! $apt_updated; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=true
	fi
	log "installing $*"
	# Package scripts try to start services through init systems a container
	# lacks; the server is started below either way.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# --- Redis -----------------------------------------------------------------
redis() {
	local addr=${ARCMILL_REDIS_ADDR:-$DEFAULT_REDIS_ADDR}
	local host=${addr%:*} port=${addr##*:}
	if reachable "$host" "$port"; then log "redis      $addr up"; return; fi
	[ -z "${ARCMILL_REDIS_ADDR:-}" ] || die "redis at ARCMILL_REDIS_ADDR=$addr does not answer"
	command -v redis-server >/dev/null || install_packages redis-server
	log "starting redis-server on $addr"
	mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" --appendonly no \
		--dir /var/lib/redis --logfile /var/log/redis/arcmill.log >/dev/null
	wait_for redis "$host" "$port"
	log "redis      $addr up"
}

# --- Redis Cluster -----------------------------------------------------------
# Three primaries and three replicas (redis-cli --cluster create --cluster-replicas 1), for the
# partitioned streams' tests. The nodes keep no data on disk: a node restarted comes back empty,
# and its nodes-<port>.conf makes it rejoin the cluster it knew.
cluster_info() { redis-cli -h "${1%:*}" -p "${1##*:}" cluster info 2>/dev/null | tr -d '\r'; }

cluster_ok() { # addrs...: every node answers cluster_state:ok with every slot covered
	local a info
	for a in "$@"; do
		info=$(cluster_info "$a")
		grep -qx 'cluster_state:ok' <<<"$info" || return 1
		grep -qx 'cluster_slots_ok:16384' <<<"$info" || return 1
	done
}

wait_cluster_ok() { # seconds addrs...
	local seconds=$1; shift
	for _ in $(seq 1 $((seconds * 2))); do
		cluster_ok "$@" && return 0
		sleep 0.5
	done
	return 1
}

redis_cluster() {
	local list=${ARCMILL_REDIS_CLUSTER_ADDRS:-$DEFAULT_REDIS_CLUSTER_ADDRS} a
	local addrs; IFS=, read -r -a addrs <<<"$list"
	if [ -n "${ARCMILL_REDIS_CLUSTER_ADDRS:-}" ]; then
		for a in "${addrs[@]}"; do
			reachable "${a%:*}" "${a##*:}" || die "redis cluster node $a (ARCMILL_REDIS_CLUSTER_ADDRS) does not answer"
		done
		cluster_ok "${addrs[@]}" || die "redis cluster at ARCMILL_REDIS_CLUSTER_ADDRS is not cluster_state:ok on every node"
		log "redis cluster ${#addrs[@]} nodes up (not managed)"
		return
	fi
	if cluster_ok "${addrs[@]}"; then log "redis cluster ${#addrs[@]} nodes up on ${addrs[0]}..${addrs[-1]##*:}"; return; fi
	command -v redis-server >/dev/null || install_packages redis-server
	local base=/var/lib/redis-cluster
	[ "$(id -u)" = 0 ] || base=${TMPDIR:-/tmp}/arcmill-redis-cluster
	for a in "${addrs[@]}"; do
		local host=${a%:*} port=${a##*:}
		reachable "$host" "$port" && continue
		log "starting redis-server --cluster-enabled yes on $a"
		mkdir -p "$base/$port"
		redis-server --daemonize yes --bind "$host" --port "$port" --cluster-enabled yes \
			--cluster-config-file "nodes-$port.conf" --cluster-node-timeout 5000 --dir "$base/$port" \
			--save "" --appendonly no --logfile "$base/$port/redis.log" >/dev/null
	done
	for a in "${addrs[@]}"; do wait_for "redis cluster node" "${a%:*}" "${a##*:}"; done
	# Nodes that knew a cluster (their nodes-<port>.conf) rejoin it: give them the time to agree.
	local assigned
	assigned=$(cluster_info "${addrs[0]}" | sed -n 's/^cluster_slots_assigned://p')
	if [ "${assigned:-0}" != 0 ] && wait_cluster_ok 20 "${addrs[@]}"; then
		log "redis cluster ${#addrs[@]} nodes up (rejoined)"
		return
	fi
	if [ "${assigned:-0}" != 0 ]; then
		# A cluster that cannot recover (nodes lost for good): the test cluster holds nothing to
		# keep, so it is made again.
		log "redis cluster is not ok: resetting its nodes and creating it again"
		for a in "${addrs[@]}"; do
			redis-cli -h "${a%:*}" -p "${a##*:}" flushall >/dev/null 2>&1 || true
			redis-cli -h "${a%:*}" -p "${a##*:}" cluster reset hard >/dev/null
		done
	fi
	log "creating the redis cluster (3 primaries, 1 replica each)"
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null ||
		die "redis-cli --cluster create failed"
	wait_cluster_ok 60 "${addrs[@]}" || die "redis cluster not cluster_state:ok on every node within 60 s"
	log "redis cluster ${#addrs[@]} nodes up on ${addrs[0]}..${addrs[-1]##*:}"
}

# --- PostgreSQL --------------------------------------------------------------
pg_as_admin() { # sql...: over TCP as the DSN's user, else as the postgres OS user
	if psql "$pg_admin_dsn" -v ON_ERROR_STOP=1 -qtAc "$1" 2>/dev/null; then return 0; fi
	[ "$(id -u)" = 0 ] || return 1
	runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAc "$1"
}

postgres() {
	local dsn=${ARCMILL_POSTGRES_DSN:-$DEFAULT_POSTGRES_DSN}
	local rest=${dsn#*://}; rest=${rest#*@}
	local hostport=${rest%%/*} db=${rest#*/}; db=${db%%\?*}
	local host=${hostport%:*} port=${hostport##*:}
	[ "$host" != "$hostport" ] || port=5432
	if ! reachable "$host" "$port"; then
		[ -z "${ARCMILL_POSTGRES_DSN:-}" ] || die "postgres at ARCMILL_POSTGRES_DSN does not answer on $host:$port"
		ls /etc/postgresql/*/main >/dev/null 2>&1 || install_packages postgresql postgresql-client
		local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
		log "starting postgresql $ver"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
		wait_for postgres "$host" "$port"
	fi
	if [ -n "${ARCMILL_POSTGRES_DSN:-}" ]; then log "postgres   $host:$port up (not managed)"; return; fi
	command -v psql >/dev/null || install_packages postgresql-client
	pg_admin_dsn=${dsn%%/"$db"*}/postgres?sslmode=disable
	if ! psql "$pg_admin_dsn" -qtAc 'select 1' >/dev/null 2>&1; then
		# A fresh Debian server wants a password over TCP: give the default one.
		log "setting the postgres role's password for loopback logins"
		pg_as_admin "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null ||
			die "cannot log in to postgres on $host:$port; set ARCMILL_POSTGRES_DSN"
	fi
	if [ "$(pg_as_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
		log "creating database $db"
		pg_as_admin "CREATE DATABASE \"$db\"" >/dev/null
	fi
	log "postgres   $host:$port/$db up"
}

# --- MySQL / MariaDB -----------------------------------------------------------
mysql_client() { command -v mariadb || command -v mysql; }

mysql() {
	local dsn=${ARCMILL_MYSQL_DSN:-$DEFAULT_MYSQL_DSN}
	local creds=${dsn%%@*} user pass
	user=${creds%%:*}; pass=${creds#*:}
	local hostport=${dsn#*tcp(}; hostport=${hostport%%)*}
	local db=${dsn#*)/}; db=${db%%\?*}
	local host=${hostport%:*} port=${hostport##*:}
	if ! reachable "$host" "$port"; then
		[ -z "${ARCMILL_MYSQL_DSN:-}" ] || die "mysql at ARCMILL_MYSQL_DSN does not answer on $host:$port"
		local server
		server=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -n1 || true)
		if [ -z "$server" ]; then
			install_packages mariadb-server
			server=$(command -v mariadbd || echo /usr/sbin/mariadbd)
		fi
		log "starting $(basename "$server")"
		mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
		start-stop-daemon --start --oknodo --background --exec "$server"
		wait_for mysql "$host" "$port"
	fi
	if [ -n "${ARCMILL_MYSQL_DSN:-}" ]; then log "mysql      $host:$port up (not managed)"; return; fi
	local client; client=$(mysql_client) || install_packages mariadb-client
	client=$(mysql_client)
	if ! "$client" -h "$host" -P "$port" -u "$user" -p"$pass" "$db" -e 'SELECT 1' >/dev/null 2>&1; then
		log "creating database $db and user $user"
		# As the server's root: over the socket (Debian's root uses unix_socket
		# auth), else over TCP with an empty password.
		local sql="CREATE DATABASE IF NOT EXISTS \`$db\`;
			CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$pass';
			CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
			CREATE USER IF NOT EXISTS '$user'@'::1' IDENTIFIED BY '$pass';
			GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'localhost', '$user'@'127.0.0.1', '$user'@'::1';
			FLUSH PRIVILEGES;"
		"$client" -uroot -e "$sql" 2>/dev/null || "$client" -h "$host" -P "$port" -uroot -e "$sql" ||
			die "cannot create the mysql test user; set ARCMILL_MYSQL_DSN"
	fi
	# The outbox's start-up check is tested with a read-only user of the test's
	# own, so the test user may create users and grant on its database.
	if ! "$client" -h "$host" -P "$port" -u "$user" -p"$pass" -N -e 'SHOW GRANTS' 2>/dev/null | grep -q 'CREATE USER'; then
		log "granting $user CREATE USER and GRANT OPTION on $db"
		local grant="GRANT CREATE USER ON *.* TO '$user'@'localhost', '$user'@'127.0.0.1', '$user'@'::1';
			GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'localhost', '$user'@'127.0.0.1', '$user'@'::1' WITH GRANT OPTION;
			FLUSH PRIVILEGES;"
		"$client" -uroot -e "$grant" 2>/dev/null || "$client" -h "$host" -P "$port" -uroot -e "$grant" ||
			die "cannot grant the mysql test user CREATE USER; set ARCMILL_MYSQL_DSN to a user that has it"
	fi
	log "mysql      $host:$port/$db up"
}

nats() {
	local url=${ARCMILL_NATS_URL:-$DEFAULT_NATS_URL}
	local hostport=${url#nats://}
	local host=${hostport%:*} port=${hostport##*:}
	if reachable "$host" "$port"; then log "nats       $hostport up"; return; fi
	[ -z "${ARCMILL_NATS_URL:-}" ] || die "nats at ARCMILL_NATS_URL=$url does not answer"
	command -v nats-server >/dev/null || install_packages nats-server
	log "starting nats-server -js on $hostport"
	mkdir -p /var/lib/nats-server 2>/dev/null || true
	setsid nohup nats-server -a "$host" -p "$port" -js -sd /var/lib/nats-server \
		-l /var/log/nats-server-arcmill.log >/dev/null 2>&1 < /dev/null &
	wait_for nats "$host" "$port"
	log "nats       $hostport up"
}

# --- NATS JetStream cluster (3 nodes) -------------------------------------------------
# Three nats-server -js nodes clustered on loopback (client ports 4231-4233, routes 6241-6243,
# monitoring 8231-8233), each with its own store, for adapters/natsjs's cluster tests. Ready once
# every node's /jsz names the meta leader. ARCMILL_NATS_CLUSTER_URLS (comma-separated) names a
# cluster of the caller's, which is only checked.
DEFAULT_NATS_CLUSTER_URLS=nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233

http_get() { if command -v curl >/dev/null; then curl -fsS "$1" 2>/dev/null; else wget -qO- "$1" 2>/dev/null; fi; }

nats_cluster() {
	local urls=${ARCMILL_NATS_CLUSTER_URLS:-$DEFAULT_NATS_CLUSTER_URLS} u hostport
	if [ -n "${ARCMILL_NATS_CLUSTER_URLS:-}" ]; then
		for u in ${urls//,/ }; do
			hostport=${u#nats://}
			reachable "${hostport%:*}" "${hostport##*:}" || die "nats cluster node $u (ARCMILL_NATS_CLUSTER_URLS) does not answer"
		done
		log "nats-js-3  $urls up (not managed)"
		return
	fi
	command -v nats-server >/dev/null || install_packages nats-server
	command -v curl >/dev/null || command -v wget >/dev/null || install_packages curl
	local dir=/var/lib/arcmill-nats-cluster
	mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] || dir=${TMPDIR:-/tmp}/arcmill-nats-cluster
	mkdir -p "$dir"
	local i routes
	for i in 1 2 3; do
		reachable 127.0.0.1 "423$i" && continue
		routes=$(for j in 1 2 3; do [ "$j" = "$i" ] || printf 'nats://127.0.0.1:624%s,' "$j"; done)
		log "starting nats-server -js cluster node n$i on 127.0.0.1:423$i"
		mkdir -p "$dir/n$i"
		# nats-server has no --daemonize: detach it, and keep its pid in a file.
		setsid nohup nats-server -n "arcmill-n$i" -a 127.0.0.1 -p "423$i" -m "823$i" -js -sd "$dir/n$i" \
			--cluster_name arcmill --cluster "nats://127.0.0.1:624$i" --routes "${routes%,}" \
			-P "$dir/n$i.pid" -l "$dir/n$i.log" >/dev/null 2>&1 </dev/null &
	done
	for i in 1 2 3; do wait_for "nats cluster node n$i" 127.0.0.1 "423$i"; done
	# Clients are accepted before the nodes have elected a JetStream meta leader.
	for _ in $(seq 1 120); do
		local ready=0 jsz
		for i in 1 2 3; do
			jsz=$(http_get "http://127.0.0.1:823$i/jsz") || continue
			grep -q '"leader": *"arcmill-n' <<<"$jsz" && ready=$((ready + 1))
		done
		[ "$ready" = 3 ] && { log "nats-js-3  $urls up (meta leader elected)"; return; }
		sleep 0.5
	done
	die "nats cluster on $urls: no JetStream meta leader within 60 s (logs in $dir)"
}

# --- Chromium (the console's browser journeys) ------------------------------------
# Debian's `chromium` package, driven headless by console's chromedp test. A
# browser named by ARCMILL_CHROMIUM is only checked, never installed.
browser() {
	if [ -n "${ARCMILL_CHROMIUM:-}" ]; then
		[ -x "$ARCMILL_CHROMIUM" ] || die "chromium at ARCMILL_CHROMIUM=$ARCMILL_CHROMIUM is not an executable"
		log "chromium   $ARCMILL_CHROMIUM (not managed)"
		return
	fi
	type -P chromium >/dev/null || install_packages chromium
	log "chromium   $(type -P chromium)"
}

redis
redis_cluster
postgres
mysql
nats
nats_cluster
browser
