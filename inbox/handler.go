package inbox

import (
	"context"
	stdsql "database/sql"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Handler is an inbox handler on database/sql: it gets the event and the
// transaction that records it. Its writes through tx, and the events it
// emits (Emit, EmitEntries with ctx), commit together with the record.
type Handler func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error

// PgxHandler is Handler for an inbox built by NewPgx.
type PgxHandler func(ctx context.Context, tx pgx.Tx, ev arc.Event) error

// Handle returns a wildcard handler that runs h exactly once per dedupe key
// for consumer (Process); a duplicate returns nil, so it is acked. Give
// each handler of an event its own stable consumer name (the wildcard
// handler's Name is a good one): consumers are independent.
func (ib *Inbox) Handle(consumer string, h Handler) wildcard.Handler {
	return func(ctx context.Context, ev arc.Event) error {
		if ib.pgx {
			return fmt.Errorf("%w: the inbox was built by NewPgx; use HandlePgx", ErrInvalidConfig)
		}
		_, err := ib.Process(ctx, consumer, ev, func(ctx context.Context) error {
			tx, err := Tx(ctx)
			if err != nil {
				return err
			}
			return h(ctx, tx, ev)
		})
		return err
	}
}

// HandlePgx is Handle for an inbox built by NewPgx.
func (ib *Inbox) HandlePgx(consumer string, h PgxHandler) wildcard.Handler {
	return func(ctx context.Context, ev arc.Event) error {
		if !ib.pgx {
			return fmt.Errorf("%w: the inbox was built by New; use Handle", ErrInvalidConfig)
		}
		_, err := ib.Process(ctx, consumer, ev, func(ctx context.Context) error {
			tx, err := PgxTx(ctx)
			if err != nil {
				return err
			}
			return h(ctx, tx, ev)
		})
		return err
	}
}

// Middleware is the inbox as a message.HandlerMiddleware: the wrapped
// handler runs exactly once per dedupe key for consumer (Process), reads
// the transaction from its message's context (Tx, PgxTx), and the messages
// it returns are not published by the router but written into the
// consumer outbox in the same transaction, stamped as children of the
// handled event (so a handler needs Config.Outbox to return any). A
// duplicate returns no messages and no error: it is acked.
//
// consumer "" names the consumer after the handler: the wildcard handler's
// Name, else the message.Router handler's name. Names must be stable across
// deploys, or every event is processed again under the new name.
//
// A message that is not an Arc event is keyed by its UUID.
//
// In middleware.NewStack's order it goes last, inside Retry (each attempt
// is a transaction of its own, and a failed attempt leaves no record) and
// inside Causation (the router's context is already the handled event's):
//
//	mw := append(stack.Middleware, ib.Middleware("billing"))
func (ib *Inbox) Middleware(consumer string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ev := incomingEvent(msg)
			name := consumer
			if name == "" {
				name = handlerName(msg.Context())
			}
			_, err := ib.Process(msg.Context(), name, ev, func(ctx context.Context) error {
				orig := msg.Context()
				msg.SetContext(ctx)
				out, err := h(msg)
				msg.SetContext(orig)
				if err != nil {
					return err
				}
				st, err := stateFrom(ctx)
				if err != nil {
					return err
				}
				return st.emitMessages(ctx, out)
			})
			return nil, err
		}
	}
}

// incomingEvent is the event a message carries: the wildcard router's
// decoded event, else the message as an Arc event, else a bare event
// holding the message's UUID as its id.
func incomingEvent(msg *message.Message) arc.Event {
	if info, ok := wildcard.InfoFromContext(msg.Context()); ok {
		return info.Event
	}
	if ev, err := arc.FromMessage(msg); err == nil {
		return ev
	}
	return arc.Event{Meta: arc.Meta{ID: msg.UUID}}
}

// handlerName is the name of the handler running in ctx.
func handlerName(ctx context.Context) string {
	if info, ok := wildcard.InfoFromContext(ctx); ok && info.Handler != "" {
		return info.Handler
	}
	return message.HandlerNameFromCtx(ctx)
}
