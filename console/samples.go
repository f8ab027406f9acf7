package console

import (
	"context"
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"
)

// Sampling defaults.
const (
	// DefaultSampleInterval is how often the console samples lag and
	// throughput for its charts.
	DefaultSampleInterval = 10 * time.Second
	// DefaultSampleWindow is how far back the charts reach.
	DefaultSampleWindow = 10 * time.Minute
	// NoSampling, as Config.SampleInterval, turns the sampler off.
	NoSampling = time.Duration(-1)
)

// Sample is one reading of a stream or an outbox.
type Sample struct {
	// Time is when it was read.
	Time time.Time `json:"time"`
	// Lag is, for a stream, the entries its groups have not been
	// delivered (the largest group's); for an outbox, its undelivered rows.
	Lag int64 `json:"lag"`
	// Pending is, for a stream, the entries delivered and not acked (all
	// groups); for an outbox, its rows in flight.
	Pending int64 `json:"pending"`
	// DeadLetters counts the dead letters.
	DeadLetters int64 `json:"deadLetters"`
	// PerSecond is the entries appended to a stream per second since the
	// previous sample (Redis 7's entries-added); 0 for an outbox.
	PerSecond float64 `json:"perSecond"`
}

// Series is the samples of one stream or outbox, oldest first.
type Series struct {
	// Name is "stream:<name>" or "outbox:<name>".
	Name string `json:"name"`
	// Samples are oldest first.
	Samples []Sample `json:"samples"`
}

// sampler keeps the recent samples of every stream and outbox.
type sampler struct {
	mu     sync.Mutex
	series map[string][]Sample
	order  []string
	added  map[string]int64 // a stream's entries-added at the last sample
	keep   int
	done   chan struct{}
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, c *Console, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.sample(ctx, c)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample(ctx context.Context, c *Console) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	o := c.overview(ctx)
	for _, st := range o.Streams {
		if st.Error != "" {
			continue
		}
		smp := Sample{Time: o.Time, DeadLetters: st.DeadLetters}
		for _, g := range st.Groups {
			smp.Lag = max(smp.Lag, g.Lag)
			smp.Pending += g.Pending
		}
		name := kindStream + ":" + st.Name
		if info, err := c.cfg.Redis.XInfoStream(ctx, st.Name).Result(); err == nil {
			s.mu.Lock()
			if prev, ok := s.added[name]; ok && len(s.series[name]) > 0 {
				dt := o.Time.Sub(s.series[name][len(s.series[name])-1].Time).Seconds()
				if dt > 0 && info.EntriesAdded >= prev {
					smp.PerSecond = float64(info.EntriesAdded-prev) / dt
				}
			}
			s.added[name] = info.EntriesAdded
			s.mu.Unlock()
		}
		s.add(name, smp)
	}
	for _, ob := range o.Outboxes {
		if ob.Error != "" {
			continue
		}
		s.add(kindOutbox+":"+ob.Name, Sample{Time: o.Time, Lag: ob.Pending + ob.Delayed + ob.InFlight,
			Pending: ob.InFlight, DeadLetters: ob.Dead})
	}
}

func (s *sampler) add(name string, smp Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.series[name]; !ok {
		s.order = append(s.order, name)
	}
	ss := append(s.series[name], smp)
	if len(ss) > s.keep {
		ss = append([]Sample(nil), ss[len(ss)-s.keep:]...)
	}
	s.series[name] = ss
}

// all returns a copy of every series.
func (s *sampler) all() []Series {
	if s == nil {
		return []Series{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Series, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, Series{Name: name, Samples: append([]Sample(nil), s.series[name]...)})
	}
	return out
}

// get returns one series' samples.
func (s *sampler) get(name string) []Sample {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.series[name]...)
}

// Chart geometry.
const (
	chartW, chartH = 600, 140
	chartPad       = 28
)

// chart draws a series as an SVG line chart, server-side: lag, pending
// and dead letters, and throughput on its own scale. It returns nothing
// under two samples.
func chart(title string, ss []Sample) template.HTML {
	if len(ss) < 2 {
		return ""
	}
	lines := []struct {
		name, class string
		v           func(Sample) float64
	}{
		{"lag", "c-lag", func(s Sample) float64 { return float64(s.Lag) }},
		{"pending", "c-pending", func(s Sample) float64 { return float64(s.Pending) }},
		{"dead letters", "c-dead", func(s Sample) float64 { return float64(s.DeadLetters) }},
	}
	top := 1.0
	for _, s := range ss {
		for _, l := range lines {
			top = math.Max(top, l.v(s))
		}
	}
	rate := 0.0
	for _, s := range ss {
		rate = math.Max(rate, s.PerSecond)
	}
	t0, t1 := ss[0].Time, ss[len(ss)-1].Time
	span := math.Max(t1.Sub(t0).Seconds(), 1)
	x := func(t time.Time) float64 { return chartPad + (chartW-2*chartPad)*t.Sub(t0).Seconds()/span }
	y := func(v, top float64) float64 { return chartH - chartPad + (2*chartPad-chartH)*v/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartPad, chartH-chartPad, chartW-chartPad, chartH-chartPad)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">%s</text>`, 2, chartPad-14, html.EscapeString(fmt.Sprintf("max %.0f", top)))
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">%s</text>`, chartPad, chartH-8, t0.UTC().Format("15:04:05"))
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, chartW-chartPad, chartH-8, t1.UTC().Format("15:04:05"))
	draw := func(class string, v func(Sample) float64, top float64) {
		fmt.Fprintf(&b, `<polyline class="%s" points="`, class)
		for i, s := range ss {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x(s.Time), y(v(s), top))
		}
		b.WriteString(`"/>`)
	}
	for _, l := range lines {
		draw(l.class, l.v, top)
	}
	// The legend, each name in its line's colour.
	legend := `<tspan class="t-lag">lag</tspan>, <tspan class="t-pending">pending</tspan>, <tspan class="t-dead">dead letters</tspan>`
	if rate > 0 {
		draw("c-rate", func(s Sample) float64 { return s.PerSecond }, rate)
		legend += fmt.Sprintf(`, <tspan class="t-rate">appended/s (dashed, max %.1f)</tspan>`, rate)
	}
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, chartW-chartPad, chartPad-14, legend)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from numbers and escaped text only
}
