package testenv

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHostPorts(t *testing.T) {
	assert.Equal(t, "127.0.0.1:5432", PostgresHostPort(DefaultPostgresDSN))
	assert.Equal(t, "db.local:6000", PostgresHostPort("postgres://u:p@db.local:6000/x"))
	assert.Equal(t, "db.local:5432", PostgresHostPort("postgresql://db.local/x"))
	assert.Equal(t, "127.0.0.1:3306", MySQLHostPort(DefaultMySQLDSN))
	assert.Equal(t, "[::1]:3307", MySQLHostPort("u:p@tcp([::1]:3307)/db"))
}

// The services the integration tests need answer where the settings say.
// Under make test this fails, rather than skips, when one is down.
func TestServicesAnswer(t *testing.T) {
	for name, addr := range map[string]string{
		"redis": RedisAddr(t), "postgres": PostgresHostPort(PostgresDSN(t)), "mysql": MySQLHostPort(MySQLDSN(t)),
	} {
		conn, err := net.Dial("tcp", addr)
		if assert.NoError(t, err, name) {
			conn.Close()
		}
	}
}
