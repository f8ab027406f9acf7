package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

const (
	// redriveWait bounds the wait for a redrive's first event.
	redriveWait = 10 * time.Second
	// redrivePoll is how often the target stream is checked.
	redrivePoll = 10 * time.Millisecond
)

// A redrive whose XADD fails keeps the dead letter: it is deleted only
// once its event is back.
func TestRedriveFailureKeepsDeadLetter(t *testing.T) {
	c := redisClient(t)
	ctx := context.Background()
	dlq, target := tempStream(t, c), tempStream(t, c)
	require.NoError(t, c.Set(ctx, target, "not a stream", 0).Err())
	deadLetter(t, c, dlq, "orig", "order.created")
	r := arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--to", target)
	assert.Equal(t, exitFailure, r.code)
	assert.EqualValues(t, 1, c.XLen(ctx, dlq).Val(), "the dead letter is still there")
}

// A redrive interrupted midway (SIGINT, exit 130) and run again redrives
// every event exactly once, oldest first.
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
	// Interrupt once the first event is back (--rate 4 leaves 2 s for the rest).
	require.Eventually(t, func() bool { return c.XLen(ctx, orig).Val() > 0 }, redriveWait, redrivePoll)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	var exit *exec.ExitError
	require.ErrorAs(t, cmd.Wait(), &exit, "a non-zero exit")
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
