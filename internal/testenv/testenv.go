// Package testenv finds the Redis, PostgreSQL, MySQL and NATS servers that
// integration tests run against. Settings come from ARCMILL_REDIS_ADDR,
// ARCMILL_POSTGRES_DSN and ARCMILL_MYSQL_DSN, with the loopback defaults that
// scripts/services.sh provisions. A test asking for a server that does not
// answer fails, naming the server and the variable to set: a run must never
// pass by skipping. A user who wants to run only what needs no server asks
// for it explicitly with ARCMILL_SKIP_MISSING_SERVICES=1, and the tests that
// need a missing server are then skipped.
package testenv

import (
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// Defaults, shared with scripts/services.sh.
const (
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultPostgresDSN = "postgres://postgres:postgres@127.0.0.1:5432/arcmill?sslmode=disable"
	DefaultMySQLDSN    = "arcmill:arcmill@tcp(127.0.0.1:3306)/arcmill?parseTime=true"
	DefaultNatsURL     = "nats://127.0.0.1:4222"
)

// RedisAddr returns the Redis address for tests, or skips (or fails) t when
// nothing answers there.
func RedisAddr(t testing.TB) string {
	addr := setting("ARCMILL_REDIS_ADDR", DefaultRedisAddr)
	require(t, "redis", "ARCMILL_REDIS_ADDR", addr)
	return addr
}

// PostgresDSN returns the PostgreSQL URL for tests, or skips (or fails) t.
func PostgresDSN(t testing.TB) string {
	dsn := setting("ARCMILL_POSTGRES_DSN", DefaultPostgresDSN)
	require(t, "postgres", "ARCMILL_POSTGRES_DSN", PostgresHostPort(dsn))
	return dsn
}

// MySQLDSN returns the go-sql-driver/mysql DSN for tests, or skips (or
// fails) t.
func MySQLDSN(t testing.TB) string {
	dsn := setting("ARCMILL_MYSQL_DSN", DefaultMySQLDSN)
	require(t, "mysql", "ARCMILL_MYSQL_DSN", MySQLHostPort(dsn))
	return dsn
}

// NatsURL returns the NATS server (with JetStream) for tests, or skips (or
// fails) t.
func NatsURL(t testing.TB) string {
	u := setting("ARCMILL_NATS_URL", DefaultNatsURL)
	require(t, "nats", "ARCMILL_NATS_URL", strings.TrimPrefix(u, "nats://"))
	return u
}

// PostgresHostPort returns host:port of a postgres:// URL (port 5432 when
// absent).
func PostgresHostPort(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "127.0.0.1:5432"
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5432")
	}
	return u.Host
}

// MySQLHostPort returns host:port of a DSN in go-sql-driver/mysql form,
// user:pass@tcp(host:port)/db.
func MySQLHostPort(dsn string) string {
	_, rest, ok := strings.Cut(dsn, "tcp(")
	if !ok {
		return "127.0.0.1:3306"
	}
	hostPort, _, _ := strings.Cut(rest, ")")
	return hostPort
}

func setting(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// SkipVariable is the environment variable a user sets to 1 to skip, rather
// than fail, the tests whose server does not answer.
const SkipVariable = "ARCMILL_SKIP_MISSING_SERVICES"

// Required reports whether missing services fail tests (the default) instead
// of skipping them (SkipVariable=1).
func Required() bool { return os.Getenv(SkipVariable) != "1" }

func require(t testing.TB, service, variable, hostPort string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", hostPort, 2*time.Second)
	if err == nil {
		conn.Close()
		return
	}
	if Required() {
		t.Fatalf("%s does not answer at %s (%v): run `make test`, which starts it, or set %s; "+
			"to skip the tests that need it instead, set %s=1", service, hostPort, err, variable, SkipVariable)
	}
	t.Skipf("%s does not answer at %s (%v), skipped as %s=1 asks", service, hostPort, err, SkipVariable)
}
