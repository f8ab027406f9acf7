package outbox

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Config's defaults are the documented constants, and a zero Config is
// valid: its dialect is found from the database by New.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	var c Config
	require.NoError(t, c.Validate())
	c.setDefaults()
	assert.Equal(t, DetectDialect, c.Dialect)
	assert.Equal(t, DefaultTable, c.Table)
	assert.NotNil(t, c.Now)
}

// New refuses what cannot work, wrapping ErrInvalidConfig, before it
// touches the database. A table name PostgreSQL would fold to lower case
// is refused: the migration's catalog lookups would miss it the second
// time.
func TestNewRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	db := openDB(t, SQLite)
	for name, cfg := range map[string]Config{
		"mixed-case table": {Dialect: PostgreSQL, Table: "Arcmill_Ob_1"},
		"injected table":   {Table: "drop table;"},
		"long table":       {Table: strings.Repeat("t", 52)},
		"unknown dialect":  {Dialect: Dialect(9)},
		"negative dialect": {Dialect: Dialect(-1)},
	} {
		_, err := New(db, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.ErrorIs(t, cfg.Validate(), ErrInvalidConfig, name)
	}
	_, err := New(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig, "nil *sql.DB")
}

// Each Dialect names itself, and an unknown one says so.
func TestDialectString(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "postgres", PostgreSQL.String())
	assert.Equal(t, "mysql", MySQL.String())
	assert.Equal(t, "sqlite", SQLite.String())
	assert.Equal(t, "detect", DetectDialect.String())
	assert.Equal(t, "dialect(7)", Dialect(7).String())
}
