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
		switch {
		case pg.Code == "42P01", pg.Code == "42703", pg.Code == "3F000": // undefined_table, undefined_column, invalid_schema_name
			return ErrMissingTable
		// Class 28 is invalid authorization (bad password, unknown role);
		// then insufficient_privilege and an unknown database.
		case strings.HasPrefix(pg.Code, "28"), pg.Code == "42501", pg.Code == "3D000":
			return ErrAccessDenied
		}
		return nil
	}
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		switch {
		case my.Number == 1146, my.Number == 1054: // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
			return ErrMissingTable
		// SQLSTATE 28000 is every "access denied" of a login (1045, and
		// MariaDB's 1698 for a user it does not know); then the unknown
		// database and the command, column and privilege refusals.
		case string(my.SQLState[:]) == "28000", my.Number == 1044, my.Number == 1049,
			my.Number == 1142, my.Number == 1143, my.Number == 1227:
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
