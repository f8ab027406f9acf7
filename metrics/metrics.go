package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// ErrInvalidConfig is wrapped by every error that refuses New's arguments.
var ErrInvalidConfig = errors.New("metrics: invalid config")

// Defaults of Config.
const (
	DefaultNamespace     = "arcmill"
	DefaultScrapeTimeout = 2 * time.Second
)

// Config configures New. Zero means the default; negative durations are
// invalid.
type Config struct {
	// Namespace prefixes every metric. Defaults to DefaultNamespace.
	Namespace string
	// ScrapeTimeout bounds the queries a scrape runs (outbox status,
	// XPENDING). Defaults to DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.ScrapeTimeout == 0 {
		c.ScrapeTimeout = DefaultScrapeTimeout
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	if c.ScrapeTimeout < 0 {
		return fmt.Errorf("%w: Config.ScrapeTimeout must not be negative, got %v", ErrInvalidConfig, c.ScrapeTimeout)
	}
	return nil
}

// Metrics holds arcmill's collectors, registered on one registry.
type Metrics struct {
	reg     prometheus.Registerer
	cfg     Config
	handled *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	retried *prometheus.CounterVec
	outages *prometheus.CounterVec
	dead    *prometheus.CounterVec
	bad     *prometheus.CounterVec
	relay   *prometheus.CounterVec
}

// New registers arcmill's metrics on reg.
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	if reg == nil {
		return nil, fmt.Errorf("%w: nil Registerer", ErrInvalidConfig)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ns := cfg.Namespace
	m := &Metrics{reg: reg, cfg: cfg,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_handled_total",
			Help: "Events a handler finished, by handler, pattern and result (ok or error)."}, []string{"handler", "pattern", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "handler_seconds",
			Help: "Time a handler spent on an event.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)},
			[]string{"handler", "pattern"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_retried_total",
			Help: "Retries of a failed handler, by handler and pattern."}, []string{"handler", "pattern"}),
		outages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "outage_waits_total",
			Help: "Waits after a handler's transport or dependency failure, which cost no attempt, by handler and pattern."},
			[]string{"handler", "pattern"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_dead_lettered_total",
			Help: "Events dead-lettered, by handler, pattern and reason."}, []string{"handler", "pattern", "reason"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_malformed_total",
			Help: "Messages that were no Arc event, dead-lettered, by the topic they were read from."}, []string{"topic"}),
		relay: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "outbox_relay_rows_total",
			Help: "Outbox relay pass counters (Arc's RelayResult), by outcome."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.seconds, m.retried, m.outages, m.dead, m.bad, m.relay} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// AddWatermillRouterMetrics adds Watermill's own router metrics (publish
// and handler times, messages received) to router, on the same registry,
// under the namespace and subsystem "watermill".
func (m *Metrics) AddWatermillRouterMetrics(router *message.Router) {
	wmetrics.NewPrometheusMetricsBuilder(m.reg, m.cfg.Namespace, "watermill").AddPrometheusRouterMetrics(router)
}

// labels returns the handler and pattern of a message inside a wildcard
// handler, or the Watermill handler name and "".
func labels(msg *message.Message) (handler, pattern string) {
	if info, ok := wildcard.InfoFromContext(msg.Context()); ok {
		return info.Handler, info.Pattern
	}
	return message.HandlerNameFromCtx(msg.Context()), ""
}

// Middleware counts each call of what it wraps and times it; put it on a
// wildcard handler (or a router handler). Where it sits decides whether
// it counts deliveries or attempts: see the package doc.
func (m *Metrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		handler, pattern := labels(msg)
		start := time.Now()
		out, err := h(msg)
		m.observe(handler, pattern, start, err)
		return out, err
	}
}

// Handler counts and times each call of h, an attempt, as Middleware
// inside the recovery stack does. It measures handlers added with
// wildcard.Router.Subscribe: events.Subscribe(sub, topic, "order.*",
// m.Handler(h)). The handler label is the wildcard handler's name
// (Subscribe's is "<pattern>#<n>").
func (m *Metrics) Handler(h wildcard.Handler) wildcard.Handler {
	return func(ctx context.Context, ev arc.Event) error {
		var handler, pattern string
		if info, ok := wildcard.InfoFromContext(ctx); ok {
			handler, pattern = info.Handler, info.Pattern
		}
		start := time.Now()
		err := h(ctx, ev)
		m.observe(handler, pattern, start, err)
		return err
	}
}

func (m *Metrics) observe(handler, pattern string, start time.Time, err error) {
	m.seconds.WithLabelValues(handler, pattern).Observe(time.Since(start).Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.handled.WithLabelValues(handler, pattern, result).Inc()
}

// OnRetry counts a retry; give it to middleware.RetryConfig.OnRetry.
func (m *Metrics) OnRetry(info middleware.RetryInfo) {
	handler, pattern := labels(info.Message)
	m.retried.WithLabelValues(handler, pattern).Inc()
}

// OnOutage counts a wait after a transport failure, which cost the event
// no attempt; give it to middleware.RetryConfig.OnOutage. A handler whose
// count grows while its events_retried_total does not is waiting out a
// dependency's outage.
func (m *Metrics) OnOutage(info middleware.RetryInfo) {
	handler, pattern := labels(info.Message)
	m.outages.WithLabelValues(handler, pattern).Inc()
}

// OnDeadLetter counts a dead letter; give it to
// middleware.DeadLetterConfig.OnDeadLetter.
// A malformed message, which no handler saw, is counted with an empty
// handler, and by its source topic in messages_malformed_total.
func (m *Metrics) OnDeadLetter(dl middleware.DeadLetteredEvent) {
	handler := dl.HandlerName
	if dl.Reason == middleware.ReasonMalformed && dl.Pattern == "" {
		handler = "" // the router's internal handler, not one of the user's
		m.bad.WithLabelValues(dl.SourceTopic).Inc()
	}
	m.dead.WithLabelValues(handler, dl.Pattern, dl.Reason).Inc()
}

// OnRelayPass adds a relay pass's counters; give it to
// outbox.RelayConfig.OnPass.
func (m *Metrics) OnRelayPass(r outbox.RelayResult) {
	for outcome, n := range map[string]int{"relayed": r.Relayed, "attempted": r.Attempted,
		"publish_failed": r.PublishFailed, "ack_failed": r.AckFailed, "ownership_mismatch": r.OwnershipMismatches,
		"malformed": r.Malformed, "fail_failed": r.FailHookErrors, "dead_lettered": r.DeadLettered,
		"transport_failed": r.TransportFailed} {
		if n > 0 {
			m.relay.WithLabelValues(outcome).Add(float64(n))
		}
	}
}

// WatchRouter exports a wildcard router's event counts (unmatched
// included) under the label router=name, read at scrape time.
func (m *Metrics) WatchRouter(name string, r *wildcard.Router) error {
	desc := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "", "router_events_total"),
		"Events a wildcard router saw, by outcome (handled, unmatched, unrouted_failed, failed, malformed, malformed_dropped).",
		[]string{"outcome"}, prometheus.Labels{"router": name})
	return m.reg.Register(collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		st := r.Stats()
		for outcome, v := range map[string]uint64{"handled": st.Handled, "unmatched": st.Unmatched,
			"failed": st.Failed, "malformed": st.Malformed, "malformed_dropped": st.MalformedDropped,
			"unrouted_failed": st.UnroutedFailed} {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), outcome)
		}
	}})
}

// WatchDeadLetter exports a dead-letter middleware's counts
// (middleware.DeadLetter.Stats) under the label dead_letter=name, read at
// scrape time: messages dead-lettered, sent to a delayed retry, whose dead
// letter could not be published, dead letters ignored, and messages nacked
// because their failure was a transport's outage (never dead-lettered).
// Use the StackConfig's DeadLetter (Stack.DeadLetter).
func (m *Metrics) WatchDeadLetter(name string, d *middleware.DeadLetter) error {
	desc := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "", "dead_letter_messages_total"),
		"Messages a dead-letter middleware settled, by outcome (dead_lettered, delayed_retry, publish_failed, "+
			"ignored, transport_failed).", []string{"outcome"}, prometheus.Labels{"dead_letter": name})
	return m.reg.Register(collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		st := d.Stats()
		for outcome, v := range map[string]uint64{"dead_lettered": st.DeadLettered, "delayed_retry": st.DelayedRetries,
			"publish_failed": st.PublishFailures, "ignored": st.IgnoredDeadLetters, "transport_failed": st.TransportFailures} {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), outcome)
		}
	}})
}

// WatchOutbox exports an outbox's rows by state and the age of its oldest
// undelivered row (the relay's lag), read at scrape time.
func (m *Metrics) WatchOutbox(ob *outbox.Outbox) error {
	labels := prometheus.Labels{"table": ob.Table()}
	rows := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "outbox", "rows"),
		"Outbox rows by state (pending, delayed, in_flight, dead, delivered).", []string{"state"}, labels)
	lag := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "outbox", "oldest_pending_seconds"),
		"Age of the oldest undelivered, not dead row; 0 when there is none.", nil, labels)
	up := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "outbox", "status_up"),
		"1 when the last scrape could read the outbox's status.", nil, labels)
	return m.reg.Register(collectorFunc{desc: rows, more: []*prometheus.Desc{lag, up}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ScrapeTimeout)
		defer cancel()
		st, err := ob.Status(ctx)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, 0)
			return
		}
		ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, 1)
		for state, v := range map[string]int64{"pending": st.Pending, "delayed": st.Delayed, "in_flight": st.InFlight,
			"dead": st.Dead, "delivered": st.Delivered} {
			ch <- prometheus.MustNewConstMetric(rows, prometheus.GaugeValue, float64(v), state)
		}
		age := 0.0
		if !st.OldestPending.IsZero() {
			age = time.Since(st.OldestPending).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(lag, prometheus.GaugeValue, age)
	}})
}

// WatchStream exports a Redis consumer group's pending entries (delivered,
// not acknowledged) and its lag where Redis reports it, read at scrape time.
func (m *Metrics) WatchStream(client redis.UniversalClient, stream, group string) error {
	labels := prometheus.Labels{"stream": stream, "group": group}
	pending := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "consumer", "pending"),
		"Entries delivered to the group and not yet acknowledged.", nil, labels)
	lagDesc := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "consumer", "lag"),
		"Entries not yet delivered to the group (Redis 7+).", nil, labels)
	return m.reg.Register(collectorFunc{desc: pending, more: []*prometheus.Desc{lagDesc}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ScrapeTimeout)
		defer cancel()
		groups, err := client.XInfoGroups(ctx, stream).Result()
		if err != nil {
			return
		}
		for _, g := range groups {
			if g.Name != group {
				continue
			}
			ch <- prometheus.MustNewConstMetric(pending, prometheus.GaugeValue, float64(g.Pending))
			if g.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(g.Lag))
			}
		}
	}})
}

// collectorFunc is a collector read at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	more    []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	for _, d := range c.more {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
