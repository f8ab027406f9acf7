package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/arcmill/arcmill/adapters/redisstream"
)

const doctorUsage = `Usage: arcmill doctor [flags]

Checks what the Redis server promises about the events it acknowledges:
its eviction policy (anything but noeviction may delete unread entries),
its persistence (without an append-only file synced on every write, a crash
loses acknowledged entries) and its replicas (without one, a lost machine
loses the streams). Each finding says what follows and what to change.

With --redis-cluster it checks every node, primaries and replicas, and
the cluster: cluster_state, each primary's replicas, cluster-node-timeout
(how long a dead primary's slots refuse writes before its replica takes
over), persistence per node and cluster-require-full-coverage.

Exits 0 when nothing acknowledged is at risk, 1 when a setting can lose
events (or the server cannot be read).

Examples:
  arcmill doctor
  arcmill doctor --redis rediss://user@redis.internal:6380 --format json
  arcmill doctor --redis-cluster --redis 10.0.0.1:7000,10.0.0.2:7000
`

// errAtRisk is doctor's verdict for a server that can lose events.
var errAtRisk = errors.New("the server can lose acknowledged events (see above)")

func doctorCmd(ctx context.Context, e env, args []string) error {
	var r redisFlags
	var format string
	fs := newFlags(e, "doctor", doctorUsage)
	r.register(fs)
	fs.StringVar(&format, "format", "", "json or text (default: text on a terminal, json otherwise)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("doctor takes no arguments, got %q", pos[0])
	}
	p, err := newPrinter(e.stdout, format)
	if err != nil {
		return err
	}
	client, err := r.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	report, err := redisstream.CheckServer(ctx, client)
	if err != nil {
		return fmt.Errorf("%w (a managed Redis may refuse CONFIG GET: check its settings in the provider's console)", err)
	}
	findings := make([]map[string]any, 0, len(report.Findings))
	for _, f := range report.Findings {
		m := map[string]any{"setting": f.Setting, "value": f.Value, "risk": f.Risk, "advice": f.Advice}
		if f.Node != "" {
			m["node"] = f.Node
		}
		findings = append(findings, m)
	}
	err = p.value(map[string]any{"server": r.describe(), "atRisk": report.Risky(), "findings": findings}, func(w io.Writer) {
		fmt.Fprintln(w, r.describe())
		node, width := "", 17
		for _, f := range report.Findings {
			width = max(width, len(f.Setting))
		}
		for _, f := range report.Findings {
			if f.Node != node { // a Cluster: one heading per node
				node = f.Node
				fmt.Fprintf(w, " %s\n", node)
			}
			mark := "ok  "
			if f.Risk {
				mark = "RISK"
			}
			fmt.Fprintf(w, "  %s  %-*s %-12s %s\n", mark, width, f.Setting, f.Value, f.Advice)
		}
	})
	if err != nil {
		return err
	}
	if report.Risky() {
		return errAtRisk
	}
	return nil
}
