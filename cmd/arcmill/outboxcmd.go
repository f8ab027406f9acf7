package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/arcmill/arcmill/outbox"
)

const outboxUsage = `Usage: arcmill outbox status|purge|schema [flags]

An arcmill outbox on PostgreSQL, MySQL/MariaDB or SQLite.

  status   rows pending, waiting for a retry or visible-at time, in flight,
           dead and delivered, and the age of the oldest undelivered row
  purge    delete rows delivered more than --older-than ago (their dedupe
           keys are free again); dead letters: "arcmill dlq purge --outbox"
  schema   print the DDL that outbox.Migrate runs, for a migration tool
           (golang-migrate, goose, Atlas); needs --dialect (or a --dsn to
           guess it from), never connects; --goose marks it up for goose.
           Apply the new version's script again after each arcmill
           upgrade: every statement is idempotent

Examples:
  arcmill outbox status --dsn postgres://postgres@127.0.0.1:5432/shop
  ARCMILL_OUTBOX_DSN=file:shop.db arcmill outbox status --format json
  arcmill outbox purge --older-than 72h --dsn 'shop:secret@tcp(127.0.0.1:3306)/shop'
  arcmill outbox schema --dialect postgres > migrations/0001_arcmill_outbox.up.sql
  arcmill outbox schema --dialect mysql --goose > migrations/00001_arcmill_outbox.sql
`

func outboxCmd(ctx context.Context, e env, args []string) error {
	var (
		db        dbFlags
		format    string
		olderThan time.Duration
		goose     bool
	)
	fs := newFlags(e, "outbox", outboxUsage)
	db.register(fs)
	fs.StringVar(&format, "format", "", "json or text (default: text on a terminal, json otherwise)")
	fs.DurationVar(&olderThan, "older-than", 7*24*time.Hour, "purge: rows delivered more than this `duration` ago")
	fs.BoolVar(&goose, "goose", false, "schema: mark the script up for goose (-- +goose Up, each statement in StatementBegin/End)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "status" && pos[0] != "purge" && pos[0] != "schema") {
		return usageErr("want status, purge or schema")
	}
	if pos[0] == "schema" {
		return outboxSchema(e, db, format, goose)
	}
	if goose {
		return usageErr("--goose is for outbox schema")
	}
	p, err := newPrinter(e.stdout, format)
	if err != nil {
		return err
	}
	ob, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	if pos[0] == "purge" {
		if olderThan < 0 {
			return usageErr("--older-than must not be negative")
		}
		n, err := ob.PurgeDelivered(ctx, olderThan)
		if err != nil {
			return err
		}
		return p.value(map[string]any{"purged": n, "table": ob.Table()}, func(w io.Writer) {
			fmt.Fprintf(w, "purged %d delivered row(s) older than %s from %s\n", n, olderThan, ob.Table())
		})
	}
	st, err := ob.Status(ctx)
	if err != nil {
		return err
	}
	age := time.Duration(0)
	if !st.OldestPending.IsZero() {
		age = time.Since(st.OldestPending).Round(time.Millisecond)
	}
	out := map[string]any{"table": ob.Table(), "dialect": ob.Dialect().String(), "pending": st.Pending,
		"delayed": st.Delayed, "inFlight": st.InFlight, "dead": st.Dead, "delivered": st.Delivered,
		"oldestPendingAgeSeconds": age.Seconds()}
	return p.value(out, func(w io.Writer) {
		fmt.Fprintf(w, "outbox %s (%s)\n  pending    %d\n  delayed    %d\n  in flight  %d\n  dead       %d\n  delivered  %d\n",
			ob.Table(), ob.Dialect(), st.Pending, st.Delayed, st.InFlight, st.Dead, st.Delivered)
		if age > 0 {
			fmt.Fprintf(w, "  oldest undelivered row: %s old\n", age)
		}
	})
}

// outboxSchema prints the outbox's DDL, as SQL unless --format json asks
// for it wrapped: a script redirected to a migration file must be SQL
// even though stdout is not a terminal.
func outboxSchema(e env, db dbFlags, format string, goose bool) error {
	if format != "" && format != "json" && format != "text" {
		return usageErr("--format must be json or text, not %q", format)
	}
	if goose && format == "json" {
		return usageErr("--goose prints SQL: leave out --format json")
	}
	if db.dialect == "" && db.dsn == "" {
		return usageErr("schema needs --dialect postgres, mysql or sqlite (or ARCMILL_OUTBOX_DIALECT)")
	}
	dialect, err := outbox.ParseDialect(db.dialect)
	if db.dialect == "" {
		dialect, _, err = db.guess()
	}
	if err != nil {
		return usageErr("%v", err)
	}
	cfg := outbox.Config{Dialect: dialect, Table: db.table}
	ddl, err := outbox.Schema(cfg)
	if err != nil {
		return usageErr("%v", err)
	}
	if goose {
		// goose splits a script at each ";" that ends a line, which would
		// cut PostgreSQL's DO blocks and function; marked statements are
		// run whole. There is no Down: dropping the table loses the
		// events not yet relayed, which should be a deliberate migration.
		stmts, err := outbox.SchemaStatements(cfg)
		if err != nil {
			return usageErr("%v", err)
		}
		var b strings.Builder
		for _, s := range stmts {
			b.WriteString("-- +goose StatementBegin\n" + s + ";\n-- +goose StatementEnd\n\n")
		}
		ddl = "-- +goose Up\n" + b.String()
	}
	if format == "json" {
		p, err := newPrinter(e.stdout, format)
		if err != nil {
			return err
		}
		return p.value(map[string]any{"dialect": dialect.String(), "table": db.table, "sql": ddl}, nil)
	}
	_, err = fmt.Fprintf(e.stdout, "-- arcmill outbox schema: %s, table %s (%s).\n"+
		"-- The statements outbox.Migrate runs; each is idempotent.\n\n%s", dialect, db.table,
		versionString(debug.ReadBuildInfo()), ddl)
	return err
}
