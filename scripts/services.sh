#!/usr/bin/env bash
# Makes sure Redis, PostgreSQL, MySQL/MariaDB and NATS (with JetStream) answer on loopback for the
# tests, and that Chromium is installed for the console's browser journeys: a running server is used as it is, an installed one that is stopped
# is started, a missing one is installed with apt-get (when run as root).
# Then the test database and user are created if they are missing.
#
# Point the tests elsewhere with ARCMILL_REDIS_ADDR, ARCMILL_POSTGRES_DSN and
# ARCMILL_MYSQL_DSN and ARCMILL_NATS_URL: a service named by one of them is only checked, never
# started, installed or changed. Idempotent, and quick when all is up.
set -euo pipefail

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

# Defaults, shared with internal/testenv.
DEFAULT_REDIS_ADDR=127.0.0.1:6379
DEFAULT_POSTGRES_DSN='postgres://postgres:postgres@127.0.0.1:5432/arcmill?sslmode=disable'
DEFAULT_MYSQL_DSN='arcmill:arcmill@tcp(127.0.0.1:3306)/arcmill?parseTime=true'
DEFAULT_NATS_URL=nats://127.0.0.1:4222

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
postgres
mysql
nats
nats_cluster
browser
