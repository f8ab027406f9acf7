package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/outbox"
)

// dbFlags is the outbox database of a command.
type dbFlags struct{ dsn, dialect, table string }

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.dsn, "dsn", getenv("ARCMILL_OUTBOX_DSN", ""), "outbox database `DSN`: postgres://…, user:pass@tcp(host)/db, file:path.db (ARCMILL_OUTBOX_DSN)")
	fs.StringVar(&d.dialect, "dialect", getenv("ARCMILL_OUTBOX_DIALECT", ""), "postgres, mysql or sqlite; guessed from the DSN when empty (ARCMILL_OUTBOX_DIALECT)")
	fs.StringVar(&d.table, "table", getenv("ARCMILL_OUTBOX_TABLE", outbox.DefaultTable), "outbox `table` (ARCMILL_OUTBOX_TABLE)")
}

// open opens the outbox and checks that its table is there.
func (d *dbFlags) open(ctx context.Context) (*outbox.Outbox, func(), error) {
	if d.dsn == "" {
		return nil, nil, usageErr("no outbox database: give --dsn or set ARCMILL_OUTBOX_DSN")
	}
	dialect, driver, err := d.guess()
	if err != nil {
		return nil, nil, err
	}
	if dialect == outbox.SQLite {
		if err := sqliteExists(d.dsn); err != nil {
			return nil, nil, err
		}
	}
	db, err := sql.Open(driver, d.dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the outbox database: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("cannot reach the outbox database (%v): check --dsn / ARCMILL_OUTBOX_DSN", err)
	}
	ob, err := outbox.New(db, outbox.Config{Dialect: dialect, Table: d.table})
	if err != nil {
		_ = db.Close()
		return nil, nil, usageErr("%v", err)
	}
	if _, err := ob.Status(ctx); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("reading table %q (%v): is it the outbox, and migrated (outbox.Migrate)?", d.table, err)
	}
	return ob, func() { _ = db.Close() }, nil
}

func (d *dbFlags) guess() (outbox.Dialect, string, error) {
	name := strings.ToLower(d.dialect)
	if name == "" {
		switch {
		case strings.HasPrefix(d.dsn, "postgres://"), strings.HasPrefix(d.dsn, "postgresql://"),
			strings.Contains(d.dsn, "host=") && strings.Contains(d.dsn, "dbname="):
			name = "postgres"
		case strings.HasPrefix(d.dsn, "file:"), strings.HasSuffix(d.dsn, ".db"), strings.HasSuffix(d.dsn, ".sqlite"):
			name = "sqlite"
		case strings.Contains(d.dsn, "@tcp("), strings.Contains(d.dsn, "@unix("):
			name = "mysql"
		default:
			return 0, "", usageErr("cannot tell the database from the DSN: give --dialect postgres, mysql or sqlite")
		}
	}
	switch name {
	case "postgres", "postgresql", "pg":
		return outbox.PostgreSQL, "pgx", nil
	case "mysql", "mariadb":
		return outbox.MySQL, "mysql", nil
	case "sqlite", "sqlite3":
		return outbox.SQLite, "sqlite", nil
	}
	return 0, "", usageErr("unknown dialect %q: use postgres, mysql or sqlite", d.dialect)
}

// sqliteExists refuses a SQLite DSN whose file is not there: opening it
// would create an empty database, and a mistyped path would leave one
// behind.
func sqliteExists(dsn string) error {
	path, _, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path == "" || strings.HasPrefix(path, ":memory:") {
		return usageErr("--dsn %q is an in-memory SQLite database, which holds no outbox: give the database file", dsn)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: no SQLite database at %s: check --dsn (arcmill never creates one)", errNotFound, path)
		}
		return fmt.Errorf("the SQLite database %s: %w", path, err)
	}
	return nil
}
