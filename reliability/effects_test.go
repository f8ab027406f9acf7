package reliability

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/inbox"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// effects is the fault scenario's consumer side of "exactly once", and the
// only place in the package that knows how it is made: arcmill's inbox.
// The consumer's handler runs through inbox.Handle, which in one
// transaction records the event (consumer "effects"), writes its effect (a
// ledger row, which nothing else would stop from repeating) and emits one
// child event with inbox.Emit into the consumer's own outbox, which a
// relay in each consumer process publishes to the ":emitted" stream.
// Deliveries the inbox skips are counted through its OnDuplicate hook, in
// a table of their own, outside the inbox.
//
// The child's payload carries a nonce drawn by each run of the handler, so
// the outbox's own deduplication (arc.DedupeKey covers the payload) cannot
// hide a second run: distinct children of one event on the stream measure
// the inbox's transaction alone.
type effects struct {
	prefix string // tables <prefix>_inbox, _emitted (the consumer outbox), _ledger and _duplicates
}

// effectsConsumer is the inbox's consumer name for the scenario's handler.
const effectsConsumer = "effects"

// emittedStream is the stream the consumer's emitted events go to.
func emittedStream(stream string) string { return stream + ":emitted" }

// childType is the type of the event the consumer emits per handled event.
const childType = "order.effected"

// childPayload is the emitted event's payload.
type childPayload struct {
	Of  string `json:"of"`  // the handled event's id (also its causation id)
	Run string `json:"run"` // drawn by each run of the handler
}

// outboxTable is the consumer outbox's table.
func (e effects) outboxTable() string { return e.prefix + "_emitted" }

// outbox returns the consumer outbox.
func (e effects) outbox(db *sql.DB) (*outbox.Outbox, error) {
	return outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: e.outboxTable()})
}

func (e effects) inbox(db *sql.DB, ob *outbox.Outbox, stream string, onDuplicate func(context.Context, string, arc.Event)) (*inbox.Inbox, error) {
	// Dialect explicit: inbox.Config's zero Dialect is outbox.DetectDialect
	// now, which the inbox does not resolve (reported to the lead).
	cfg := inbox.Config{Dialect: outbox.PostgreSQL, Table: e.prefix + "_inbox", OnDuplicate: onDuplicate}
	if ob != nil {
		cfg.Outbox, cfg.EmitTopic = ob, emittedStream(stream)
	}
	return inbox.New(db, cfg)
}

func (e effects) tables() []string {
	return []string{e.prefix + "_inbox", e.prefix + "_ledger", e.prefix + "_duplicates", e.outboxTable(),
		e.outboxTable() + "_lock"}
}

// migrate creates the inbox table (Inbox.Migrate), the consumer outbox
// (Outbox.Migrate) and the scenario's own tables.
func (e effects) migrate(ctx context.Context, db *sql.DB) error {
	ib, err := e.inbox(db, nil, "", nil)
	if err != nil {
		return err
	}
	if err := ib.Migrate(ctx); err != nil {
		return err
	}
	ob, err := e.outbox(db)
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	for _, s := range []string{
		`CREATE TABLE ` + e.prefix + `_ledger (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)`,
		`CREATE TABLE ` + e.prefix + `_duplicates (event_id TEXT PRIMARY KEY, n INT NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// drop removes what migrate created.
func (e effects) drop(db *sql.DB) {
	for _, t := range e.tables() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + t)
	}
	_, _ = db.Exec("DROP FUNCTION IF EXISTS " + e.outboxTable() + "_notify()")
}

// handler returns the consumer's effect as a wildcard handler through the
// inbox; ob is the consumer outbox (outbox).
func (e effects) handler(db *sql.DB, ob *outbox.Outbox, stream string) (wildcard.Handler, error) {
	ib, err := e.inbox(db, ob, stream, func(ctx context.Context, _ string, ev arc.Event) {
		// Best effort, outside the inbox: a consumer killed here loses
		// the count of one duplicate, not an effect.
		_, _ = db.ExecContext(ctx, `INSERT INTO `+e.prefix+`_duplicates (event_id, n) VALUES ($1, 1)
			ON CONFLICT (event_id) DO UPDATE SET n = `+e.prefix+`_duplicates.n + 1`, ev.Meta.ID)
	})
	if err != nil {
		return nil, err
	}
	return ib.Handle(effectsConsumer, func(ctx context.Context, tx *sql.Tx, ev arc.Event) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+e.prefix+`_ledger (event_id) VALUES ($1)`, ev.Meta.ID); err != nil {
			return err
		}
		_, err := inbox.Emit(ctx, childType, childPayload{Of: ev.Meta.ID, Run: uuid.NewString()}, arc.Meta{})
		return err
	}), nil
}

// handledCount is how many distinct events the inbox has recorded as
// processed (the scenario's progress, polled while it runs).
func (e effects) handledCount(ctx context.Context, db *sql.DB) (int64, error) {
	ib, err := e.inbox(db, nil, "", nil)
	if err != nil {
		return 0, err
	}
	return ib.Count(ctx, effectsConsumer)
}

// effectsResults is what the consumer side left behind.
type effectsResults struct {
	handled    map[string]bool // event ids the inbox recorded as processed
	ledger     map[string]int  // event id → effect rows (the ledger)
	applied    int             // effect rows in all
	duplicates int             // deliveries the inbox skipped (OnDuplicate)
	// emitted: handled event id → ids of the children its committed
	// transactions wrote into the outbox (one, when the inbox holds).
	emitted map[string][]string
	// published: parent event id (the child's causation id) → child id →
	// entries of the child on the emitted stream (a relay killed between
	// publishing and settling publishes a row again, with the same id).
	published map[string]map[string]int
	// strayChildren are emitted-stream entries whose payload names another
	// parent than their causation id, or that cannot be read.
	strayChildren []string
}

// results reads the inbox, the ledger, the outbox's child rows and the
// emitted stream at the end of a run.
func (e effects) results(ctx context.Context, db *sql.DB, client *redis.Client, stream string) (effectsResults, error) {
	r := effectsResults{handled: map[string]bool{}, ledger: map[string]int{}, emitted: map[string][]string{},
		published: map[string]map[string]int{}}
	// The inbox's table is documented (consumer, dedupe_key, event_id,
	// event_type, processed_at) for reading with plain SQL.
	if err := eachRow(db, `SELECT event_id FROM `+e.prefix+`_inbox WHERE consumer = $1`, []any{effectsConsumer},
		func(rows *sql.Rows) error {
			var id string
			err := rows.Scan(&id)
			r.handled[id] = true
			return err
		}); err != nil {
		return r, err
	}
	if err := eachRow(db, `SELECT event_id FROM `+e.prefix+`_ledger`, nil, func(rows *sql.Rows) error {
		var id string
		err := rows.Scan(&id)
		r.ledger[id]++
		r.applied++
		return err
	}); err != nil {
		return r, err
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(n), 0) FROM `+e.prefix+`_duplicates`).Scan(&r.duplicates); err != nil {
		return r, err
	}
	if err := eachRow(db, `SELECT event_id, payload FROM `+e.outboxTable()+` WHERE topic = $1`, []any{emittedStream(stream)},
		func(rows *sql.Rows) error {
			var id string
			var payload []byte
			if err := rows.Scan(&id, &payload); err != nil {
				return err
			}
			var p childPayload
			if err := json.Unmarshal(payload, &p); err != nil {
				return fmt.Errorf("outbox row of child %s: %w", id, err)
			}
			r.emitted[p.Of] = append(r.emitted[p.Of], id)
			return nil
		}); err != nil {
		return r, err
	}
	entries, err := redisstream.RangeEntries(ctx, client, emittedStream(stream), "-", "+", 0)
	if err != nil {
		return r, err
	}
	for _, en := range entries {
		data, _ := en.Map()[redisstream.FieldData].(string)
		var ev arc.Event
		var p childPayload
		if err := arc.Unmarshal([]byte(data), &ev); err != nil || json.Unmarshal(ev.Payload, &p) != nil ||
			p.Of != ev.Meta.CausationID || ev.Type != childType {
			r.strayChildren = append(r.strayChildren, en.ID)
			continue
		}
		if r.published[p.Of] == nil {
			r.published[p.Of] = map[string]int{}
		}
		r.published[p.Of][ev.Meta.ID]++
	}
	return r, nil
}

// eachRow runs query and calls scan for each row.
func eachRow(db *sql.DB, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
