package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// gapHook adds an event right after an XREAD that found nothing.
type gapHook struct {
	other  *redis.Client
	stream string
	fired  atomic.Bool
}

func (h *gapHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gapHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *gapHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "xread" && errors.Is(err, redis.Nil) && h.fired.CompareAndSwap(false, true) {
			h.other.XAdd(context.Background(), &redis.XAddArgs{Stream: h.stream, Values: []any{"type", "t.gap", "data",
				`{"type":"t.gap","payload":null,"meta":{"id":"gap-1","timestamp":"2026-01-01T00:00:00.000Z"}}`}})
		}
		return err
	}
}

// An event that lands between two blocking reads is not skipped (re-reading
// from "$" used to skip it).
func TestTailMissesNothingBetweenReads(t *testing.T) {
	other := redisClient(t)
	stream := tempStream(t, other)
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer c.Close()
	c.AddHook(&gapHook{other: other, stream: stream})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var got []string
	_ = tailStream(ctx, c, tailOpts{stream: stream}, func(data []byte, where string) (bool, error) {
		got = append(got, string(data))
		return true, nil
	})
	require.Len(t, got, 1)
	assert.Contains(t, got[0], "gap-1")
}

// A redrive whose XADD fails keeps the dead letter (a MULTI deleted it).
func TestRedriveFailureKeepsDeadLetter(t *testing.T) {
	c := redisClient(t)
	ctx := context.Background()
	dlq, target := tempStream(t, c), tempStream(t, c)
	c.Set(ctx, target, "not a stream", 0)
	deadLetter(t, c, dlq, "orig", "order.created")
	r := arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--to", target)
	assert.Equal(t, exitFailure, r.code)
	assert.EqualValues(t, 1, c.XLen(ctx, dlq).Val(), "the dead letter is still there")
}

// Interrupted mid-redrive (SIGINT, exit 130) and run again: every event
// redriven exactly once, oldest first.
func TestRedriveInterruptedAndRerun(t *testing.T) {
	c := redisClient(t)
	ctx := context.Background()
	dlq, orig := tempStream(t, c), tempStream(t, c)
	var ids []string
	for i := 0; i < 8; i++ {
		ids = append(ids, deadLetter(t, c, dlq, orig, "order.created").Meta.ID)
	}
	cmd := exec.Command(binary, "dlq", "redrive", "--stream", dlq, "--rate", "4")
	cmd.Env = append(os.Environ(), "ARCMILL_REDIS_ADDR="+testenv.RedisAddr(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	time.Sleep(700 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	_ = cmd.Wait()
	assert.Equal(t, exitInterrupted, cmd.ProcessState.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "run the same command again")
	moved := c.XLen(ctx, orig).Val()
	assert.Positive(t, moved)
	assert.Less(t, moved, int64(8), "interrupted before the end")

	r := arcmill(t, "", "dlq", "redrive", "--stream", dlq)
	require.Equal(t, 0, r.code, r.stderr)
	msgs := c.XRange(ctx, orig, "-", "+").Val()
	require.Len(t, msgs, 8, "each exactly once")
	for i, m := range msgs {
		assert.Contains(t, m.Values["data"], ids[i], "oldest first")
	}
}

// With --group, tail acknowledges what it reads (printed or filtered), never
// reads past --count, and prints a pretty-printed payload on one line.
func TestTailGroupAndOneLine(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	for _, typ := range []string{"payment.x", "order.a", "order.b", "order.c"} {
		r := arcmill(t, "{\n  \"a\": 1\n}\n", "publish", typ, "--stream", stream)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stdout, "\n"), "one line: %q", r.stdout)
	}
	r := arcmill(t, "", "tail", "order.*", "--stream", stream, "--group", "aud", "--from-start", "--count", "1",
		"--timeout", "10s", "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 1, strings.Count(r.stdout, "\n"))
	assert.Contains(t, r.stdout, `"payload":{"a":1}`)
	pending := c.XPending(context.Background(), stream, "aud").Val()
	assert.Zero(t, pending.Count, "nothing read and left unacknowledged")
	r = arcmill(t, "", "tail", "order.*", "--stream", stream, "--group", "aud", "--count", "2", "--timeout", "10s",
		"--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "order.b")
	assert.Contains(t, r.stdout, "order.c", "the next run goes on where the first stopped")
}

func TestCLIUsageEdges(t *testing.T) {
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
