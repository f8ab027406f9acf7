package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// binary is the arcmill command, built once for the tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "arcmill-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "arcmill")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("building arcmill: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// arcmill runs the binary with stdin and the test's Redis.
func arcmill(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runBinary(t, strings.NewReader(stdin), append(os.Environ(), "ARCMILL_REDIS_ADDR="+testenv.RedisAddr(t)), args...)
}

// runBinary runs the built binary with stdin and env, within a minute, and
// returns what it printed and its exit code.
func runBinary(t *testing.T, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env, cmd.Stdin = env, stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{out.String(), errb.String(), code}
}

func redisClient(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

func tempStream(t *testing.T, c *redis.Client) string {
	s := "arcmill-cli-test:" + uuid.NewString()
	t.Cleanup(func() { c.Del(context.Background(), s, s+":dlq") })
	return s
}

func TestUsageAndHelp(t *testing.T) {
	r := arcmill(t, "")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stdout, "Commands:")
	r = arcmill(t, "", "frobnicate")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown command "frobnicate"`)
	for _, cmd := range []string{"tail", "publish", "dlq", "outbox"} {
		r = arcmill(t, "", cmd, "--help")
		assert.Equal(t, exitOK, r.code, cmd)
		assert.Contains(t, r.stdout, "Examples:", cmd)
		assert.Contains(t, r.stdout, "Flags:", cmd)
	}
	r = arcmill(t, "", "publish")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `Run "arcmill publish --help"`)
	r = arcmill(t, "", "publish", "$reserved", "{}")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "reserved")
	r = arcmill(t, "", "publish", "a.b", "{not json")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "not JSON")
	r = arcmill(t, "", "dlq", "purge")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--all")
	r = arcmill(t, "", "outbox", "status")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "ARCMILL_OUTBOX_DSN")
	r = arcmill(t, "", "tail", "a", "b")
	assert.Equal(t, exitUsage, r.code)
	r = arcmill(t, "", "tail", "--format", "yaml")
	assert.Equal(t, exitUsage, r.code)

	// An unreachable server is a failure that says what to do.
	cmd := exec.Command(binary, "publish", "a.b", "{}")
	cmd.Env = append(os.Environ(), "ARCMILL_REDIS_ADDR=127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, exitFailure, ee.ExitCode())
	assert.Contains(t, string(out), "ARCMILL_REDIS_ADDR")
}

const (
	// tailStartWait bounds the wait for a tail process to start reading.
	tailStartWait = 10 * time.Second
	// tailStartPoll is how often Redis is asked whether it reads.
	tailStartPoll = 10 * time.Millisecond
)

// xreadBlocked returns the ids of the clients Redis holds blocked in a
// plain XREAD (CLIENT LIST). Services share this Redis, but their
// consumers block in XREADGROUP; a plain XREAD that appears is our tail.
func xreadBlocked(t *testing.T, c *redis.Client) map[string]bool {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		if fields["cmd"] == "xread" && strings.Contains(fields["flags"], "b") {
			ids[fields["id"]] = true
		}
	}
	return ids
}

func TestPublishAndTailStream(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	ctx := context.Background()

	// tail in the background, no group, JSON lines, two order events.
	tail := exec.Command(binary, "tail", "order.*", "--stream", stream, "--wait", "--count", "2", "--timeout", "20s")
	tail.Env = append(os.Environ(), "ARCMILL_REDIS_ADDR="+testenv.RedisAddr(t))
	var tailOut bytes.Buffer
	tail.Stdout = &tailOut
	before := xreadBlocked(t, c)
	require.NoError(t, tail.Start())
	// tail reads from "$": publish only once its XREAD blocks on the server.
	require.Eventually(t, func() bool {
		for id := range xreadBlocked(t, c) {
			if !before[id] {
				return true
			}
		}
		return false
	}, tailStartWait, tailStartPoll, "tail never blocked in XREAD")

	r := arcmill(t, "", "publish", "order.created", `{"orderId":"o-1"}`, "--stream", stream,
		"--correlation-id", "req-7", "--user-id", "u-1", "--meta", `tenantTier="gold"`)
	require.Equal(t, 0, r.code, r.stderr)
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev))
	assert.Equal(t, "req-7", ev.Meta.CorrelationID)
	assert.Equal(t, `"gold"`, string(ev.Meta.Extra["tenantTier"]))
	r = arcmill(t, "", "publish", "payment.captured", "{}", "--stream", stream)
	require.Equal(t, 0, r.code, r.stderr)
	r = arcmill(t, `{"orderId":"o-1","paid":true}`, "publish", "order.paid", "--stream", stream) // payload on stdin
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, tail.Wait(), "tail exits 0 after --count events")

	lines := strings.Split(strings.TrimSpace(tailOut.String()), "\n")
	require.Len(t, lines, 2, tailOut.String())
	var first, second arc.Event
	require.NoError(t, arc.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, arc.Unmarshal([]byte(lines[1]), &second))
	assert.True(t, ev.Equal(first), "the event as published")
	assert.Equal(t, "order.paid", second.Type)
	assert.JSONEq(t, `{"orderId":"o-1","paid":true}`, string(second.Payload))

	// The entries are in Arc's layout.
	entries := c.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 3)
	assert.Equal(t, "order.created", entries[0].Values["type"])
	wire, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, string(wire), entries[0].Values["data"])
	assert.Empty(t, c.XInfoGroups(ctx, stream).Val(), "a tail without --group creates no group")

	// As a consumer group, from the start, text format: acknowledged.
	c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "x.y", "data", "not json"}})
	r = arcmill(t, "", "tail", "--stream", stream, "--group", "ops", "--from-start", "--count", "4",
		"--format", "text", "--timeout", "10s")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "order.created")
	assert.Contains(t, r.stdout, "correlation=req-7")
	assert.Contains(t, r.stdout, "MALFORMED", "a foreign entry is shown, not fatal")
	pending := c.XPending(ctx, stream, "ops").Val()
	assert.Zero(t, pending.Count, "what it printed is acknowledged")

	// --timeout with nothing to read exits 0.
	r = arcmill(t, "", "tail", "nothing.*", "--stream", stream, "--timeout", "300ms")
	assert.Equal(t, 0, r.code, r.stderr)
}

func TestPublishAndTailChannel(t *testing.T) {
	prefix := "arcmill-cli-test-" + uuid.NewString()[:8]
	tail := exec.Command(binary, "tail", "order.*", "--channel", "--prefix", prefix, "--count", "1",
		"--timeout", "20s", "--format", "json")
	tail.Env = append(os.Environ(), "ARCMILL_REDIS_ADDR="+testenv.RedisAddr(t))
	stdout, err := tail.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, tail.Start())
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Publish until the subscription is up (Pub/Sub keeps nothing).
	deadline := time.Now().Add(15 * time.Second)
	var got string
	for got == "" && time.Now().Before(deadline) {
		r := arcmill(t, "", "publish", "order.created", `{"n":1}`, "--channel", "--prefix", prefix)
		require.Equal(t, 0, r.code, r.stderr)
		select {
		case got = <-lines:
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.NotEmpty(t, got)
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(got), &ev))
	assert.Equal(t, "order.created", ev.Type)
	require.NoError(t, tail.Wait())
}

// deadLetter adds a dead letter in Arc's layout, as arcmill's
// DeadLetterPublisher writes it.
func deadLetter(t *testing.T, c *redis.Client, dlq, from, typ string) arc.Event {
	ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	env := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: "boom"}, Attempts: 3,
		Reason: "retry_exhausted", HandlerName: "billing"}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	msg := message.NewMessage(ev.Meta.ID, payload)
	msg.Metadata.Set(middleware.MetadataDLQSourceTopic, from)
	msg.Metadata.Set(middleware.MetadataDLQOriginalID, "1-0")
	msg.Metadata.Set(middleware.MetadataDLQConsumerGroup, "g")
	require.NoError(t, (&redisstream.DeadLetterPublisher{Client: c}).Publish(dlq, msg))
	return ev
}

func TestDLQStream(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	dlq := stream + ":dlq"
	ctx := context.Background()
	a := deadLetter(t, c, dlq, stream, "order.created")
	b := deadLetter(t, c, dlq, stream, "payment.failed")
	a2 := deadLetter(t, c, dlq, stream, "order.created")
	c.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{"type", "x", "data", "{broken"}})

	r := arcmill(t, "", "dlq", "list", "--stream", dlq, "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.Equal(t, a.Meta.ID, first["eventId"])
	assert.Equal(t, "retry_exhausted", first["reason"])
	assert.Contains(t, lines[3], "unreadable")

	r = arcmill(t, "", "dlq", "show", b.Meta.ID, "--stream", dlq, "--format", "text")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "payment.failed")
	r = arcmill(t, "", "dlq", "show", "no-such-id", "--stream", dlq)
	assert.Equal(t, exitNotFound, r.code)

	// Redrive one type, oldest first, capped: back on the original stream.
	r = arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--type", "order.created", "--rate", "50")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "redriven 2")
	entries := c.XRange(ctx, stream, "-", "+").Val()
	require.Len(t, entries, 2)
	var got arc.Event
	require.NoError(t, arc.Unmarshal([]byte(entries[0].Values["data"].(string)), &got))
	assert.True(t, a.Equal(got), "the original event, unchanged, oldest first")
	require.NoError(t, arc.Unmarshal([]byte(entries[1].Values["data"].(string)), &got))
	assert.Equal(t, a2.Meta.ID, got.Meta.ID)
	r = arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--type", "order.created")
	require.Equal(t, exitNotFound, r.code, "a re-run redrives nothing twice, and says nothing matched: %s", r.stderr)
	assert.Contains(t, r.stderr, "no dead letter on "+dlq+" matches")
	assert.EqualValues(t, 2, c.XLen(ctx, stream).Val())

	// --to, by id.
	replay := stream + ":replay"
	defer c.Del(ctx, replay)
	r = arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--id", b.Meta.ID, "--to", replay)
	require.Equal(t, 0, r.code, r.stderr)
	assert.EqualValues(t, 1, c.XLen(ctx, replay).Val())

	r = arcmill(t, "", "dlq", "purge", "--stream", dlq, "--all", "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"purged":1,"stream":"`+dlq+`"}`, strings.TrimSpace(r.stdout), "only the unreadable entry was left")
	assert.Zero(t, c.XLen(ctx, dlq).Val())
}

// outboxFixture makes an outbox with two delivered rows, one pending and
// two dead letters, in the dialect's database.
func outboxFixture(t *testing.T, d outbox.Dialect, driver, dsn string) *outbox.Outbox {
	db, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	table := "arcmill_cli_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	ob, err := outbox.New(db, outbox.Config{Dialect: d, Table: table})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, ob.Migrate(ctx))
	t.Cleanup(func() {
		_, err := db.Exec("DROP TABLE IF EXISTS " + table)
		assert.NoError(t, err)
		_, err = db.Exec("DROP TABLE IF EXISTS " + table + "_lock")
		assert.NoError(t, err)
		if d == outbox.PostgreSQL {
			_, err = db.Exec("DROP FUNCTION IF EXISTS " + table + "_notify()")
			assert.NoError(t, err)
		}
	})
	write := func(typ string) arc.Event {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "orders", Event: ev}))
		require.NoError(t, tx.Commit())
		return ev
	}
	write("order.created")
	write("order.paid")
	relay, err := ob.NewRelay(nopPublisher{}, outbox.RelayConfig{})
	require.NoError(t, err)
	_, err = relay.RelayBatch(ctx)
	require.NoError(t, err)
	dead1, dead2 := write("mail.sent"), write("mail.bounced")
	relay, err = ob.NewRelay(failing{dead1.Meta.ID, dead2.Meta.ID}, outbox.RelayConfig{Claim: outbox.ClaimLease,
		FailurePolicy: func(context.Context, outbox.Failure) outbox.Decision { return outbox.Decision{DeadLetter: true} }})
	require.NoError(t, err)
	_, err = relay.RelayBatch(ctx)
	require.NoError(t, err)
	write("order.shipped") // pending
	return ob
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

type failing []string

func (f failing) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		for _, id := range f {
			if m.UUID == id {
				return errors.New("smtp down")
			}
		}
	}
	return nil
}
func (failing) Close() error { return nil }

func TestOutboxCommands(t *testing.T) {
	dsns := map[string]struct {
		d           outbox.Dialect
		driver, dsn string
	}{
		"postgres": {outbox.PostgreSQL, "pgx", testenv.PostgresDSN(t)},
		"mysql":    {outbox.MySQL, "mysql", testenv.MySQLDSN(t)},
		"sqlite":   {outbox.SQLite, "sqlite", "file:" + filepath.Join(t.TempDir(), "shop.db") + "?_pragma=busy_timeout(10000)"},
	}
	for name, c := range dsns {
		t.Run(name, func(t *testing.T) {
			ob := outboxFixture(t, c.d, c.driver, c.dsn)
			flags := []string{"--dsn", c.dsn, "--table", ob.Table()}
			run := func(args ...string) result { return arcmill(t, "", append(args, flags...)...) }

			r := run("outbox", "status", "--format", "json")
			require.Equal(t, 0, r.code, r.stderr)
			var st map[string]any
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
			assert.EqualValues(t, 1, st["pending"])
			assert.EqualValues(t, 2, st["dead"])
			assert.EqualValues(t, 2, st["delivered"])
			assert.EqualValues(t, 0, st["inFlight"])
			assert.Equal(t, name, st["dialect"])
			r = run("outbox", "status", "--format", "text")
			assert.Contains(t, r.stdout, "pending    1")

			r = run("dlq", "list", "--outbox", "--format", "json")
			require.Equal(t, 0, r.code, r.stderr)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			require.Len(t, lines, 2)
			assert.Contains(t, lines[0], "mail.sent", "oldest first")
			assert.Contains(t, lines[0], "smtp down")
			r = run("dlq", "show", "no-such", "--outbox")
			assert.Equal(t, exitNotFound, r.code)

			r = run("dlq", "redrive", "--outbox", "--type", "mail.sent")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "redriven 1")
			r = run("dlq", "purge", "--outbox", "--type", "mail.bounced", "--format", "json")
			require.Equal(t, 0, r.code, r.stderr)
			assert.JSONEq(t, `{"purged":1,"table":"`+ob.Table()+`"}`, strings.TrimSpace(r.stdout), "on stdout, as a stream purge")
			r = run("dlq", "purge", "--outbox", "--type", "mail.bounced")
			assert.Equal(t, exitNotFound, r.code, "nothing matched: %s", r.stderr)
			r = run("outbox", "purge", "--older-than", "0s")
			require.Equal(t, 0, r.code, r.stderr)
			r = run("outbox", "status", "--format", "json")
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
			assert.EqualValues(t, 2, st["pending"], "the redriven row is pending again")
			assert.EqualValues(t, 0, st["dead"])
			assert.EqualValues(t, 0, st["delivered"], "purged")
		})
	}
	r := arcmill(t, "", "outbox", "status", "--dsn", dsns["sqlite"].dsn, "--table", "no_such_table")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "migrated")
}

// Usage mistakes exit with the usage code and print no help on stdout; an
// argument after "--" that looks like a flag is an argument; a missing
// outbox row is "not found".
func TestUsageMistakesAndArgumentEdges(t *testing.T) {
	r := arcmill(t, "", "dlq", "list", "--limit", "abc")
	assert.Equal(t, exitUsage, r.code)
	assert.Empty(t, r.stdout, "no help text on stdout for a mistake")
	r = arcmill(t, "", "dlq", "redrive", "--limit", "-1")
	assert.Equal(t, exitUsage, r.code)
	c := redisClient(t)
	stream := tempStream(t, c)
	r = arcmill(t, "", "publish", "--stream", stream, "--", "t.e", "-5")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"payload":-5`)
	r = arcmill(t, "", "publish", "t.e", "{}", "--stream", stream, "--meta", `id="x"`)
	assert.Equal(t, exitUsage, r.code, r.stderr)

	dsn := "file:" + filepath.Join(t.TempDir(), "shop.db") + "?_pragma=busy_timeout(10000)"
	ob := outboxFixture(t, outbox.SQLite, "sqlite", dsn)
	flags := []string{"--outbox", "--dsn", dsn, "--table", ob.Table()}
	r = arcmill(t, "", append([]string{"dlq", "show", "1"}, flags...)...)
	assert.Equal(t, exitNotFound, r.code, "row 1 is delivered, not dead")
	r = arcmill(t, "", append([]string{"dlq", "show", "3", "--format", "json"}, flags...)...)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"row":3`)
	r = arcmill(t, "", append([]string{"dlq", "purge", "--all", "--limit", "1"}, flags...)...)
	assert.Equal(t, exitUsage, r.code)
}
