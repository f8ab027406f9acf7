package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/arcmill/arcmill/middleware"
)

// WatchBreaker exports a circuit breaker's state (middleware.Breaker.Stats)
// under the label handler=b.Name(), read at scrape time:
//
//	arcmill_breaker_state              gauge    handler       0 closed, 1 open, 2 half-open
//	arcmill_breaker_transitions_total  counter  handler, to   to: open, half_open, closed
//	arcmill_breaker_held_total         counter  handler       failures held, not returned
//	arcmill_breaker_waiting            gauge    handler       messages waiting at the gate
//	arcmill_breaker_returned_total     counter  handler       held messages handed back as poison
//
// state is the breaker's as this process sees it (with shared state, the
// fleet's, read at most BreakerConfig.SyncInterval ago). Alert on
// arcmill_breaker_state > 0: the subscription has stopped taking messages.
// held_total counts the failures that, the breaker being open, cost their
// message no attempt and no dead letter. returned_total counts the held
// messages handed back to Retry and DeadLetter after failing
// BreakerConfig.ProbeAttempts probes in a row while nothing else failed
// (poison events, not the outage).
func (m *Metrics) WatchBreaker(b *middleware.Breaker) error {
	labels := prometheus.Labels{"handler": b.Name()}
	state := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "breaker", "state"),
		"Circuit breaker state: 0 closed, 1 open, 2 half-open.", nil, labels)
	transitions := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "breaker", "transitions_total"),
		"Circuit breaker transitions, by the state entered (open, half_open, closed).", []string{"to"}, labels)
	held := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "breaker", "held_total"),
		"Failures an open circuit breaker held (no attempt counted, nothing dead-lettered).", nil, labels)
	waiting := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "breaker", "waiting"),
		"Messages waiting at the circuit breaker's gate now.", nil, labels)
	returned := prometheus.NewDesc(prometheus.BuildFQName(m.cfg.Namespace, "breaker", "returned_total"),
		"Held messages an open circuit breaker handed back to retry and dead letters as poison events.", nil, labels)
	return m.reg.Register(collectorFunc{desc: state, more: []*prometheus.Desc{transitions, held, waiting, returned},
		collect: func(ch chan<- prometheus.Metric) {
			st := b.Stats()
			ch <- prometheus.MustNewConstMetric(state, prometheus.GaugeValue, float64(st.State))
			for to, v := range map[string]uint64{"open": st.Opened, "half_open": st.HalfOpened, "closed": st.Closed} {
				ch <- prometheus.MustNewConstMetric(transitions, prometheus.CounterValue, float64(v), to)
			}
			ch <- prometheus.MustNewConstMetric(held, prometheus.CounterValue, float64(st.Held))
			ch <- prometheus.MustNewConstMetric(waiting, prometheus.GaugeValue, float64(st.Waiting))
			ch <- prometheus.MustNewConstMetric(returned, prometheus.CounterValue, float64(st.Returned))
		}})
}
