package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/fakeclock"
	"github.com/arcmill/arcmill/middleware"
)

// The overview shows each configured breaker's state: in the API, and as
// a line of the page.
func TestOverviewShowsBreakers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	healthy, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "audit/log", Now: clock.Now})
	require.NoError(t, err)
	tripped, err := middleware.NewBreaker(middleware.BreakerConfig{Name: "billing/charge", MinRequests: 1, Now: clock.Now})
	require.NoError(t, err)
	// One failed call trips it (MinRequests 1); the call is held until the
	// context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	msg := newBreakerMessage(ctx)
	_, err = tripped.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, errors.New("payment API answers 500") })(msg)
	require.ErrorIs(t, err, middleware.ErrBreakerOpen)

	cfg := b.config()
	cfg.Breakers = []BreakerStats{healthy, tripped}
	srv := b.serve(b.console(cfg))
	var o Overview
	require.Equal(t, http.StatusOK, bearer(t, srv, readToken).getJSON("/api/overview", &o))
	require.Len(t, o.Breakers, 2)
	assert.Equal(t, "audit/log", o.Breakers[0].Name)
	assert.Equal(t, "closed", o.Breakers[0].State)
	assert.True(t, o.Breakers[0].Healthy)
	br := o.Breakers[1]
	assert.Equal(t, "open", br.State)
	assert.False(t, br.Healthy)
	assert.Equal(t, "payment API answers 500", br.LastError)
	require.NotNil(t, br.OpenUntil)
	assert.Equal(t, clock.Now().Add(middleware.DefaultBreakerCoolDown), *br.OpenUntil)
	assert.EqualValues(t, 1, br.Held)
	assert.EqualValues(t, 1, br.Opened)

	code, page := bearer(t, srv, readToken).do(http.MethodGet, "/", "", "", nil)
	require.Equal(t, http.StatusOK, code)
	html := string(page)
	assert.Contains(t, html, `data-breaker="billing/charge"`)
	row := html[strings.Index(html, `data-breaker="billing/charge"`):]
	row = row[:strings.Index(row, "</tr>")]
	assert.Contains(t, row, "open until 2026-11-30 12:01:00Z")
	assert.Contains(t, row, "payment API answers 500")

	// Arc's health route names it, and stays healthy: restarting the
	// process would not bring the payment API back.
	var h ArcHealth
	require.Equal(t, http.StatusOK, bearer(t, srv, opToken).getJSON(DefaultAdminPrefix+"/health", &h)) // admin routes: operators
	assert.True(t, h.Healthy)
	assert.Equal(t, []string{"billing/charge"}, h.OpenBreakers)
}

func newBreakerMessage(ctx context.Context) *message.Message {
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(ctx)
	return msg
}
