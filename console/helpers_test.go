package console

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// fakeClient is a Redis client that is never dialled: for tests of
// configuration and auth that read no stream.
func fakeClient() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) }

func must(_ int, body []byte) []byte { return body }

func mustEvent(t *testing.T, typ string) arc.Event {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	return ev
}

func outboxEntry(topic string, ev arc.Event) outbox.Entry {
	return outbox.Entry{Topic: topic, Event: ev}
}

// middlewareEnvelope is a dead letter's data field for ev.
func middlewareEnvelope(ev arc.Event, msg string) (string, error) {
	b, err := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: msg}, Attempts: 1,
		Reason: middleware.ReasonRetryExhausted}.MarshalArc()
	return string(b), err
}
