package outbox

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ColumnText returns s as the outbox table stores it in its text columns
// (event_id, event_type, dedupe_key, partition_key): unchanged, unless it
// holds what a database would refuse or change (invalid UTF-8, NUL, a
// trailing space), which is escaped. Tools that query the table with their
// own SQL compare with it in a WHERE clause.
func ColumnText(s string) string { return toColumn(s) }

// MessageOfRow returns the message a stored row holds, as the relay reads
// it: eventID is the event_id column, payload and metadata the columns of
// the same names, each as stored. Escaped text and values held in base64
// are restored, so the message is the one written. For tools and tests that
// read the table with their own SQL.
func MessageOfRow(eventID string, payload, metadata []byte) (*message.Message, error) {
	r := row{eventID: eventID, topic: "-", payload: payload, metadata: metadata}
	r.fromColumns()
	r.decode()
	if r.bad != "" {
		return nil, fmt.Errorf("outbox: row of event %q: %s", r.eventID, r.bad)
	}
	return r.msg, nil
}
