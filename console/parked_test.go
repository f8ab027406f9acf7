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
	b.parkKeys(prefix, handler, []string{key}, n)
}

// parkKeys parks each of keys, in turn, as park does.
func (b *bundle) parkKeys(prefix, handler string, keys []string, n int) {
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
		return nil, fmt.Errorf("%w: card declined", arc.ErrUnrecoverable) // only heads run
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	for _, key := range keys {
		for i := 0; i < n; i++ {
			ev, err := arc.NewEvent("order.paid", map[string]int{"i": i}, arc.Meta{PartitionKey: key})
			require.NoError(b.t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(b.t, err)
			msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: handler, Topic: b.stream, Event: ev}))
			_, err = h(msg)
			require.NoError(b.t, err)
		}
	}
	require.NoError(b.t, stack.Close()) // no drainer: what the console changes stays as it left it
	require.Equal(b.t, len(keys), calls, "only the heads ran")
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

// More keys than a page, across two handlers: the API and the page show a
// page at a time, with the total, and pages that concatenate to every key
// in order; a filter pages its own keys, and the page links keep it.
func TestParkedPaged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prefix := "arcmill-console-test:seq:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		keys, _ := b.rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			b.rdb.Del(context.Background(), keys...)
		}
	})
	keysOf := func(handler string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s-%03d", handler, i)) // parked in order: oldest first, ties by name
		}
		return out
	}
	b.parkKeys(prefix, "ship", keysOf("ship", 55), 2)
	b.parkKeys(prefix, "charge", keysOf("charge", 60), 2)
	var all []string
	for _, k := range append(keysOf("charge", 60), keysOf("ship", 55)...) {
		all = append(all, k)
	}
	cfg := b.config()
	cfg.SequencePrefix = prefix
	srv := b.serve(b.console(cfg))
	reader := bearer(t, srv, readToken)
	keys := func(r ParkedResponse) []string {
		var out []string
		for _, s := range r.Sequences {
			out = append(out, s.Key)
		}
		return out
	}

	var first, second, resp ParkedResponse
	require.Equal(t, http.StatusOK, reader.getJSON("/api/parked", &first))
	assert.Len(t, first.Sequences, DefaultParkedPageSize)
	assert.EqualValues(t, 115, first.Total)
	assert.Equal(t, 0, first.Offset)
	assert.Equal(t, DefaultParkedPageSize, first.Limit)
	assert.EqualValues(t, 100, first.Events, "the page's events")
	require.Equal(t, http.StatusOK, reader.getJSON("/api/parked?page=2", &second))
	assert.Equal(t, 100, second.Offset)
	assert.EqualValues(t, 115, second.Total)
	assert.Equal(t, all, append(keys(first), keys(second)...))
	var got []string
	for off := 0; off < 115; off += 30 {
		require.Equal(t, http.StatusOK, reader.getJSON(fmt.Sprintf("/api/parked?offset=%d&limit=30", off), &resp))
		got = append(got, keys(resp)...)
	}
	assert.Equal(t, all, got)
	require.Equal(t, http.StatusOK, reader.getJSON("/api/parked?limit=5000", &resp))
	assert.Equal(t, 1000, resp.Limit)
	assert.Len(t, resp.Sequences, 115)

	require.Equal(t, http.StatusOK, reader.getJSON("/api/parked?handler=ship&offset=40&limit=20", &resp))
	assert.EqualValues(t, 55, resp.Total)
	assert.Equal(t, keysOf("ship", 55)[40:], keys(resp))

	html := func(path string) string {
		status, page := reader.do(http.MethodGet, path, "", "", map[string]string{"Accept": "text/html"})
		require.Equal(t, http.StatusOK, status)
		return string(page)
	}
	page := html("/parked")
	assert.Equal(t, 100, strings.Count(page, `class="parked-sequence"`))
	assert.Contains(t, page, "keys 1–100 of 115, 100 event(s) held by this page")
	assert.Contains(t, page, `rel="next" href="?&amp;page=2"`)
	assert.NotContains(t, page, `rel="prev"`)
	page = html("/parked?page=2")
	assert.Equal(t, 15, strings.Count(page, `class="parked-sequence"`))
	assert.Contains(t, page, "keys 101–115 of 115")
	assert.NotContains(t, page, `rel="next"`)

	page = html("/parked?handler=ship&limit=20&page=2")
	assert.Equal(t, 20, strings.Count(page, `class="parked-sequence"`))
	assert.Contains(t, page, "<code>ship-020</code>")
	assert.Contains(t, page, "keys 21–40 of 55")
	assert.Contains(t, page, `rel="prev" href="?handler=ship&amp;limit=20&amp;page=1"`)
	assert.Contains(t, page, `rel="next" href="?handler=ship&amp;limit=20&amp;page=3"`)
	page = html("/parked?handler=ship&limit=20&page=9")
	assert.Contains(t, page, "No key on this page.")
	assert.Contains(t, page, `rel="prev" href="?handler=ship&amp;limit=20&amp;page=3"`, "back to the last page")

	// Pages and offsets beyond any listing are empty pages, not a wrapped
	// negative offset.
	for _, q := range []string{"page=9223372036854775807", "page=4611686018427387904&limit=2",
		"offset=9223372036854775807", "offset=9223372036854775807&limit=1000"} {
		require.Equal(t, http.StatusOK, reader.getJSON("/api/parked?"+q, &resp), q)
		assert.Empty(t, resp.Sequences, q)
		assert.EqualValues(t, 115, resp.Total, q)
		assert.Positive(t, resp.Offset, q)
		assert.Contains(t, html("/parked?"+q), "No key on this page.", q)
	}
}
