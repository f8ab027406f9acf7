// Command quickstart is arcmill's front door: with no server at all, it
// publishes an Arc event on Watermill's GoChannel, lets pattern handlers
// ("order.*", "payment.*", "receipt.*", "*") react, one of them with child
// events (Arc's createChildEvent) and one failing, retried and
// dead-lettered, and prints the event definition and its JSON Schema, the
// first event as the Arc JSON an Arc (Node) service would read (its
// children abbreviated), then the causation chain that links them, all in
// 100 columns. The first event is written with its order row in one
// SQLite transaction and delivered by the outbox relay.
//
//	go run ./examples/quickstart
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "modernc.org/sqlite" // the embedded database, no cgo

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/registry"
	"github.com/arcmill/arcmill/wildcard"
)

// topic carries every event type, as Arc's Redis Streams transport does
// with its single "arc:events" stream.
const (
	topic    = "arc.events"
	dlqTopic = "arc.events.dlq"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run is the whole story.
func run(ctx context.Context, out io.Writer) error { return story(ctx, out, nil) }

// width is the widest line the quickstart prints, so that it reads on a
// 100-column terminal.
const width = 100

// story tells the story on out and, when printed is not nil, gives back
// the events it printed (abbreviated) in full, for main_test.go to check.
func story(ctx context.Context, out io.Writer, printed *[]arc.Event) error {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, logger)
	defer pubSub.Close()

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	if err != nil {
		return err
	}
	// Pattern subscriptions, as Arc handlers subscribe: one Watermill
	// subscription to the topic, fanned out in process by pattern.
	// Retry with Arc's backoff (fast here), then a dead letter; causation
	// stamped on whatever handlers publish. One order, assembled for you.
	var (
		mu      sync.Mutex
		retries []string
	)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: 2, Backoff: 5 * time.Millisecond,
			OnRetry: func(r middleware.RetryInfo) {
				mu.Lock()
				defer mu.Unlock()
				retries = append(retries, fmt.Sprintf("attempt %d failed (%v), retrying in ~%s",
					r.Attempt, r.Err, r.Delay.Round(time.Millisecond)))
			}},
		DeadLetter: middleware.DeadLetterConfig{Publisher: pubSub, Topic: dlqTopic},
	})
	if err != nil {
		return err
	}
	deadLetters, err := pubSub.Subscribe(ctx, dlqTopic)
	if err != nil {
		return err
	}
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	if err != nil {
		return err
	}

	// The saga reacts to each event with the next one, as a child event:
	// causation = the incoming event, correlation inherited.
	next := map[string]struct {
		typ     string
		payload any
	}{
		"order.created":     {"payment.requested", map[string]any{"orderId": "o-1", "amount": 99}},
		"payment.requested": {"payment.captured", map[string]any{"orderId": "o-1", "provider": "stripe"}},
		"payment.captured":  {"receipt.sent", map[string]any{"orderId": "o-1", "email": "ada@example.com"}},
	}
	_, err = events.HandleFunc(wildcard.HandlerConfig{
		Name: "saga", Subscriber: pubSub, Topic: topic, Patterns: []string{"order.*", "payment.*"},
		Publisher: pubSub, PublishTopic: topic, Middleware: stack.Middleware,
	}, func(msg *message.Message) ([]*message.Message, error) {
		info, _ := wildcard.InfoFromContext(msg.Context())
		step, ok := next[info.Event.Type]
		if !ok {
			return nil, nil
		}
		// A child of the event being handled: Arc's createChildEvent.
		child, err := middleware.Child(msg.Context(), step.typ, step.payload, arc.Meta{})
		if err != nil {
			return nil, err
		}
		return []*message.Message{child}, nil
	})
	if err != nil {
		return err
	}

	// The mailer is down: its handler fails, is retried, and dead-lettered.
	// Its failure touches nobody else.
	if _, err := events.Handle(wildcard.HandlerConfig{Name: "mailer", Subscriber: pubSub, Topic: topic,
		Patterns: []string{"receipt.*"}, Middleware: stack.Middleware},
		func(context.Context, arc.Event) error { return errors.New("SMTP server unreachable") }); err != nil {
		return err
	}

	// Arc-shaped handlers on patterns: "*" is the audit log, "payment.*"
	// sees only payments.
	var (
		seen     []arc.Event
		payments []string
		done     = make(chan struct{})
	)
	if _, err := events.Subscribe(pubSub, topic, "payment.*", func(_ context.Context, ev arc.Event) error {
		mu.Lock()
		defer mu.Unlock()
		payments = append(payments, ev.Type)
		return nil
	}); err != nil {
		return err
	}
	if _, err := events.Subscribe(pubSub, topic, "*", func(_ context.Context, ev arc.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ev)
		if ev.Type == "receipt.sent" {
			close(done)
		}
		return nil
	}); err != nil {
		return err
	}

	runErr := make(chan error, 1)
	go func() { runErr <- events.Run(ctx) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		return err
	}

	// Event definitions with JSON Schemas (Arc's defineEvent), and a
	// publisher that refuses invalid payloads (Arc's validateMode "reject").
	catalog := registry.New(registry.Config{})
	orderCreated := registry.MustDefine[OrderCreated](registry.Definition{Name: "order.created", Description: "An order was placed"})
	catalog.MustRegister(orderCreated.Definition())
	publisher, err := middleware.ValidatingPublisher(middleware.CausationPublisher(pubSub), catalog, middleware.Reject, logger)
	if err != nil {
		return err
	}
	invalid, err := orderCreated.Create(OrderCreated{OrderID: "o-0", Total: -5}, arc.Meta{})
	if err != nil {
		return err
	}
	invalidMsg, err := arc.ToMessage(invalid)
	if err != nil {
		return err
	}
	rejected := publisher.Publish(topic, invalidMsg)

	// The root event, as an Arc service's eventPlugin.publish would make it.
	root, err := orderCreated.Create(OrderCreated{OrderID: "o-1", Total: 99},
		arc.Meta{UserID: "u-7", OrganizationID: "org-1", Source: "shop", Resource: "order", ResourceID: "o-1"})
	if err != nil {
		return err
	}
	// The order row and its event commit in one SQLite transaction (the
	// outbox); the relay then publishes the event, at least once.
	relayed, err := writeAndRelay(ctx, root, publisher)
	if err != nil {
		return err
	}

	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the chain: %w", ctx.Err())
	}
	var dead *message.Message
	select {
	case dead = <-deadLetters:
		dead.Ack()
	case <-ctx.Done():
		return fmt.Errorf("waiting for the dead letter: %w", ctx.Err())
	}
	if err := router.Close(); err != nil {
		return err
	}
	if err := <-runErr; err != nil {
		return err
	}

	mu.Lock()
	defer mu.Unlock()
	if printed != nil {
		*printed = slices.Clone(seen)
	}
	def := orderCreated.Definition()
	fmt.Fprintf(out, "Event definition (Arc's defineEvent), its JSON Schema generated from a Go type:\n  %s v%d: %s\n",
		def.Name, def.Version, def.Description)
	fmt.Fprintf(out, "%s\n", indentJSON(def.Schema, "    "))
	fmt.Fprintf(out, "Schema validation (reject mode), publishing order.created with total -5:\n%s\n\n",
		wrap(fmt.Sprint(rejected), "  "))
	fmt.Fprintf(out, "Transactional outbox (SQLite):\n  order o-1 and its order.created event committed in one transaction;\n"+
		"  relay: relayed=%d attempted=%d publishFailed=%d\n\n", relayed.Relayed, relayed.Attempted, relayed.PublishFailed)
	ids := make([]string, 0, len(seen))
	for _, ev := range seen {
		ids = append(ids, ev.Meta.ID)
	}
	fmt.Fprintln(out, "Events as Arc JSON (what an Arc service reads from Redis); the first in full:")
	for i, ev := range seen {
		wire, err := arc.Marshal(ev)
		if err != nil {
			return err
		}
		if i == 0 {
			fmt.Fprintf(out, "%s\n  its children, abbreviated (ids cut to 8 characters, timestamps left out):\n",
				indentJSON(wire, "  "))
			continue
		}
		fmt.Fprintf(out, "  %s\n", abbreviate(string(wire), ids, width-2))
	}
	slices.Sort(payments) // handlers run concurrently: arrival order varies between runs
	fmt.Fprintf(out, "\nPattern handlers:\n  *          saw %d events\n  payment.*  saw %s\n", len(seen), strings.Join(payments, ", "))
	fmt.Fprintln(out, "\nThe mailer's handler on receipt.*:")
	for _, r := range retries {
		fmt.Fprintf(out, "  %s\n", r)
	}
	var dl middleware.DeadLetteredEvent
	if err := json.Unmarshal(dead.Payload, &dl); err != nil {
		return err
	}
	fmt.Fprintf(out, "  dead-lettered to %s: reason=%s attempts=%d\n    handler=%s pattern=%s error=%q\n",
		dlqTopic, dl.Reason, dl.Attempts, dl.HandlerName, dl.Pattern, dl.Error.Message)
	fmt.Fprintf(out, "  envelope (Arc's DeadLetteredEvent), abbreviated:\n    %s\n", abbreviate(string(dead.Payload), ids, width-4))
	fmt.Fprintln(out, "\nCausation chain:")
	printChain(out, seen)
	return nil
}

// timestampField matches a meta.timestamp, which abbreviate leaves out.
var timestampField = regexp.MustCompile(`"timestamp":"[^"]*",?`)

// abbreviate shortens Arc JSON to fit max columns: event ids cut to 8
// characters, timestamps left out, the rest cut with "…".
func abbreviate(s string, ids []string, max int) string {
	for _, id := range ids {
		s = strings.ReplaceAll(s, id, short(id)+"…")
	}
	s = timestampField.ReplaceAllString(s, "")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// indentJSON indents JSON under prefix, or returns it as it is.
func indentJSON(raw []byte, prefix string) string {
	var b bytes.Buffer
	if json.Indent(&b, raw, prefix, "  ") != nil {
		return prefix + string(raw)
	}
	return prefix + b.String()
}

// wrap breaks an error message after ": " so that no line is wider than
// width, each line under prefix (the ones after it indented twice more).
func wrap(msg, prefix string) string {
	var lines []string
	line := prefix
	for i, part := range strings.SplitAfter(msg, ": ") {
		if i > 0 && utf8.RuneCountInString(line)+utf8.RuneCountInString(part) > width {
			lines = append(lines, strings.TrimRight(line, " "))
			line = prefix + "  "
		}
		line += part
	}
	return strings.Join(append(lines, line), "\n")
}

// writeAndRelay stores an order and its event in one transaction of an
// embedded SQLite database, then runs the outbox relay until the event is
// published to pub.
func writeAndRelay(ctx context.Context, ev arc.Event, pub message.Publisher) (outbox.RelayResult, error) {
	dir, err := os.MkdirTemp("", "arcmill-quickstart-")
	if err != nil {
		return outbox.RelayResult{}, err
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return outbox.RelayResult{}, err
	}
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		return outbox.RelayResult{}, err
	}
	if err := ob.Migrate(ctx); err != nil { // once, at start-up
		return outbox.RelayResult{}, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL)`); err != nil {
		return outbox.RelayResult{}, err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return outbox.RelayResult{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, total) VALUES (?, ?)`, "o-1", 99); err != nil {
		return outbox.RelayResult{}, err
	}
	if err := ob.Write(ctx, tx, outbox.Entry{Topic: topic, Event: ev}); err != nil {
		return outbox.RelayResult{}, err
	}
	if err := tx.Commit(); err != nil {
		return outbox.RelayResult{}, err
	}

	relay, err := ob.NewRelay(pub, outbox.RelayConfig{PollInterval: 10 * time.Millisecond})
	if err != nil {
		return outbox.RelayResult{}, err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	for relay.Totals().Relayed == 0 && rctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) { // Run returns why it stopped
		return outbox.RelayResult{}, err
	}
	if relay.Totals().Relayed == 0 {
		return relay.Totals(), fmt.Errorf("outbox relay: %w", ctx.Err())
	}
	return relay.Totals(), nil
}

// OrderCreated is the payload of order.created; its JSON Schema is
// generated from this type.
type OrderCreated struct {
	OrderID string  `json:"orderId"`
	Total   float64 `json:"total" jsonschema:"minimum=0"`
}

// printChain prints events as a tree, each under the event that caused it.
func printChain(out io.Writer, events []arc.Event) {
	children := map[string][]arc.Event{}
	types := map[string]string{}
	for _, ev := range events {
		children[ev.Meta.CausationID] = append(children[ev.Meta.CausationID], ev)
		types[ev.Meta.ID] = ev.Type
	}
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, ev := range children[parent] {
			label := ev.Type
			if depth > 0 {
				label = strings.Repeat("   ", depth-1) + "└─ " + ev.Type
			}
			cause := "root"
			if c := ev.Meta.CausationID; c != "" {
				cause = fmt.Sprintf("caused by %s (%s), correlation %s", short(c), types[c], short(ev.Meta.CorrelationID))
			}
			fmt.Fprintf(out, "  %-24s %s  %s\n", label, short(ev.Meta.ID), cause)
			walk(ev.Meta.ID, depth+1)
		}
	}
	walk("", 0)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
