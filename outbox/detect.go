package outbox

import (
	stdsql "database/sql"
	"database/sql/driver"
	"fmt"
	"reflect"
	"strings"
)

// driverDialects maps the package of a database/sql driver to its
// dialect. A driver is known by its type's package, not by the name it
// was registered under: sql.OpenDB with a connector has no name, and the
// names are the application's choice.
var driverDialects = []struct {
	pkg     string // the driver type's package path, or its prefix ending in /
	dialect Dialect
}{
	{"github.com/jackc/pgx/", PostgreSQL}, // v4 and v5 stdlib
	{"github.com/lib/pq", PostgreSQL},
	{"github.com/go-sql-driver/mysql", MySQL},
	{"modernc.org/sqlite", SQLite},
	{"github.com/mattn/go-sqlite3", SQLite},
	{"github.com/glebarez/go-sqlite", SQLite}, // GORM's pure-Go SQLite (glebarez/sqlite)
}

// DialectOf returns the dialect of db, found from the type of its driver:
// pgx's stdlib and lib/pq are PostgreSQL, go-sql-driver/mysql is MySQL
// (and MariaDB), modernc.org/sqlite, mattn/go-sqlite3 and glebarez/go-sqlite
// are SQLite. A
// driver it does not know, such as one wrapped for tracing, gives an
// error wrapping ErrInvalidConfig that asks for Config.Dialect.
func DialectOf(db *stdsql.DB) (Dialect, error) {
	if db == nil {
		return DetectDialect, fmt.Errorf("%w: nil *sql.DB", ErrInvalidConfig)
	}
	return dialectOfDriver(db.Driver())
}

func dialectOfDriver(drv driver.Driver) (Dialect, error) {
	t := reflect.TypeOf(drv)
	if t == nil {
		return DetectDialect, fmt.Errorf("%w: the *sql.DB has no driver; set Config.Dialect", ErrInvalidConfig)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pkg := t.PkgPath()
	for _, d := range driverDialects {
		if base := strings.TrimSuffix(d.pkg, "/"); pkg == base || strings.HasPrefix(pkg, base+"/") {
			return d.dialect, nil
		}
	}
	return DetectDialect, fmt.Errorf("%w: cannot tell the database from the driver %s.%s; "+
		"set Config.Dialect to outbox.PostgreSQL, outbox.MySQL or outbox.SQLite", ErrInvalidConfig, pkg, t.Name())
}

// ParseDialect returns the dialect a name stands for: "postgres"
// ("postgresql", "pg"), "mysql" ("mariadb") or "sqlite" ("sqlite3"), in
// any case. It is the inverse of Dialect.String, for flags and
// configuration files.
func ParseDialect(name string) (Dialect, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "postgres", "postgresql", "pg":
		return PostgreSQL, nil
	case "mysql", "mariadb":
		return MySQL, nil
	case "sqlite", "sqlite3":
		return SQLite, nil
	}
	return DetectDialect, fmt.Errorf("%w: unknown dialect %q: use postgres, mysql or sqlite", ErrInvalidConfig, name)
}
