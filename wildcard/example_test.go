package wildcard_test

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

func ExampleMatch() {
	for _, c := range [][2]string{
		{"order.*", "order.created"}, {"order.*", "order.item.added"}, {"order.*", "order"},
		{"*", "$deadLetter"}, {"order:*", "order:placed"}, {"*.created", "order.created"},
	} {
		fmt.Printf("%-10s %-17s %v\n", c[0], c[1], wildcard.Match(c[0], c[1]))
	}
	// Output:
	// order.*    order.created     true
	// order.*    order.item.added  true
	// order.*    order             false
	// *          $deadLetter       true
	// order:*    order:placed      true
	// *.created  order.created     false
}

// must stops an example at an error it does not expect.
func must[V any](v V, err error) V {
	check(err)
	return v
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func ExampleParseMode() {
	p := must(wildcard.ParseMode("*.created", wildcard.SegmentMode))
	fmt.Println(p.Match("order.created"), p.Match("order.item.created"))
	_, err := wildcard.ParseMode("order.>.x", wildcard.SegmentMode)
	fmt.Println(err)
	// Output:
	// true false
	// wildcard: invalid pattern: "order.>.x": '>' must be the last token
}

// Arc 2.11–2.14's Streams consumers read "order:*" as a literal type;
// ArcStreamsMode (or Config.ColonStarLiteral on a Router) does the same,
// for a consumer group shared with them.
func ExampleArcStreamsMode() {
	prefix := wildcard.MustParse("order:*")
	literal := must(wildcard.ParseMode("order:*", wildcard.ArcStreamsMode))
	for _, typ := range []string{"order:placed", "order:*"} {
		fmt.Printf("%-12s arc: %-5v arc-streams: %v\n", typ, prefix.Match(typ), literal.Match(typ))
	}
	// Output:
	// order:placed arc: true  arc-streams: false
	// order:*      arc: true  arc-streams: true
}

func ExampleRouter() {
	logger := watermill.NopLogger{}
	// Persistent: the subscription also gets what was published before it started.
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	router := must(message.NewRouter(message.RouterConfig{}, logger))
	events := must(wildcard.NewRouter(router, wildcard.Config{}))

	var mu sync.Mutex
	var lines []string
	var wg sync.WaitGroup
	wg.Add(3)
	log := func(who string) wildcard.Handler {
		return func(_ context.Context, ev arc.Event) error {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, who+" got "+ev.Type)
			wg.Done()
			return nil
		}
	}
	must(events.Subscribe(pubSub, "arc:events", "order.*", log("orders")))
	must(events.Subscribe(pubSub, "arc:events", "*", log("audit")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { check(events.Run(ctx)) }()
	<-events.Running()

	for _, typ := range []string{"order.created", "user.signed_up"} {
		check(pubSub.Publish("arc:events", must(arc.ToMessage(must(arc.NewEvent(typ, nil, arc.Meta{}))))))
	}
	wg.Wait()
	check(events.Close())
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// audit got order.created
	// audit got user.signed_up
	// orders got order.created
}

// OnUnrouted sees the events no handler of the subscription matched (Arc
// 2.41's onUnroutedEvent), here to count them by type; returning nil
// acknowledges them, an error would nack them for another try.
func ExampleConfig_onUnrouted() {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	router := must(message.NewRouter(message.RouterConfig{}, logger))

	var mu sync.Mutex
	unrouted := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(3) // one handled event, two unrouted ones
	events := must(wildcard.NewRouter(router, wildcard.Config{
		OnUnrouted: func(_ context.Context, _ *message.Message, ev arc.Event) error {
			mu.Lock()
			defer mu.Unlock()
			unrouted[ev.Type]++
			wg.Done()
			return nil
		},
	}))
	must(events.Subscribe(pubSub, "arc:events", "order.*", func(context.Context, arc.Event) error {
		wg.Done()
		return nil
	}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { check(events.Run(ctx)) }()
	<-events.Running()
	for _, typ := range []string{"order.created", "user.signed_up", "user.signed_up"} {
		check(pubSub.Publish("arc:events", must(arc.ToMessage(must(arc.NewEvent(typ, nil, arc.Meta{}))))))
	}
	wg.Wait()
	check(events.Close())
	fmt.Println("unrouted:", unrouted)
	fmt.Printf("stats: handled %d, unmatched %d\n", events.Stats().Handled, events.Stats().Unmatched)
	// Output:
	// unrouted: map[user.signed_up:2]
	// stats: handled 1, unmatched 2
}
