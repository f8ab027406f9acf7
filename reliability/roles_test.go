package reliability

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
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
	Table  string // outbox table; effects and deliveries tables share its prefix
	Redis  string
	Stream string
}

// poisonType always fails in the handler: retried, then dead-lettered.
const poisonType = "poison.fail"

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
		err = runConsumer(ctx, spec)
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
	client := redis.NewClient(&redis.Options{Addr: spec.Redis})
	defer client.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
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

// orderSchema makes total ≥ 0 required: the scenario's schema-invalid
// events carry -1.
const orderSchema = `{"type":"object","required":["n","total"],"properties":{"n":{"type":"integer"},"total":{"type":"number","minimum":0}}}`

func runConsumer(ctx context.Context, spec roleSpec) error {
	db, err := sql.Open("pgx", spec.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	client := redis.NewClient(&redis.Options{Addr: spec.Redis})
	defer client.Close()
	catalog := registry.New(registry.Config{})
	catalog.MustRegister(registry.Definition{Name: "order.created", Schema: json.RawMessage(orderSchema)})
	stack, err := middleware.NewStack(middleware.StackConfig{
		// A small budget: the handler waits out its own database's outages
		// itself (below), so retries are for the event, not the database.
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client}, Topic: spec.Stream + ":dlq", ConsumerGroup: "rel"},
		Validator:  catalog,
	})
	if err != nil {
		return err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "rel",
		Consumer: spec.Name, ClaimIdle: 1500 * time.Millisecond, ClaimInterval: 300 * time.Millisecond,
		MaxInFlight: 32, MaxDeliveries: 30, DeadLetterStream: spec.Stream + ":dlq", CloseTimeout: 2 * time.Second})
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
	prefix := spec.Table
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
			if err = applyEffect(ctx, db, prefix, ev.Meta.ID); err == nil || ctx.Err() != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	})
	if err != nil {
		return err
	}
	return events.Run(ctx)
}

// applyEffect is the consumer-side idempotency guard: every delivery is
// counted, and the effect is applied once per event id, in one transaction.
func applyEffect(ctx context.Context, db *sql.DB, prefix, id string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+prefix+`_deliveries (event_id, n) VALUES ($1, 1)
		ON CONFLICT (event_id) DO UPDATE SET n = `+prefix+`_deliveries.n + 1`, id); err != nil {
		return err
	}
	// The guard: the effect (a ledger row, which nothing would stop from
	// repeating) is applied only by the delivery that claimed the event.
	res, err := tx.ExecContext(ctx, `INSERT INTO `+prefix+`_effects (event_id) VALUES ($1)
		ON CONFLICT (event_id) DO NOTHING`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 1 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+prefix+`_ledger (event_id) VALUES ($1)`, id); err != nil {
			return err
		}
	}
	return tx.Commit()
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
