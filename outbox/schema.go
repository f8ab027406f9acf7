package outbox

import (
	"fmt"
	"strings"
)

// Schema returns the DDL that Migrate runs for cfg's table, as one SQL
// script of statements each ending in ";", for migration tools
// (golang-migrate, goose, Atlas) and for review. Migrate runs the same
// statements (it takes them from the same place), so the two cannot
// drift. cfg.Dialect must be set: there is no database to find it from.
//
// Every statement is idempotent (CREATE … IF NOT EXISTS, guarded
// ALTERs), so the script may run again on an existing table. Tools that
// split scripts at each ";" need the PostgreSQL script's DO blocks and
// function kept whole: for goose, "arcmill outbox schema --goose" marks
// each statement (StatementBegin/End). Tools that run the whole script in
// one call (golang-migrate) need multi-statement support, which MySQL's
// driver gives with multiStatements=true. The MySQL script's guarded
// ALTERs are each four statements (SET, PREPARE, EXECUTE, DEALLOCATE) that
// share a session variable, so they must run on one connection: in one
// call, or in one transaction (goose's default).
//
// See the package doc ("Schema and upgrades") for how the table changes
// between arcmill versions.
func Schema(cfg Config) (string, error) {
	stmts, err := SchemaStatements(cfg)
	if err != nil {
		return "", err
	}
	return strings.Join(stmts, ";\n\n") + ";\n", nil
}

// SchemaStatements returns Schema's statements one by one, without the
// final ";", in the order Migrate runs them: for tools that want each
// statement marked (goose's StatementBegin/End) or run on its own.
func SchemaStatements(cfg Config) ([]string, error) {
	if cfg.Dialect == DetectDialect {
		return nil, fmt.Errorf("%w: Schema needs Config.Dialect (postgres, mysql or sqlite)", ErrInvalidConfig)
	}
	cfg.setDefaults()
	q, err := newQueries(cfg.Dialect, cfg.Table)
	if err != nil {
		return nil, err
	}
	return q.migration(), nil
}
