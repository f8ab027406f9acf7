package outbox

import (
	"context"
	stdsql "database/sql"
	"encoding/binary"
	"hash/crc32"
	"sync/atomic"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// The stored Arc JSON. The writer already holds the event, so it encodes
// it once, in the business transaction (arc.Marshal, about 1–2 µs against
// the milliseconds of a commit), and stores the bytes in arc_json. The
// relay hands them to its publisher with the message (arc.AttachJSON); a
// publisher that writes Arc JSON (redisstream) writes them instead of
// encoding the event again, a third of the relay's own CPU. Any other
// publisher gets the same complete message and ignores them.
//
// arc_json is a byte column (BYTEA, LONGBLOB, BLOB), not text: arc.Marshal
// copies payload bytes and invalid UTF-8 in ids as they are, so its output
// is not always valid UTF-8, which PostgreSQL's text refuses.
//
// The bytes are arc.Marshal(arc.FromMessage(m)) of the message m the relay
// rebuilds from the row: its event_id, payload and metadata. arc_json_crc
// is the CRC-32C of those three columns as stored (arcSum); the relay uses
// arc_json only when it matches, so a row whose payload or metadata was
// changed after the write (by hand, by a tool) is encoded afresh, never
// relayed with stale bytes. A row without them (NULL: written by an older
// arcmill, or a message that is not an Arc event) is encoded as before,
// and so is every row of a table without the columns (an older schema not
// migrated yet): writer and relay find the columns in the catalog and do
// without them.

// Column states of a table's stored Arc JSON.
const (
	arcUnknown int32 = iota
	arcPresent
	arcMissing
)

// arcRecheck is how long a table found without the columns is taken to
// be so, before the catalog is asked again (it may be migrated meanwhile).
const arcRecheck = time.Minute

// arcColumns caches whether the table has arc_json and arc_json_crc.
type arcColumns struct {
	state     atomic.Int32
	checkedAt atomic.Int64 // Unix nanoseconds of the last arcMissing answer
}

// present reports whether the columns are known to exist.
func (c *arcColumns) present() bool { return c.state.Load() == arcPresent }

// stale reports whether the catalog should be asked.
func (c *arcColumns) stale() bool {
	switch c.state.Load() {
	case arcPresent:
		return false
	case arcMissing:
		return time.Since(time.Unix(0, c.checkedAt.Load())) >= arcRecheck
	}
	return true
}

func (c *arcColumns) set(present bool) {
	if present {
		c.state.Store(arcPresent)
		return
	}
	c.checkedAt.Store(time.Now().UnixNano())
	c.state.Store(arcMissing)
}

// countQueryer runs a query of one integer and one argument.
type countQueryer func(ctx context.Context, query string, arg any) (int, error)

// countOn runs count queries through watermill-sql's executor (a *sql.Tx,
// a pgx transaction, or the *sql.DB wrapped).
func countOn(db wsql.ContextExecutor) countQueryer {
	return func(ctx context.Context, query string, arg any) (int, error) {
		rs, err := db.QueryContext(ctx, query, arg)
		if err != nil {
			return 0, err
		}
		defer rs.Close()
		n := 0
		if rs.Next() {
			err = rs.Scan(&n)
		}
		return n, err
	}
}

// countOnDB runs count queries on the pool.
func countOnDB(db *stdsql.DB) countQueryer {
	return func(ctx context.Context, query string, arg any) (n int, err error) {
		err = db.QueryRowContext(ctx, query, arg).Scan(&n)
		return n, err
	}
}

// detectArcColumns asks the catalog, through db, whether the table has
// the stored Arc JSON's columns, unless that is known. A failed lookup
// counts as "without": the columns are an optimisation, never a reason to
// fail a write or a pass.
func (o *Outbox) detectArcColumns(ctx context.Context, count countQueryer) {
	if !o.q.arc.stale() {
		return
	}
	n, err := count(ctx, o.q.e.arcColumnsQuery(), o.cfg.Table)
	o.q.arc.set(err == nil && n == 2)
}

// castagnoli is CRC-32C, which amd64 and arm64 compute in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// arcSum is arc_json_crc: the CRC-32C of the columns the relay rebuilds
// the message from, as stored, each preceded by its length so that bytes
// cannot move from one to the next unnoticed.
func arcSum(eventID string, payload, metadata []byte) int64 {
	var n [8]byte
	var sum uint32
	for _, part := range [...][]byte{[]byte(eventID), payload, metadata} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		sum = crc32.Update(sum, castagnoli, n[:])
		sum = crc32.Update(sum, castagnoli, part)
	}
	return int64(sum)
}

// encodeStored returns the Arc JSON the relay's publisher would write for
// the message stored as uuid, payload and md, or nil when it is not an Arc
// event (the relay then treats it as it always has).
func encodeStored(uuid string, payload []byte, md message.Metadata) []byte {
	if md.Get(arc.MetadataType) == "" {
		return nil // a Watermill message, not an Arc event: skip the work
	}
	// The same bytes as arc.Marshal(arc.FromMessage(m)), from the metadata
	// straight, in about half the time.
	// Sized for the payload and a typical meta, so that it grows once at most.
	data, err := arc.AppendMessageJSON(make([]byte, 0, len(payload)+64+48*len(md)),
		&message.Message{UUID: uuid, Payload: payload, Metadata: md})
	if err != nil {
		return nil
	}
	return data
}
