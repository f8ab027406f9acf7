package console

import (
	stdsql "database/sql"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/metrics"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// describer is a Registerer that keeps the names of what is registered,
// without collecting (WatchOutbox and WatchStream would query).
type describer struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

// exportedMetrics lists every metric name package metrics can export with
// its default namespace, histogram series included.
func exportedMetrics(t *testing.T) map[string]bool {
	d := &describer{names: map[string]bool{}}
	m, err := metrics.New(d, metrics.Config{})
	require.NoError(t, err)
	db, err := stdsql.Open("pgx", "postgres://127.0.0.1:1/none") // never connected
	require.NoError(t, err)
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL})
	require.NoError(t, err)
	require.NoError(t, m.WatchOutbox(ob))
	require.NoError(t, m.WatchStream(fakeClient(), "s", "g"))
	mr, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	wr, err := wildcard.NewRouter(mr, wildcard.Config{})
	require.NoError(t, err)
	require.NoError(t, m.WatchRouter("r", wr))
	m.AddWatermillRouterMetrics(mr)
	for name := range d.names {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			d.names[name+suffix] = true
		}
	}
	return d.names
}

var metricName = regexp.MustCompile(`\barcmill_[a-z0-9_]+`)

// TestDeployQueriesOnlyExportedMetrics checks that every metric the
// Grafana dashboard and the Prometheus rules in deploy/ query is one that
// package metrics exports, so a rename there fails here.
func TestDeployQueriesOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	require.True(t, exported["arcmill_outbox_rows"], "the describer sees the scrape-time gauges: %v", exported)

	raw, err := os.ReadFile("../deploy/grafana-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	var exprs []string
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile("../deploy/prometheus-rules.yml")
	require.NoError(t, err)
	require.Contains(t, string(rules), "expr:")
	for _, alert := range []string{"DeadLettersRising", "ConsumerLag", "OutboxOldestPending", "OutboxRelayPaused"} {
		require.Contains(t, string(rules), "alert: Arcmill"+alert, "the issue's alerts")
	}
	exprs = append(exprs, string(rules))

	var used []string
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if !slices.Contains(used, name) {
				used = append(used, name)
			}
		}
	}
	require.NotEmpty(t, used)
	var missing []string
	for _, name := range used {
		if !exported[name] {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "queried but not exported by package metrics (exported: %s)", strings.Join(keys(exported), ", "))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
