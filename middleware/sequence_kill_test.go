package middleware_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// seqChildEnv carries the child's settings: addr|env id|log list|name to
// block on.
const seqChildEnv = "ARCMILL_SEQUENCE_CHILD"

// logHandler appends each event's name to a Redis list once it ran, and
// blocks for ever (until killed) on the event named block, after logging
// "start:<name>".
func (e *seqEnv) logHandler(list, block string) func(context.Context, arc.Event) error {
	return func(ctx context.Context, ev arc.Event) error {
		name := nameOf(ev)
		if name == block {
			if err := e.client.RPush(context.Background(), list, "start:"+name).Err(); err != nil {
				return err
			}
			select {} // killed here, mid-release
		}
		return e.client.RPush(context.Background(), list, name).Err()
	}
}

// TestSequenceProcessHelper is the child of TestSequenceKilledMidRelease;
// it does nothing unless started by it.
func TestSequenceProcessHelper(t *testing.T) {
	spec := os.Getenv(seqChildEnv)
	if spec == "" {
		t.Skip("runs only as the child of TestSequenceKilledMidRelease")
	}
	parts := strings.Split(spec, "|")
	require.Len(t, parts, 4, spec)
	e := openSeqEnv(t, parts[0], parts[1])
	e.start("child", time.Second, e.logHandler(parts[2], parts[3]))
	select {} // runs until SIGKILL
}

// A process killed with SIGKILL while it releases a sequence loses
// nothing and breaks no order: another instance resumes the release after
// the lease, from the event that was running (which runs again: at least
// once).
func TestSequenceKilledMidRelease(t *testing.T) {
	addr := testenv.RedisAddr(t)
	e := newSeqEnv(t, addr)
	list := e.stream + ":log"
	t.Cleanup(func() { e.client.Del(context.Background(), list) })
	rec := newRecorder()
	rec.setPoison("a1", true)
	first := e.start("c1", time.Second, rec.handler)
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5"} {
		e.publish("A", n)
	}
	e.waitParked("A", 4)
	first.close(t)

	id := strings.TrimPrefix(e.stream, "arcmill-test:seq:")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSequenceProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), seqChildEnv+"="+strings.Join([]string{addr, id, list, "a3"}, "|"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	logged := func() []string {
		l, err := e.client.LRange(context.Background(), list, 0, -1).Result()
		require.NoError(t, err)
		return l
	}
	// The child runs the redriven head, drains a2 and hangs in a3.
	require.Equal(t, 1, e.redriveAll())
	eventually(t, "the child mid-release", func() bool { return slices.Contains(logged(), "start:a3") })
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	killed = true
	seq, ok := e.parked("A")
	require.True(t, ok, "the sequence outlives the process")
	assert.Equal(t, "released", seq.Status)
	assert.EqualValues(t, 3, seq.Parked, "a3 stays first until it succeeds")

	second := e.start("c2", time.Second, e.logHandler(list, ""))
	defer second.close(t)
	eventually(t, "the release resumed", func() bool { return slices.Contains(logged(), "a5") })
	e.publish("A", "a6")
	eventually(t, "a new event after", func() bool { return slices.Contains(logged(), "a6") })
	assert.Equal(t, []string{"a1", "a2", "start:a3", "a3", "a4", "a5", "a6"}, logged())
	_, still := e.parked("A")
	assert.False(t, still)
}
