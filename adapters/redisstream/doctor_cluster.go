package redisstream

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/redis/go-redis/v9"
)

// checkCluster is CheckServer on a Redis Cluster. A ClusterClient sends
// CONFIG GET and INFO to one node or another, so each node is asked on its
// own: every primary and every replica, for eviction and persistence, and
// every primary for its replicas. Then the cluster's own facts:
// cluster_state (CLUSTER INFO), cluster-node-timeout (how long a dead
// primary's slots refuse writes before its replica takes over) and
// cluster-require-full-coverage.
func checkCluster(ctx context.Context, cc *redis.ClusterClient) (ServerReport, error) {
	var r ServerReport
	info, err := cc.ClusterInfo(ctx).Result()
	if err != nil {
		return r, fmt.Errorf("redisstream: CLUSTER INFO: %w", err)
	}
	state := infoField(info, "cluster_state")
	f := Finding{Node: "cluster", Setting: "cluster_state", Value: state,
		Advice: fmt.Sprintf("%s of 16384 slots served, %s primaries", infoField(info, "cluster_slots_ok"), infoField(info, "cluster_size"))}
	if state != "ok" {
		f.Risk = true
		f.Advice = "the cluster refuses commands on some or all slots (" + f.Advice + "): a node is down or slots are unassigned"
	}
	r.Findings = append(r.Findings, f)
	coverage, err := cc.ConfigGet(ctx, "cluster-require-full-coverage").Result()
	if err == nil {
		v := coverage["cluster-require-full-coverage"]
		f := Finding{Node: "cluster", Setting: "cluster-require-full-coverage", Value: v}
		if v == "yes" {
			f.Advice = "while any slot is unserved (a primary down, its replica not yet promoted) the whole cluster refuses commands"
		} else {
			f.Advice = "while a slot is unserved, the other slots keep working"
		}
		r.Findings = append(r.Findings, f)
	}

	var mu sync.Mutex
	var nodes []ServerReport
	check := func(primary bool) func(context.Context, *redis.Client) error {
		return func(ctx context.Context, c *redis.Client) error {
			role := "replica"
			if primary {
				role = "primary"
			}
			node := c.Options().Addr + " " + role
			nr, err := checkNode(ctx, c, primary)
			if err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
			for i := range nr.Findings {
				nr.Findings[i].Node = node
			}
			timeout, err := c.ConfigGet(ctx, "cluster-node-timeout").Result()
			if err != nil {
				return fmt.Errorf("redisstream: %s: CONFIG GET cluster-node-timeout: %w", node, err)
			}
			ms := timeout["cluster-node-timeout"]
			nr.Findings = append(nr.Findings, Finding{Node: node, Setting: "cluster-node-timeout", Value: ms + "ms",
				Advice: "a primary that stops answering is replaced by its replica after about this long (plus an election); " +
					"its slots refuse commands until then"})
			mu.Lock()
			nodes = append(nodes, nr)
			mu.Unlock()
			return nil
		}
	}
	if err := cc.ForEachMaster(ctx, check(true)); err != nil {
		return r, err
	}
	if err := cc.ForEachSlave(ctx, check(false)); err != nil {
		return r, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Findings[0].Node < nodes[j].Findings[0].Node })
	for _, n := range nodes {
		r.Findings = append(r.Findings, n.Findings...)
	}

	return r, nil
}
