package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// killChildEnv carries a killChild (JSON) to TestDeadLetterKillChild.
const killChildEnv = "ARCMILL_MIDDLEWARE_DLQ_KILL_CHILD"

// killChild is what the child process dead-letters, and where it dies.
type killChild struct {
	Addr, DLQ, Prefix string
	Stage             guardStage
	Handler           bool // a handler's failure; else a malformed message
	UUID, EntryID     string
	Lease             time.Duration
}

// deadLetter is the DeadLetter both processes use: the same stream, the
// same guard, the same group.
func (k killChild) deadLetter(client *redis.Client) (*DeadLetter, error) {
	pub, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	return NewDeadLetter(DeadLetterConfig{Publisher: findingPublisher{pub, client}, Topic: k.DLQ, ConsumerGroup: "billing",
		Guard: &RedisGuard{Client: client, Prefix: k.Prefix}, PublishTimeout: 2 * time.Second, GuardLease: k.Lease,
		OutageBackoff: time.Millisecond, OutageMaxBackoff: time.Millisecond})
}

// deliver is one delivery of the message: the router's malformed path or
// a handler that fails for good. nil acknowledges it.
func (k killChild) deliver(d *DeadLetter) error {
	if !k.Handler {
		return d.Malformed(delivery(k.UUID, k.EntryID, []byte("\x00not json")), malformedErr())
	}
	ev, err := arc.NewEvent("billing.charge", map[string]int{"n": 1}, arc.Meta{ID: k.UUID})
	if err != nil {
		return err
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		return err
	}
	msg.Metadata.Set(MetadataOriginalID, k.EntryID)
	msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "charge", Topic: "orders",
		Pattern: "billing.*", Event: ev}))
	_, err = d.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
	})(msg)
	return err
}

// TestDeadLetterKillChild is the child process of
// TestDeadLetterOnce_SIGKILL: it dead-letters one message and SIGKILLs
// itself at the stage it is given. It does nothing unless started so.
func TestDeadLetterKillChild(t *testing.T) {
	raw := os.Getenv(killChildEnv)
	if raw == "" {
		t.Skip("runs only as the child of TestDeadLetterOnce_SIGKILL")
	}
	var k killChild
	require.NoError(t, json.Unmarshal([]byte(raw), &k))
	client := redis.NewClient(&redis.Options{Addr: k.Addr})
	d, err := k.deadLetter(client)
	require.NoError(t, err)
	d.testHook = func(s guardStage) {
		if s == k.Stage {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	t.Fatalf("not killed: the delivery returned %v", k.deliver(d))
}

// A consumer SIGKILLed while dead-lettering loses no dead letter and
// writes none twice: killed after the publish and its done mark (before
// the ack), its redelivery finds the dead letter written and acknowledges
// it; killed after the claim (before the publish), its redelivery is
// nacked while the claim's lease runs, then writes the dead letter; killed
// between the publish and the done mark, its redelivery is nacked while
// the lease runs, then finds the dead letter in the store
// (DeadLetterFinder) and acknowledges it.
func TestDeadLetterOnce_SIGKILL(t *testing.T) {
	t.Parallel()
	for _, path := range []struct {
		name    string
		handler bool
	}{{"malformed", false}, {"handler failure", true}} {
		for _, stage := range []struct {
			name  string
			stage guardStage
		}{{"after publish, before ack", stagePublished}, {"after claim, before publish", stageClaimed},
			{"after publish, before done mark", stageUnmarked}} {
			t.Run(path.name+"/"+stage.name, func(t *testing.T) {
				t.Parallel()
				f := newOnceFixture(t)
				k := killChild{Addr: f.client.Options().Addr, DLQ: f.dlq, Prefix: f.prefix, Stage: stage.stage,
					Handler: path.handler, UUID: uuid.NewString(), EntryID: "1700000000000-1", Lease: 3 * time.Second}
				spec, err := json.Marshal(k)
				require.NoError(t, err)
				cmd := exec.Command(os.Args[0], "-test.run=^TestDeadLetterKillChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), killChildEnv+"="+string(spec))
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "%s", out)
				ws, _ := exit.Sys().(syscall.WaitStatus)
				require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child not SIGKILLed: %v\n%s", err, out)

				d, err := k.deadLetter(f.client)
				require.NoError(t, err)
				if stage.stage == stagePublished {
					require.EqualValues(t, 1, f.deadLetters(), "the child wrote the dead letter")
					require.NoError(t, k.deliver(d), "the redelivery is acknowledged")
					assert.EqualValues(t, 1, f.deadLetters(), "and writes no second dead letter")
					assert.EqualValues(t, 1, d.Stats().RepeatsSkipped)
					return
				}
				written := int64(0)
				if stage.stage == stageUnmarked {
					written = 1
				}
				require.Equal(t, written, f.deadLetters(), "written before the kill")
				keys, err := f.client.Keys(context.Background(), f.prefix+"*").Result()
				require.NoError(t, err)
				require.Len(t, keys, 1, "the child's claim")
				held, err := f.client.Get(context.Background(), keys[0]).Result()
				require.NoError(t, err)
				require.Contains(t, held, "publishing:")
				// The claim's lease ends at the deadline the record carries
				// (publishing:<token>:<at>:<deadline>, in ms), not with the
				// key's TTL (GuardTTL, a day).
				fields := strings.Split(held, ":")
				deadlineMs, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
				require.NoError(t, err, held)
				if time.Until(time.UnixMilli(deadlineMs)) > time.Second {
					// The claim still holds, long enough for the redelivery's
					// round trips on a loaded machine: it must not publish.
					require.ErrorIs(t, k.deliver(d), ErrDeadLetterBusy)
					assert.Equal(t, written, f.deadLetters())
				} else {
					t.Logf("the claim's lease ends within a second of the check: not checked")
				}
				// Redeliveries (nacked) until the lease ends; then one writes it.
				deadline := time.Now().Add(k.Lease + 5*time.Second)
				for err = k.deliver(d); err != nil; err = k.deliver(d) {
					require.ErrorIs(t, err, ErrDeadLetterBusy)
					require.True(t, time.Now().Before(deadline), "the claim outlived its lease")
					time.Sleep(50 * time.Millisecond) // a transport's redelivery pace
				}
				assert.EqualValues(t, 1, f.deadLetters(), "written once")
				require.NoError(t, k.deliver(d))
				assert.EqualValues(t, 1, f.deadLetters(), "and not again")
			})
		}
	}
}
