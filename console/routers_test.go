package console

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// The overview shows a running router's counters: an event a handler
// took, one no handler matched, and a message that is not an Arc event
// (dropped, as wildcard.Config{} does by default).
func TestOverviewShowsRouters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	mr, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{})
	require.NoError(t, err)
	_, err = wr.Subscribe(pubSub, "events", "order.*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		require.NoError(t, pubSub.Close())
	})
	<-wr.Running()

	publish := func(typ string) {
		ev, err := arc.NewEvent(typ, map[string]any{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pubSub.Publish("events", msg))
	}
	publish("order.created")
	publish("user.created")
	require.NoError(t, pubSub.Publish("events", message.NewMessage(watermill.NewUUID(), []byte("not an event"))))
	deadline := time.Now().Add(30 * time.Second)
	for st := wr.Stats(); st.Handled+st.Unmatched+st.Malformed < 3; st = wr.Stats() {
		require.True(t, time.Now().Before(deadline), "the router did not see the three messages: %+v", st)
		time.Sleep(10 * time.Millisecond)
	}

	cfg := b.config()
	cfg.Routers = []Router{{Name: "orders", Router: wr}}
	srv := b.serve(b.console(cfg))
	var o Overview
	require.Equal(t, http.StatusOK, bearer(t, srv, readToken).getJSON("/api/overview", &o))
	require.Len(t, o.Routers, 1)
	assert.Equal(t, RouterInfo{Name: "orders", Handled: 1, Unmatched: 1, Malformed: 1, MalformedDropped: 1}, o.Routers[0])

	code, page := bearer(t, srv, readToken).do(http.MethodGet, "/", "", "", nil)
	require.Equal(t, http.StatusOK, code)
	html := string(page)
	i := strings.Index(html, `data-router="orders"`)
	require.GreaterOrEqual(t, i, 0, "the overview page has a line for the router")
	row := html[i:]
	row = row[:strings.Index(row, "</tr>")]
	assert.True(t, strings.HasSuffix(row, `<td class="bad">1</td>`), "dropped malformed messages are marked: %s", row)

	cfg.Routers = []Router{{Name: "orders"}}
	assert.ErrorIs(t, cfg.Validate(), ErrInvalidConfig)
}
