package reliability

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/registry"
	"github.com/arcmill/arcmill/wildcard"
)

// roleEnv carries a child process's role and settings (JSON of roleSpec).
const roleEnv = "ARCMILL_RELIABILITY_ROLE"

// roleSpec is what a child process needs.
type roleSpec struct {
	Role   string // "relay" or "consumer"
	Name   string // stable per slot, so a restarted consumer resumes its pending entries
	DSN    string
	Table  string // outbox table; the consumer's tables (effects) share its prefix
	Redis  redisConn
	Stream string
	// Durable is how many replicas a relay's Publish waits for (WAIT); 0:
	// none asked for. The consumers' relays of their emitted events too,
	// and the consumers' dead letters (the middleware's and the
	// subscriber's own).
	Durable int
}

// poisonType always fails in the handler: retried, then dead-lettered.
const poisonType = "poison.fail"

// consumerMaxEntryBytes is the consumers' MaxEntryBytes: small, so that
// the scenario's oversized foreign entries (foreignKinds) stay small too.
const consumerMaxEntryBytes = 64 << 10

// TestRole is a child process of the scenarios; it does nothing unless
// started by one.
func TestRole(t *testing.T) {
	raw := os.Getenv(roleEnv)
	if raw == "" {
		t.Skip("runs only as a child process of the reliability scenarios")
	}
	var spec roleSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// Die with the parent: an orphaned relay must not run on.
	parent := os.Getppid()
	go func() {
		for range time.Tick(200 * time.Millisecond) {
			if os.Getppid() != parent {
				os.Exit(0)
			}
		}
	}()
	var err error
	switch spec.Role {
	case "relay":
		err = runRelay(ctx, spec)
	case "consumer":
		// A consumer started while Redis is down (the chaos loop restarts
		// killed processes during the outage) fails to subscribe: start
		// again, as a supervisor would, instead of leaving the slot empty.
		for {
			err = runConsumer(ctx, spec)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "cannot subscribe") {
				break
			}
			t.Logf("%v; starting again in 500 ms", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	default:
		err = errors.New("unknown role " + spec.Role)
	}
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}

func runRelay(ctx context.Context, spec roleSpec) error {
	db, err := sql.Open("pgx", spec.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: spec.Table})
	if err != nil {
		return err
	}
	client := spec.Redis.client()
	defer client.Close()
	pub, err := newPublisher(spec, client)
	if err != nil {
		return err
	}
	// The default RelayConfig: a Redis outage must cost no attempt and
	// dead-letter nothing under it. 30 ms of "network" per publish call
	// keeps the relays busy while events flow, so that kills land
	// mid-batch.
	relay, err := ob.NewRelay(slowPublisher{pub, 30 * time.Millisecond}, outbox.RelayConfig{ConsumerID: spec.Name})
	if err != nil {
		return err
	}
	return relay.Run(ctx)
}

// newPublisher returns the relays' publisher, durable as spec asks.
func newPublisher(spec roleSpec, client *redis.Client) (*redisstream.Publisher, error) {
	cfg := redisstream.PublisherConfig{Client: client}
	if spec.Durable > 0 {
		// A row is marked delivered only once that many replicas have its
		// entry; ErrNotDurable (a replica missing) keeps it pending.
		cfg.Durability = &redisstream.Durability{Replicas: spec.Durable}
	}
	return redisstream.NewPublisher(cfg)
}

// orderSchema makes total ≥ 0 required: the scenario's schema-invalid
// events carry -1.
const orderSchema = `{"type":"object","required":["n","total"],"properties":{"n":{"type":"integer"},"total":{"type":"number","minimum":0}}}`

func runConsumer(ctx context.Context, spec roleSpec) error {
	db, err := sql.Open("pgx", spec.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	client := spec.Redis.client()
	defer client.Close()
	// Dead letters wait for the replicas as the relays' publishes do: an
	// event is acknowledged only once its dead letter would survive the
	// primary's death.
	var durability *redisstream.Durability
	if spec.Durable > 0 {
		durability = &redisstream.Durability{Replicas: spec.Durable}
	}
	catalog := registry.New(registry.Config{})
	catalog.MustRegister(registry.Definition{Name: "order.created", Schema: json.RawMessage(orderSchema)})
	stack, err := middleware.NewStack(middleware.StackConfig{
		// A small budget: the handler waits out its own database's outages
		// itself (below), so retries are for the event, not the database.
		Retry: middleware.RetryConfig{MaxRetries: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client, Durability: durability},
			Topic: spec.Stream + ":dlq", ConsumerGroup: "rel"},
		Validator: catalog,
	})
	if err != nil {
		return err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "rel",
		Consumer: spec.Name, ClaimIdle: 1500 * time.Millisecond, ClaimInterval: 300 * time.Millisecond,
		MaxInFlight: 32, MaxDeliveries: 30, DeadLetterStream: spec.Stream + ":dlq", CloseTimeout: 2 * time.Second,
		MaxEntryBytes: consumerMaxEntryBytes, DeadLetterDurability: durability})
	if err != nil {
		return err
	}
	defer sub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 2 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{Workers: 8, OnMalformed: stack.DeadLetter.Malformed})
	if err != nil {
		return err
	}
	// The consumer service relays its own outbox, the emitted events, as
	// a service would: a SIGKILL of the consumer kills its relay too.
	fx := effects{prefix: spec.Table}
	emitted, err := fx.outbox(db)
	if err != nil {
		return err
	}
	apply, err := fx.handler(db, emitted, spec.Stream)
	if err != nil {
		return err
	}
	pub, err := newPublisher(spec, client)
	if err != nil {
		return err
	}
	relay, err := emitted.NewRelay(pub, outbox.RelayConfig{ConsumerID: spec.Name + "-emitted"})
	if err != nil {
		return err
	}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "effects", Subscriber: sub, Topic: spec.Stream,
		Patterns: []string{"*"}, Middleware: stack.Middleware}, func(ctx context.Context, ev arc.Event) error {
		if ev.Type == poisonType {
			return errors.New("this handler always fails on " + poisonType)
		}
		// An outage of the handler's own database is waited out here (up
		// to a minute), as a service would, rather than spent against the
		// event's retry budget and dead-lettered.
		var err error
		for try := 0; try < 600; try++ {
			if err = apply(ctx, ev); err == nil || ctx.Err() != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	relayDone := make(chan error, 1)
	go func() {
		err := relay.Run(ctx)
		cancel(err) // a relay that stops stops the consumer
		relayDone <- err
	}()
	err = events.Run(ctx)
	cancel(nil)
	if rerr := <-relayDone; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	return err
}

// slowPublisher adds latency after each publish (the rows are published
// but not yet acknowledged while it sleeps).
type slowPublisher struct {
	message.Publisher
	wait time.Duration
}

func (p slowPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	time.Sleep(p.wait)
	return err
}
