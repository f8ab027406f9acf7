package outbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// classify marks a database error that will not pass by itself with
// ErrMissingTable or ErrAccessDenied (wrapping both the sentinel and
// err), and returns any other error unchanged: a refused connection, a
// timeout or a restarting server is an outage, which passes.
func classify(err error) error {
	if err == nil || permanent(err) {
		return err
	}
	if sentinel := permanentKind(err); sentinel != nil {
		return fmt.Errorf("%w: %w", sentinel, err)
	}
	return err
}

// permanent reports whether err is one classify marked.
func permanent(err error) bool {
	return errors.Is(err, ErrMissingTable) || errors.Is(err, ErrAccessDenied)
}

// permanentKind returns the sentinel for err's database error code, nil
// for an error that may pass.
func permanentKind(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "42P01", "42703", "3F000": // undefined_table, undefined_column, invalid_schema_name
			return ErrMissingTable
		case "28P01", "28000", "42501", "3D000": // bad password, no such role, no privilege, no such database
			return ErrAccessDenied
		}
		return nil
	}
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		switch my.Number {
		case 1146, 1054: // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
			return ErrMissingTable
		case 1045, 1044, 1049, 1142, 1143, 1227: // access denied (user, database), unknown database, command/column/privilege denied
			return ErrAccessDenied
		}
		return nil
	}
	// SQLite drivers (modernc, mattn) share SQLite's messages, not a type.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no such table:"), strings.Contains(msg, "no such column:"):
		return ErrMissingTable
	case strings.Contains(msg, "attempt to write a readonly database"):
		return ErrAccessDenied
	}
	return nil
}
