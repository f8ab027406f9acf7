package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/metrics"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// Serve arcmill's metrics (and Watermill's) on /metrics.
func Example() {
	reg := prometheus.NewRegistry()
	m, _ := metrics.New(reg, metrics.Config{})

	// Per-event counters come from hooks on the parts you already use.
	_ = middleware.RetryConfig{OnRetry: m.OnRetry}
	_ = middleware.DeadLetterConfig{OnDeadLetter: m.OnDeadLetter}
	_ = outbox.RelayConfig{OnPass: m.OnRelayPass}
	// m.Middleware on each wildcard handler; m.AddWatermillRouterMetrics(router);
	// m.WatchRouter("main", events); m.WatchOutbox(ob); m.WatchStream(client, "arc:events", "billing").
	// A handler added with Subscribe, which takes no middleware, is measured by wrapping it:
	// events.Subscribe(sub, "arc:events", "order.*", m.Handler(handler)).

	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// go http.ListenAndServe(":9090", nil)
}

// The names and labels a dashboard or an alert queries, as a scrape shows
// them once each hook has counted something (the package doc lists them
// all, with the scrape-time ones).
func Example_names() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Config{})
	if err != nil {
		panic(err)
	}
	handler := m.Handler(func(context.Context, arc.Event) error { return nil })
	_ = handler(context.Background(), arc.Event{})
	m.OnRetry(middleware.RetryInfo{Message: message.NewMessage("1", nil)})
	m.OnDeadLetter(middleware.DeadLetteredEvent{Reason: middleware.ReasonMalformed, SourceTopic: "arc:events"})
	m.OnRelayPass(outbox.RelayResult{Relayed: 1})

	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		fmt.Printf("%-36s %-9s %s\n", f.GetName(), strings.ToLower(f.GetType().String()), strings.Join(labels, ", "))
	}
	// Output:
	// arcmill_events_dead_lettered_total   counter   handler, pattern, reason
	// arcmill_events_handled_total         counter   handler, pattern, result
	// arcmill_events_retried_total         counter   handler, pattern
	// arcmill_handler_seconds              histogram handler, pattern
	// arcmill_messages_malformed_total     counter   topic
	// arcmill_outbox_relay_rows_total      counter   outcome
}
