package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// arcmill dlq reads, shows, redrives and purges the dead letters natsjs
// stores in a NATS dead-letter stream.
func TestDLQNats_ListShowRedrivePurge(t *testing.T) {
	url := testenv.NatsURL(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	require.NoError(t, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	events, dead := "evt"+id, "dlq"+id
	eventsStream, deadStream := "ARCMILL_TEST_EVENTS_"+id, "ARCMILL_TEST_DLQ_"+id
	require.NoError(t, natsjs.EnsureStream(js, eventsStream, events))
	require.NoError(t, natsjs.EnsureStream(js, deadStream, dead))
	t.Cleanup(func() { _ = js.DeleteStream(eventsStream); _ = js.DeleteStream(deadStream) })

	// Two dead letters, as the dead-letter middleware publishes them.
	pub, err := natsjs.NewPublisher(natsjs.PublisherConfig{Conn: nc, Prefix: events})
	require.NoError(t, err)
	var ids []string
	for _, typ := range []string{"order.created", "order.paid"} {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		data, err := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: "boom"}, Attempts: 5,
			Reason: middleware.ReasonRetryExhausted, LastFailedAt: time.Now()}.MarshalArc()
		require.NoError(t, err)
		msg := message.NewMessage(uuid.NewString(), data)
		msg.Metadata.Set(middleware.MetadataDLQReason, middleware.ReasonRetryExhausted)
		require.NoError(t, pub.Publish(dead+".billing", msg))
		ids = append(ids, ev.Meta.ID)
	}
	natsArgs := func(args ...string) []string {
		return append(args, "--nats", url, "--nats-stream", deadStream, "--nats-prefix", events, "--format", "json")
	}
	r := arcmill(t, "", natsArgs("dlq", "list")...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, ids[0])
	assert.Contains(t, r.stdout, ids[1])
	assert.Contains(t, r.stderr, "showing 2 of 2")

	r = arcmill(t, "", natsArgs("dlq", "show", ids[1])...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"type":"order.paid"`)

	r = arcmill(t, "", natsArgs("dlq", "redrive", "--type", "order.created")...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "redriven 1 dead letter(s)")
	info, err := js.StreamInfo(eventsStream)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs, "the event is back on its subject")
	got, err := js.GetLastMsg(eventsStream, events+".order.created")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(got.Header.Get(nats.MsgIdHdr), ids[0]+".redrive."),
		"a message id of its own, so JetStream's duplicate window keeps it: %q", got.Header.Get(nats.MsgIdHdr))
	assert.JSONEq(t, `{"n":1}`, string(got.Data))

	r = arcmill(t, "", natsArgs("dlq", "purge", "--all")...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"purged":1`)
	info, err = js.StreamInfo(deadStream)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs)

	r = arcmill(t, "", "dlq", "list", "--nats", url, "--nats-stream", "NO_SUCH_"+id)
	assert.Equal(t, exitNotFound, r.code, r.stderr)
}
