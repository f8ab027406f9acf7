package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// The event's own faults, as real libraries report them, are never an
// outage: an empty or truncated payload (a bare io.EOF from encoding/json),
// a per-event URL that is malformed, of an unknown scheme, of a host that
// does not exist or with a certificate that does not verify, a Redis reply
// whose code only starts like an outage's (BUSYGROUP is not BUSY), and a
// plain error whose text does. Classed as outages, they would be retried
// for ever, never counted and never dead-lettered.
func TestIsTransportError_EventFaultsAreNotOutages(t *testing.T) {
	t.Parallel()
	var v map[string]any
	emptyPayload := json.NewDecoder(bytes.NewReader(nil)).Decode(&v)
	truncated := json.NewDecoder(bytes.NewReader([]byte(`{"order":"o-1`))).Decode(&v)
	_, badScheme := http.Get("htp://example.com/hook")
	_, badURL := http.Get("http://[::1%zz]/hook")
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake it refuses is the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	_, untrusted := http.Get(tlsSrv.URL) // the test server's certificate is signed by no known authority
	noSuchHost := &url.Error{Op: "Post", URL: "https://hooks.invalid/x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "hooks.invalid", IsNotFound: true}}}

	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	stream := "arcmill-test:" + uuid.NewString() + ":busygroup"
	t.Cleanup(func() { _ = rdb.Del(ctx, stream).Err() })
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
	busyGroup := rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err()

	for name, err := range map[string]error{"json empty payload": emptyPayload, "json truncated payload": truncated,
		"http unsupported scheme": badScheme, "http malformed URL": badURL, "http untrusted certificate": untrusted,
		"http no such host": noSuchHost, "redis BUSYGROUP": busyGroup,
		"plain error starting with LOADING": errors.New("LOADING config failed: bad yaml")} {
		require.Error(t, err, name)
		assert.False(t, IsTransportError(err), "%s: %v (%T) classed as an outage", name, err, err)
	}
}

// An HTTP dependency that is down is an outage: refused, or cut before
// its reply (io.EOF inside the url.Error), and a DNS lookup that timed out.
func TestIsTransportError_HTTPDependencyDownIsOutage(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	_, refused := http.Get("http://" + addr + "/hook")

	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close() // no reply at all
		}
	}))
	t.Cleanup(cut.Close)
	_, closed := http.Post(cut.URL, "application/json", bytes.NewReader([]byte(`{}`)))
	dnsTimeout := &url.Error{Op: "Get", URL: "https://ledger/x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "i/o timeout", Name: "ledger", IsTimeout: true}}}

	for name, err := range map[string]error{"refused": refused, "cut before the reply": closed, "dns timeout": dnsTimeout} {
		require.Error(t, err, name)
		assert.True(t, IsTransportError(err), "%s: %v (%T) not classed as an outage", name, err, err)
	}
}
