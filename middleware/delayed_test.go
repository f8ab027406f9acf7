package middleware

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// The delayed tier's bookkeeping, on one message: attempts carry over,
// only the failing handler is targeted, the delays are Watermill's.
func TestDelayedTierBookkeeping(t *testing.T) {
	t.Parallel()
	delayed, dlq := &failingPublisher{}, &failingPublisher{}
	stack, err := NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: 1, Backoff: time.Millisecond},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq",
			Delayed: &DelayedRetry{Publisher: delayed, Topic: "events", Delays: []time.Duration{time.Minute, 2 * time.Minute}}},
	})
	require.NoError(t, err)
	var calls counter
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) {
		calls.inc()
		return nil, errors.New("still down")
	})
	msg := eventMessage(t, "order.created")
	msg.SetContext(withInfo(t, msg, "projector"))

	for round := 1; round <= 2; round++ {
		_, err := chain(msg)
		require.NoError(t, err, "acked: the message went back to the transport")
		require.Len(t, delayed.got, round)
		back := delayed.got[round-1]
		assert.Equal(t, fmt.Sprint(2*round), back.Metadata.Get(MetadataAttempts))
		assert.Equal(t, fmt.Sprint(round), back.Metadata.Get(MetadataDelayedRetries))
		assert.Equal(t, "projector", back.Metadata.Get(wildcard.MetadataTargetHandler))
		assert.Equal(t, []string{"1m0s", "2m0s"}[round-1], back.Metadata.Get(delay.DelayedForKey))
		assert.NotEmpty(t, back.Metadata.Get(delay.DelayedUntilKey))
		assert.Equal(t, msg.UUID, back.UUID, "the same event")
		msg = back.Copy()
		msg.SetContext(withInfo(t, msg, "projector"))
	}
	_, err = chain(msg)
	require.NoError(t, err)
	require.Len(t, dlq.got, 1, "delays spent: dead-lettered")
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, 6, dl.Attempts, "counted across the three deliveries")
	assert.Equal(t, 6, calls.get())
	assert.Equal(t, uint64(2), stack.DeadLetter.Stats().DelayedRetries)

	// An unrecoverable error skips the delayed tier too.
	msg = eventMessage(t, "order.created")
	chain = chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { return nil, arc.ErrUnrecoverable })
	_, err = chain(msg)
	require.NoError(t, err)
	assert.Len(t, delayed.got, 2)
	assert.Len(t, dlq.got, 2)
}

// Outside the wildcard router (a plain Watermill handler, or the stack on
// the whole router), a delayed retry targets no handler name: the Watermill
// handler's own name is not one a wildcard source knows.
func TestDelayedRetryTargetsOnlyWildcardHandlers(t *testing.T) {
	t.Parallel()
	delayed := &failingPublisher{}
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: NoRetries},
		DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq",
			Delayed: &DelayedRetry{Publisher: delayed, Topic: "events", Delays: []time.Duration{time.Second}}}})
	require.NoError(t, err)
	chain := chainOf(stack.Middleware, func(*message.Message) ([]*message.Message, error) { return nil, errors.New("x") })
	_, err = chain(eventMessage(t, "x"))
	require.NoError(t, err)
	require.Len(t, delayed.got, 1)
	assert.Empty(t, delayed.got[0].Metadata.Get(wildcard.MetadataTargetHandler))
}

// withInfo puts the wildcard delivery info a router would put in ctx.
func withInfo(t *testing.T, msg *message.Message, handler string) context.Context {
	t.Helper()
	ev, err := arc.FromMessage(msg)
	require.NoError(t, err)
	return wildcard.ContextWithInfo(msg.Context(), wildcard.Info{Handler: handler, Pattern: "order.*", Topic: "events", Event: ev})
}

const helperEnv = "ARCMILL_DELAYED_HELPER_TOPIC"

// TestMain runs the other process of TestDelayedTierAcrossProcesses when
// asked to.
func TestMain(m *testing.M) {
	if topic := os.Getenv(helperEnv); topic != "" {
		if err := delayedProcess(topic, 1); err != nil {
			fmt.Fprintln(os.Stderr, "helper process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// delayedPipeline is one process's router over a PostgreSQL delayed queue.
type delayedPipeline struct {
	db     *stdsql.DB
	pub    message.Publisher
	router *message.Router
	stack  *Stack
	calls  counter

	mu         sync.Mutex
	deliveries []string // delayed retries/attempts seen by each call
}

func newDelayedPipeline(dsn, topic string) (*delayedPipeline, error) {
	db, err := stdsql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if os.Getenv("ARCMILL_DEBUG") != "" {
		logger = watermill.NewStdLogger(true, false)
	}
	pub, err := wsql.NewDelayedPostgreSQLPublisher(wsql.BeginnerFromStdSQL(db), wsql.DelayedPostgreSQLPublisherConfig{
		DelayPublisherConfig: delay.PublisherConfig{AllowNoDelay: true}, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	// The delayed subscriber, with a batch of one: watermill-sql v4.1.5 acks
	// a whole batch when one of its messages is not (its queue offsets adapter).
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter: wsql.PostgreSQLQueueSchema{SubscribeBatchSize: 1,
			GenerateWhereClause: func(wsql.GenerateWhereClauseParams) (string, []any) {
				return fmt.Sprintf(`(metadata->>'%[1]s')::timestamptz < NOW() OR (metadata->>'%[1]s') IS NULL`, delay.DelayedUntilKey), nil
			}},
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true},
		PollInterval:   20 * time.Millisecond, ResendInterval: 20 * time.Millisecond, InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return nil, err
	}
	p := &delayedPipeline{db: db, pub: pub, router: router}
	p.stack, err = NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: 1, Backoff: time.Millisecond},
		DeadLetter: DeadLetterConfig{Publisher: pub, Topic: topic + "_dlq",
			Delayed: &DelayedRetry{Publisher: pub, Delays: []time.Duration{1500 * time.Millisecond, 300 * time.Millisecond}}}, // the first delay outlasts process one's exit, even on a loaded machine
	})
	if err != nil {
		return nil, err
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	if err != nil {
		return nil, err
	}
	_, err = events.HandleFunc(wildcard.HandlerConfig{Name: "projector", Subscriber: sub, Topic: topic,
		Patterns: []string{"order.*"}, Middleware: p.stack.Middleware},
		func(msg *message.Message) ([]*message.Message, error) {
			p.calls.inc()
			p.mu.Lock()
			p.deliveries = append(p.deliveries, msg.Metadata.Get(MetadataDelayedRetries)+"/"+msg.Metadata.Get(MetadataAttempts))
			p.mu.Unlock()
			return nil, errors.New("projection store down")
		})
	if err != nil {
		return nil, err
	}
	go func() { _ = events.Run(context.Background()) }()
	<-router.Running()
	return p, nil
}

func (p *delayedPipeline) close() {
	_ = p.router.Close()
	_ = p.db.Close()
}

// delayedProcess handles deliveries until it has sent `requeues` back.
func delayedProcess(topic string, requeues uint64) error {
	p, err := newDelayedPipeline(os.Getenv("ARCMILL_POSTGRES_DSN_RESOLVED"), topic)
	if err != nil {
		return err
	}
	defer p.close()
	deadline := time.Now().Add(20 * time.Second)
	for p.stack.DeadLetter.Stats().DelayedRetries < requeues {
		if time.Now().After(deadline) {
			return errors.New("no delayed retry within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Exit only once the first delivery's ack is committed (its row
	// deleted); before that, the event would rightly come back to the other
	// process, and the test would count a duplicate delivery.
	for {
		var n int
		err := p.db.QueryRow(`SELECT count(*) FROM "watermill_` + topic + `" WHERE metadata->>'` + MetadataDelayedRetries + `' IS NULL`).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("first delivery not acked within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The delayed tier across two processes: the first takes delivery 1 and
// sends it back with a delay, then exits; the second takes the later
// deliveries, the attempt count carried in the message, and dead-letters it
// with the attempts of both processes.
func TestDelayedTierAcrossProcesses(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	topic := "arcmill_delayed_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	db, err := stdsql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, tbl := range []string{topic, topic + "_dlq"} {
			_, err := db.Exec(`DROP TABLE IF EXISTS "watermill_` + tbl + `"`)
			assert.NoError(t, err)
			_, err = db.Exec(`DROP TABLE IF EXISTS "watermill_offsets_` + tbl + `"`)
			assert.NoError(t, err)
		}
		assert.NoError(t, db.Close())
	})
	pub, err := wsql.NewDelayedPostgreSQLPublisher(wsql.BeginnerFromStdSQL(db), wsql.DelayedPostgreSQLPublisherConfig{
		DelayPublisherConfig: delay.PublisherConfig{AllowNoDelay: true}})
	require.NoError(t, err)
	sent := eventMessage(t, "order.created")
	require.NoError(t, pub.Publish(topic, sent))

	// Process one.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+topic, "ARCMILL_POSTGRES_DSN_RESOLVED="+dsn)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper process: %s", out)
	processOneDone := time.Now()

	// Process two: this one.
	p, err := newDelayedPipeline(dsn, topic)
	require.NoError(t, err)
	defer p.close()
	dlqSub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter:  wsql.PostgreSQLQueueSchema{SubscribeBatchSize: 1},
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true},
		PollInterval:   20 * time.Millisecond, InitializeSchema: true,
	}, watermill.NopLogger{})
	require.NoError(t, err)
	dlqMsgs, err := dlqSub.Subscribe(context.Background(), topic+"_dlq")
	require.NoError(t, err)
	defer dlqSub.Close()

	select {
	case m := <-dlqMsgs:
		m.Ack()
		var dl DeadLetteredEvent
		require.NoError(t, json.Unmarshal(m.Payload, &dl))
		assert.Equal(t, 6, dl.Attempts, "two attempts in each of three deliveries, across two processes")
		assert.Equal(t, sent.UUID, dl.Event.Meta.ID)
		assert.Equal(t, "projector", dl.HandlerName)
		assert.Equal(t, ReasonRetryExhausted, dl.Reason)
		assert.True(t, dl.FirstFailedAt.Before(processOneDone), "the first failure happened in process one")
		assert.Equal(t, "projection store down", dl.Error.Message)
	case <-time.After(20 * time.Second):
		t.Fatal("no dead letter")
	}
	// Process two never ran the first delivery: every call it made carried
	// the history written by an earlier delivery. (Which process ran the
	// second one depends on timing; at least once, a delivery may repeat.)
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(t, p.deliveries)
	for _, d := range p.deliveries {
		assert.NotEqual(t, "/", d, "process two ran the first delivery: %v", p.deliveries)
	}
	assert.Contains(t, p.deliveries, "2/4", "the last delivery came with four attempts behind it")
	p.mu.Unlock()
	// The counter moves once the publish has returned, which can be after
	// the dead letter is already readable.
	assert.Eventually(t, func() bool { return p.stack.DeadLetter.Stats().DeadLettered >= 1 }, waitTimeout, pollInterval)
	p.mu.Lock()
}
