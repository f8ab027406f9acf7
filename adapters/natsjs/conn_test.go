package natsjs

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// listening is the nats-server log line that names the client port it
// chose (-p -1 picks a free one, so no other process can take it first).
var listening = regexp.MustCompile(`Listening for client connections on (\S+)`)

// startNatsServer runs a throwaway nats-server -js with args on a free
// loopback port and returns its URL once it accepts clients; it is
// stopped when t ends. A missing binary fails the test, or skips it under
// ARCMILL_SKIP_MISSING_SERVICES=1, as the shared services do.
func startNatsServer(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("nats-server is not installed (%v); to skip the tests that need it, set %s=1", err, testenv.SkipVariable)
		}
		t.Skipf("nats-server is not installed, skipped as %s=1 asks", testenv.SkipVariable)
	}
	cmd := exec.Command(bin, append([]string{"-a", "127.0.0.1", "-p", "-1", "-js", "-sd", t.TempDir()}, args...)...)
	out, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() { // read the log to its end, so the server never blocks on it
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return "nats://" + a
	case <-time.After(waitTimeout):
		t.Fatal("nats-server did not listen in time")
		return ""
	}
}

// A config names one connection, and its Options are never ignored
// silently.
func TestConfigConnOrURL(t *testing.T) {
	t.Parallel()
	conn := &nats.Conn{} // never used: validation fails first
	opt := nats.Name("x")
	for name, tc := range map[string]struct {
		err   error
		field string
	}{
		"publisher with Conn and URL":      {PublisherConfig{Conn: conn, URL: nats.DefaultURL}.Validate(), "URL"},
		"publisher with Conn and Options":  {PublisherConfig{Conn: conn, Options: []nats.Option{opt}}.Validate(), "Options"},
		"publisher with a nil option":      {PublisherConfig{URL: nats.DefaultURL, Options: []nats.Option{nil}}.Validate(), "Options[0]"},
		"subscriber with Conn and URL":     {SubscriberConfig{Conn: conn, URL: nats.DefaultURL, Group: "g"}.Validate(), "URL"},
		"subscriber with Conn and Options": {SubscriberConfig{Conn: conn, Options: []nats.Option{opt}, Group: "g"}.Validate(), "Options"},
		"subscriber with a nil option":     {SubscriberConfig{URL: nats.DefaultURL, Options: []nats.Option{opt, nil}, Group: "g"}.Validate(), "Options[1]"},
	} {
		require.ErrorIs(t, tc.err, ErrInvalidConfig, name)
		assert.Contains(t, tc.err.Error(), tc.field, name)
	}
	require.NoError(t, PublisherConfig{URL: nats.DefaultURL, Options: []nats.Option{opt}}.Validate())
	require.NoError(t, SubscriberConfig{URL: nats.DefaultURL, Group: "g"}.Validate())
}

// No error names a password or a token given in a URL.
func TestRedactURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://u:secret@h:4222":            "nats://u:xxxxx@h:4222",
		"nats://secrettoken@h:4222":         "nats://xxxxx@h:4222",
		"h:4222":                            "nats://h:4222",
		"tls://a:1, nats://u:secret@b:2":    "tls://a:1,nats://u:xxxxx@b:2",
		"nats://u:secret@h:4222/%zz":        "(unparsable URL)",
		"nats://127.0.0.1:4222,127.0.0.1:5": "nats://127.0.0.1:4222,nats://127.0.0.1:5",
	} {
		assert.Equal(t, want, redactURLs(in), in)
	}
}

// Against a nats-server that requires a user and password, a publisher
// and a subscriber given a URL and nats.UserInfo connect, publish and
// consume; without the option they are refused, and the error does not
// repeat a password from the URL. The connection they open reconnects
// for ever unless an option of the caller's says otherwise.
func TestURLAndOptions_UserPassword(t *testing.T) {
	t.Parallel()
	url := startNatsServer(t, "--user", "arcmill", "--pass", "s3cret")
	creds := nats.UserInfo("arcmill", "s3cret")

	_, err := NewPublisher(PublisherConfig{URL: url})
	require.Error(t, err, "no credentials")
	assert.Contains(t, err.Error(), "natsjs: connecting to")
	wrong := "nats://arcmill:wrongpass@" + url[len("nats://"):]
	_, err = NewSubscriber(SubscriberConfig{URL: wrong, Group: "g"})
	require.Error(t, err, "wrong password")
	assert.NotContains(t, err.Error(), "wrongpass")

	pub, err := NewPublisher(PublisherConfig{URL: url, Options: []nats.Option{creds}})
	require.NoError(t, err)
	assert.Equal(t, -1, pub.conn.Opts.MaxReconnect, "DefaultConnOptions: reconnect for ever")
	require.NoError(t, EnsureStream(pub.js, "EVENTS", DefaultPrefix))
	require.NoError(t, EnsureStream(pub.js, "DEAD_LETTERS", DefaultDeadLetterPrefix))

	sub, err := NewSubscriber(SubscriberConfig{URL: url, Group: "billing",
		Options: []nats.Option{creds, nats.MaxReconnects(3), nats.Name("arcmill-test")}})
	require.NoError(t, err)
	assert.Equal(t, 3, sub.cfg.Conn.Opts.MaxReconnect, "the caller's option overrides arcmill's")
	assert.Equal(t, "arcmill-test", sub.cfg.Conn.Opts.Name)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, DefaultPrefix+".order.created")
	require.NoError(t, err)

	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pub.Publish("", msg))
	select {
	case m := <-msgs:
		assert.Equal(t, ev.Meta.ID, m.UUID)
		m.Ack()
	case <-time.After(waitTimeout):
		t.Fatal("the event did not arrive")
	}

	require.NoError(t, sub.Close())
	require.NoError(t, pub.Close())
	require.Eventually(t, func() bool { return sub.cfg.Conn.IsClosed() && pub.conn.IsClosed() },
		waitTimeout, pollInterval, "Close drains and closes the connection it opened")
}
