package inbox

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// consumerEnv carries the child consumer's settings (JSON of consumerSpec).
const consumerEnv = "ARCMILL_INBOX_CONSUMER_CHILD"

type consumerSpec struct {
	Dialect                        outbox.Dialect
	DSN, Inbox, Outbox, Ledger     string
	Redis, Stream, Group, Consumer string
	EmitTopic                      string
	// StallAfter, when positive, makes every handler that has committed
	// once that many have hang before its ack, until SIGKILL: the kill then
	// certainly leaves committed entries unacked.
	StallAfter int64
}

// consumer runs an inbox consumer of spec's stream until ctx ends: a
// redisstream subscriber, the wildcard router and an inbox handler that
// writes a ledger row and emits a child. onDup counts skipped duplicates.
func runConsumer(ctx context.Context, spec consumerSpec, onDup func(context.Context, string, arc.Event), ready chan<- struct{}) error {
	db, err := stdsql.Open(driverOf[spec.Dialect], spec.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: spec.Dialect, Table: spec.Outbox})
	if err != nil {
		return err
	}
	ib, err := New(db, Config{Dialect: spec.Dialect, Table: spec.Inbox, Outbox: ob, EmitTopic: spec.EmitTopic, OnDuplicate: onDup})
	if err != nil {
		return err
	}
	f := &fixture{d: spec.Dialect, ledger: spec.Ledger}
	client := redis.NewClient(&redis.Options{Addr: spec.Redis})
	defer client.Close()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: spec.Group,
		Consumer: spec.Consumer, ClaimIdle: 300 * time.Millisecond, ClaimInterval: 100 * time.Millisecond,
		MaxInFlight: 16, OldestID: "0"})
	if err != nil {
		return err
	}
	defer sub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{Workers: 8})
	if err != nil {
		return err
	}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "ledger", Subscriber: sub, Topic: spec.Stream,
		Patterns: []string{"*"}, Middleware: []message.HandlerMiddleware{slowAck(spec.StallAfter)}},
		ib.Handle("ledger", func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
			if err := f.effect(ctx, tx, "ledger", ev); err != nil {
				return err
			}
			_, err := Emit(ctx, "ledger.written", map[string]string{"for": ev.Meta.ID}, arc.Meta{})
			return err
		}))
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-events.Running():
			close(ready)
		case <-ctx.Done():
		}
	}()
	return events.Run(ctx)
}

// slowAck is simulated latency between a handler's commit and its ack, so
// that a kill lands there; from the stallAfter-th commit on (when
// positive), the ack never comes.
func slowAck(stallAfter int64) message.HandlerMiddleware {
	var committed atomic.Int64
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil && stallAfter > 0 && committed.Add(1) >= stallAfter {
				select {} // until SIGKILL
			}
			time.Sleep(5 * time.Millisecond)
			return out, err
		}
	}
}

// TestConsumerProcessHelper is the child process of
// TestKilledBetweenCommitAndAck; it does nothing unless started by it.
func TestConsumerProcessHelper(t *testing.T) {
	raw := os.Getenv(consumerEnv)
	if raw == "" {
		t.Skip("runs only as the child of TestKilledBetweenCommitAndAck")
	}
	var spec consumerSpec
	require.NoError(t, json.Unmarshal([]byte(raw), &spec))
	require.NoError(t, runConsumer(context.Background(), spec, nil, make(chan struct{}))) // runs until SIGKILL
}

// A consumer process killed with SIGKILL while it handles events, some
// committed and not yet acked, loses nothing and doubles nothing: a
// survivor claims its pending entries, the inbox skips those already
// committed, every event's effect is applied once and every emitted event
// is published once.
func TestKilledBetweenCommitAndAck(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d outbox.Dialect) {
		f := newFixture(t, d, nil)
		redisAddr := testenv.RedisAddr(t)
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		t.Cleanup(func() { _ = rdb.Close() })
		ctx := context.Background()
		spec := consumerSpec{Dialect: d, DSN: f.dsn, Inbox: f.ib.Table(), Outbox: f.ob.Table(), Ledger: f.ledger,
			Redis: redisAddr, Stream: "arcmill:test:inbox:kill:" + f.ib.Table(), Group: "inbox-kill",
			Consumer: "doomed", EmitTopic: "arcmill:test:inbox:kill:emitted:" + f.ib.Table(), StallAfter: 60}
		t.Cleanup(func() { rdb.Del(context.Background(), spec.Stream, spec.EmitTopic) })

		const total = 300
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb})
		require.NoError(t, err)
		want := map[string]bool{}
		for i := 0; i < total; i++ {
			ev := newEvent(t, "order.created", arc.Meta{PartitionKey: strconv.Itoa(i % 8)})
			want[ev.Meta.ID] = true
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(spec.Stream, msg))
		}

		raw, err := json.Marshal(spec)
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestConsumerProcessHelper$", "-test.count", "1")
		cmd.Env = append(os.Environ(), consumerEnv+"="+string(raw))
		logf, err := os.Create(filepath.Join(t.TempDir(), "child.log"))
		require.NoError(t, err)
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		deadline := time.Now().Add(waitTimeout)
		for f.applied("") < 60 {
			if !assert.True(t, time.Now().Before(deadline), "the child applies events") {
				_ = cmd.Process.Kill()
				out, _ := os.ReadFile(logf.Name())
				t.Fatalf("child log:\n%s", out)
			}
			time.Sleep(2 * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		var exit *exec.ExitError
		require.ErrorAs(t, cmd.Wait(), &exit, "killed")
		atKill := f.applied("")
		pending, err := rdb.XPending(ctx, spec.Stream, spec.Group).Result()
		require.NoError(t, err)
		t.Logf("%s: killed after %d effects, %d entries pending", d, atKill, pending.Count)

		// The survivor, in this process.
		var dups atomic.Int32
		survivor := spec
		survivor.Consumer, survivor.StallAfter = "survivor", 0
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- runConsumer(runCtx, survivor, func(context.Context, string, arc.Event) { dups.Add(1) }, ready)
		}()
		deadline = time.Now().Add(waitTimeout)
		for {
			p, err := rdb.XPending(ctx, spec.Stream, spec.Group).Result()
			require.NoError(t, err)
			if f.applied("") >= total && p.Count == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "the survivor finishes: %d applied, %d pending", f.applied(""), p.Count)
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		require.NoError(t, <-done)

		for id := range want {
			assert.Equal(t, 1, f.applied(id), "effects of %s", id)
		}
		assert.Equal(t, total, f.applied(""), "nothing foreign applied")
		assert.Positive(t, dups.Load(), "the kill left committed entries unacked, and the inbox skipped them")

		epub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb})
		require.NoError(t, err)
		f.relayAll(epub)
		children := map[string]int{}
		for _, ev := range streamEvents(t, rdb, spec.EmitTopic) {
			children[ev.Meta.CausationID]++
		}
		for id := range want {
			assert.Equal(t, 1, children[id], "emitted for %s", id)
		}
		assert.Len(t, children, total)
		t.Logf("%s: %d events, 0 lost, 0 doubled; %d redeliveries skipped by the inbox", d, total, dups.Load())
	})
}
