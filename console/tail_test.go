package console

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
)

// TestLiveTailFollowsMatchingEvents opens a live tail for order.* and
// appends events of several types: only the matching ones arrive, payloads
// redacted; Close ends the tail.
func TestLiveTailFollowsMatchingEvents(t *testing.T) {
	defer leaktest.RequireNone(t, "github.com/arcmill/arcmill/console", 5*time.Second)
	b := setup(t)
	c, err := New(b.config())
	require.NoError(t, err)
	srv := b.serve(c)
	ctx := context.Background()

	cl := bearer(t, srv, readToken)
	status, _ := cl.do(http.MethodGet, "/api/tail?stream=not-configured", "", "", nil)
	assert.Equal(t, http.StatusNotFound, status, "a tail reads configured streams only")

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/tail?stream="+b.stream+"&pattern=order.*", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	events := make(chan TailEvent, 10)
	ready := make(chan struct{})
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		kind := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && kind == "ready":
				close(ready)
			case strings.HasPrefix(line, "data: ") && kind == "event":
				var ev TailEvent
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil {
					events <- ev
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(testWait):
		t.Fatal("the tail never said ready")
	}
	for _, typ := range []string{"invoice.sent", "order.created", "order.shipped"} {
		ev, err := arc.NewEvent(typ, map[string]string{"secret": "tail-secret"}, arc.Meta{})
		require.NoError(t, err)
		data, err := arc.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []any{"type", typ, "data", string(data)}}).Err())
	}
	var got []string
	for len(got) < 2 {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "the tail ended early")
			got = append(got, ev.Type)
			assert.NotContains(t, string(ev.Event), "tail-secret")
			assert.NotEmpty(t, ev.EventID)
		case <-time.After(testWait):
			t.Fatalf("got %v", got)
		}
	}
	assert.Equal(t, []string{"order.created", "order.shipped"}, got)

	// The page renders, and Close ends the open tail.
	status, page := cl.do(http.MethodGet, "/tail?stream="+b.stream, "", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(page), `id="tail-status"`)
	require.NoError(t, c.Close())
	select {
	case _, ok := <-events:
		for ok {
			_, ok = <-events
		}
	case <-time.After(testWait):
		t.Fatal("Close did not end the tail")
	}
	http.DefaultClient.CloseIdleConnections()
}
