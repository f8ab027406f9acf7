package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// park runs n events of key through a sequenced handler whose first event
// fails for good: the rest are parked behind its dead letter.
func (b *bundle) park(prefix, handler, key string, n int) {
	b.t.Helper()
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: b.rdb}, Topic: b.dlq,
			ConsumerGroup: "billing"},
		Sequence: &middleware.SequenceConfig{Handler: handler, Prefix: prefix},
	})
	require.NoError(b.t, err)
	calls := 0
	var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) {
		calls++
		if calls == 1 {
			return nil, fmt.Errorf("%w: card declined", arc.ErrUnrecoverable)
		}
		return nil, nil
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent("order.paid", map[string]int{"i": i}, arc.Meta{PartitionKey: key})
		require.NoError(b.t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(b.t, err)
		msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: handler, Topic: b.stream, Event: ev}))
		_, err = h(msg)
		require.NoError(b.t, err)
	}
	require.NoError(b.t, stack.Close()) // no drainer: what the console changes stays as it left it
	require.Equal(b.t, 1, calls, "only the head ran")
}

// The Parked page and API list parked keys to readers; operators release
// and discard them, with CSRF and (to discard) a confirmation, audited.
func TestParkedSequences(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prefix := "arcmill-console-test:seq:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		keys, _ := b.rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			b.rdb.Del(context.Background(), keys...)
		}
	})
	b.park(prefix, "charge", "order-1", 3)
	b.park(prefix, "charge", "order-2", 2)
	cfg := b.config()
	cfg.SequencePrefix = prefix
	srv := b.serve(b.console(cfg))
	reader := bearer(t, srv, readToken)

	var resp ParkedResponse
	require.Equal(t, http.StatusOK, reader.getJSON("/api/parked", &resp))
	require.Len(t, resp.Sequences, 2)
	assert.EqualValues(t, 3, resp.Events)
	assert.Equal(t, "order-1", resp.Sequences[0].Key)
	assert.Equal(t, "charge", resp.Sequences[0].Handler)
	assert.Contains(t, resp.Sequences[0].Head.Error, "card declined")

	status, page := reader.do(http.MethodGet, "/parked", "", "", map[string]string{"Accept": "text/html"})
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(page), "order-2")
	assert.NotContains(t, string(page), "release-parked", "a reader sees no buttons")
	status, _ = reader.postJSON("/api/parked/release", ParkedRequest{Key: "order-1"}, nil)
	assert.Equal(t, http.StatusForbidden, status)

	alice := basic(t, srv, opUser, opPass)
	status, page = alice.do(http.MethodGet, "/parked", "", "", map[string]string{"Accept": "text/html"})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 2, strings.Count(string(page), `class="release-parked"`))

	noToken := &client{t: t, srv: srv, auth: alice.auth}
	status, _ = noToken.do(http.MethodPost, "/api/parked/release", "application/x-www-form-urlencoded", "key=order-1", nil)
	assert.Equal(t, http.StatusForbidden, status, "no CSRF token")

	var res ParkedResult
	status, body := alice.do(http.MethodPost, "/api/parked/release", "application/x-www-form-urlencoded",
		"key=order-1&handler=charge&group=billing", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, http.StatusOK, alice.getJSON("/api/parked?handler=charge", &resp))
	assert.Equal(t, "released", resp.Sequences[0].Status)

	status, _ = alice.postJSON("/api/parked/discard", ParkedRequest{Key: "order-2"}, nil)
	assert.Equal(t, http.StatusBadRequest, status, "a discard wants its confirmation")
	status, _ = alice.postJSON("/api/parked/discard", ParkedRequest{Key: "order-2", Confirm: "discard"}, &res)
	require.Equal(t, http.StatusOK, status)
	assert.EqualValues(t, 1, res.Count)
	status, _ = alice.postJSON("/api/parked/discard", ParkedRequest{Key: "order-2", Confirm: "discard"}, nil)
	assert.Equal(t, http.StatusNotFound, status)

	var audit AuditResponse
	require.Equal(t, http.StatusOK, alice.getJSON("/api/audit", &audit))
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action+" "+e.Who)
	}
	assert.Contains(t, actions, "release-parked alice")
	assert.Contains(t, actions, "discard-parked alice")
}
