package metrics_test

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
