package inbox

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// state is what Process puts in the handler's context.
type state struct {
	ib     *Inbox
	tx     txn
	parent arc.Event
	// done is set once fn has returned: a context kept past it (by a
	// goroutine the handler started) must not write into a transaction
	// that is committing or over.
	done atomic.Bool
}

type stateKey struct{}

func stateFrom(ctx context.Context) (*state, error) {
	st, ok := ctx.Value(stateKey{}).(*state)
	if !ok || st.done.Load() {
		return nil, ErrNoTransaction
	}
	return st, nil
}

// Tx returns the database/sql transaction of the inbox handler whose
// context ctx is (an inbox built by New), for middleware-wrapped handlers;
// Handle passes it as an argument. Do not commit or roll it back.
func Tx(ctx context.Context) (*stdsql.Tx, error) {
	st, err := stateFrom(ctx)
	if err != nil {
		return nil, err
	}
	t, ok := st.tx.(stdTxn)
	if !ok {
		return nil, fmt.Errorf("%w: the inbox was built by NewPgx; use PgxTx", ErrNoTransaction)
	}
	return t.tx, nil
}

// PgxTx is Tx for an inbox built by NewPgx.
func PgxTx(ctx context.Context) (pgx.Tx, error) {
	st, err := stateFrom(ctx)
	if err != nil {
		return nil, err
	}
	t, ok := st.tx.(pgxTxn)
	if !ok {
		return nil, fmt.Errorf("%w: the inbox was built by New; use Tx", ErrNoTransaction)
	}
	return t.tx, nil
}

// Parent returns the event the inbox handler of ctx is handling.
func Parent(ctx context.Context) (arc.Event, bool) {
	st, err := stateFrom(ctx)
	if err != nil {
		return arc.Event{}, false
	}
	return st.parent, true
}

// Emit creates a child of the event being handled (arc.NewChild: causation
// = its id, correlation, user, organization, source and idempotency key
// inherited) and writes it into the consumer outbox inside the handler's
// transaction, for Config.EmitTopic. It is published, by the outbox's
// relay, only if the transaction commits, so once per handled event. It
// returns the child.
func Emit(ctx context.Context, eventType string, payload any, meta arc.Meta) (arc.Event, error) {
	st, err := stateFrom(ctx)
	if err != nil {
		return arc.Event{}, err
	}
	child, err := arc.NewChild(st.parent, eventType, payload, meta)
	if err != nil {
		return arc.Event{}, err
	}
	return child, st.write(ctx, []outbox.Entry{{Event: child}})
}

// EmitEntries writes entries into the consumer outbox inside the handler's
// transaction, each stamped as a child of the event being handled
// (middleware.Stamp: fields already set are kept). An entry without a
// Topic goes to Config.EmitTopic.
func EmitEntries(ctx context.Context, entries ...outbox.Entry) error {
	st, err := stateFrom(ctx)
	if err != nil {
		return err
	}
	out := make([]outbox.Entry, len(entries))
	for i, e := range entries {
		if e.Message != nil {
			m := e.Message.Copy()
			m.SetContext(e.Message.Context())
			e.Message = middleware.Stamp(m, st.parent)
		} else if e.Event.Meta.ID != "" {
			if e.Event, err = stampEvent(e.Event, st.parent); err != nil {
				return fmt.Errorf("inbox: entry %d: %w", i, err)
			}
		}
		out[i] = e
	}
	return st.write(ctx, out)
}

// stampEvent is middleware.Stamp for an arc.Event.
func stampEvent(ev, parent arc.Event) (arc.Event, error) {
	m, err := arc.ToMessage(ev)
	if err != nil {
		return arc.Event{}, err
	}
	return arc.FromMessage(middleware.Stamp(m, parent))
}

// write stores entries in the consumer outbox, EmitTopic by default.
func (st *state) write(ctx context.Context, entries []outbox.Entry) error {
	if st.ib.cfg.Outbox == nil {
		return ErrNoOutbox
	}
	for i := range entries {
		if entries[i].Topic == "" {
			entries[i].Topic = st.ib.cfg.EmitTopic
		}
	}
	if err := st.tx.writeOutbox(ctx, st.ib.cfg.Outbox, entries); err != nil {
		return fmt.Errorf("inbox: writing emitted events to the outbox: %w", err)
	}
	return nil
}

// emitMessages writes what a middleware-wrapped handler returned, stamped
// as children of the handled event.
func (st *state) emitMessages(ctx context.Context, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	entries := make([]outbox.Entry, len(msgs))
	for i, m := range msgs {
		entries[i] = outbox.Entry{Message: middleware.Stamp(m, st.parent)}
	}
	return st.write(ctx, entries)
}
