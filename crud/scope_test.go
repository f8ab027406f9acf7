package crud

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Middleware puts the request id (the client's, or a new one) and the
// identified user and organization in the context, and the events built
// from that context carry them.
func TestMiddleware_FillsScope(t *testing.T) {
	t.Parallel()
	var got Scope
	h := Middleware(MiddlewareConfig{
		Identify: func(r *http.Request) (Value, Value) { return StringOrAbsent(r.Header.Get("X-User")), String("org-1") },
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = ScopeFrom(r.Context()) }))

	req := httptest.NewRequest(http.MethodPost, "/products", nil)
	req.Header.Set(RequestIDHeader, "req-abc")
	req.Header.Set("X-User", "u-7")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, NewScope("req-abc", "u-7", "org-1"), got)
	assert.Equal(t, "req-abc", rec.Header().Get(RequestIDHeader))

	ev, err := Created("product", map[string]string{"_id": "p-1"}, got)
	require.NoError(t, err)
	assert.Equal(t, "req-abc", ev.Meta.CorrelationID)
	assert.Equal(t, "u-7", ev.Meta.UserID)
	assert.Equal(t, "org-1", ev.Meta.OrganizationID)
	assert.Equal(t, "p-1", ev.Meta.ResourceID)

	// No header, or one too long: a fresh UUID.
	for _, hdr := range []string{"", strings.Repeat("x", DefaultMaxRequestIDLength+1)} {
		req = httptest.NewRequest(http.MethodGet, "/", nil)
		if hdr != "" {
			req.Header.Set(RequestIDHeader, hdr)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		assert.Len(t, got.RequestID, 36)
	}
}

func TestScopeFrom_Empty(t *testing.T) {
	t.Parallel()
	assert.Equal(t, Scope{}, ScopeFrom(context.Background()))
}

// Changes Arc cannot express are refused with ErrInvalidChange.
func TestChange_Invalid(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]Change{
		"no resource":  {Op: Create, Doc: 1},
		"restore":      {Op: "restore", Resource: "x"},
		"not JSON doc": {Op: Create, Resource: "x", Doc: []byte("{")},
		"raw not JSON": {Op: Create, Resource: "x", Doc: json.RawMessage("{")},
		"func doc":     {Op: Create, Resource: "x", Doc: func() {}},
	} {
		_, err := c.Event()
		if name == "not JSON doc" {
			// []byte is base64 to encoding/json: a string, not an error.
			assert.NoError(t, err, name)
			continue
		}
		assert.ErrorIs(t, err, ErrInvalidChange, name)
	}
	// A document timestamp Node reads as Invalid Date is refused unless
	// allowed.
	c := Change{Op: Update, Resource: "log", Doc: map[string]string{"timestamp": "yesterday"}}
	_, err := c.Event()
	assert.Error(t, err)
	c.AllowInvalidDates = true
	_, err = c.Event()
	assert.NoError(t, err)
}
