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

func ExampleParseMode() {
	p, _ := wildcard.ParseMode("*.created", wildcard.SegmentMode)
	fmt.Println(p.Match("order.created"), p.Match("order.item.created"))
	_, err := wildcard.ParseMode("order.>.x", wildcard.SegmentMode)
	fmt.Println(err)
	// Output:
	// true false
	// wildcard: invalid pattern: "order.>.x": '>' must be the last token
}

func ExampleRouter() {
	logger := watermill.NopLogger{}
	// Persistent: the subscription also gets what was published before it started.
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	router, _ := message.NewRouter(message.RouterConfig{}, logger)
	events, _ := wildcard.NewRouter(router, wildcard.Config{})

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
	_, _ = events.Subscribe(pubSub, "arc:events", "order.*", log("orders"))
	_, _ = events.Subscribe(pubSub, "arc:events", "*", log("audit"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()

	for _, typ := range []string{"order.created", "user.signed_up"} {
		ev, _ := arc.NewEvent(typ, nil, arc.Meta{})
		msg, _ := arc.ToMessage(ev)
		_ = pubSub.Publish("arc:events", msg)
	}
	wg.Wait()
	_ = router.Close()
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// audit got order.created
	// audit got user.signed_up
	// orders got order.created
}
