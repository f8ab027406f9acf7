package redisstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Finding is one thing CheckServer found about a Redis server's promise to
// keep what it acknowledged.
type Finding struct {
	// Setting names what was read ("maxmemory-policy", "appendonly", …).
	Setting string
	// Value is what the server has.
	Value string
	// Risk is true when the setting can lose acknowledged events.
	Risk bool
	// Advice says, in plain words, what follows and what to change.
	Advice string
	// Node is, on a Redis Cluster, the address of the node the finding is
	// about, with its role ("127.0.0.1:7000 primary"), or "cluster" for a
	// fact of the whole cluster; "" for a single server.
	Node string
}

// ServerReport is what CheckServer read.
type ServerReport struct {
	Findings []Finding
}

// Risky reports whether any finding can lose acknowledged events.
func (r ServerReport) Risky() bool {
	for _, f := range r.Findings {
		if f.Risk {
			return true
		}
	}
	return false
}

// CheckServer reads what a Redis server promises about the entries it
// acknowledges: its eviction policy (anything but noeviction can delete
// stream entries under memory pressure; Arc's docs require noeviction), its
// persistence (no append-only file, or one synced only every second, loses
// acknowledged writes on a crash) and its replicas (without one, a lost
// machine loses everything). `arcmill doctor` prints it. On a
// *redis.ClusterClient it checks every node, and the cluster itself (see
// checkCluster); on one node of a cluster it says that only that node was
// checked (a cluster_enabled finding, not a risk).
func CheckServer(ctx context.Context, client redis.UniversalClient) (ServerReport, error) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		return checkCluster(ctx, cc)
	}
	r, err := checkNode(ctx, client, true)
	if err == nil && clusterEnabled(ctx, client) {
		r.Findings = append(r.Findings, Finding{Setting: "cluster_enabled", Value: "1",
			Advice: "this server is one node of a Redis Cluster and only it was checked: check every node " +
				"(arcmill doctor --redis-cluster, or CheckServer with a *redis.ClusterClient)"})
	}
	return r, err
}

// clusterEnabled tells whether the server is a Redis Cluster node. A server
// that refuses INFO cluster (some managed ones) is taken as not one.
func clusterEnabled(ctx context.Context, client redis.Cmdable) bool {
	info, err := client.Info(ctx, "cluster").Result()
	return err == nil && strings.Contains(info, "cluster_enabled:1")
}

// checkNode is CheckServer on one server; a replica (primary false) has no
// replicas of its own to count.
func checkNode(ctx context.Context, client redis.Cmdable, primary bool) (ServerReport, error) {
	var r ServerReport
	get := func(name string) (string, error) {
		res, err := client.ConfigGet(ctx, name).Result()
		if err != nil {
			return "", fmt.Errorf("redisstream: CONFIG GET %s: %w", name, err)
		}
		return res[name], nil
	}
	policy, err := get("maxmemory-policy")
	if err != nil {
		return r, err
	}
	if policy == "noeviction" {
		r.Findings = append(r.Findings, Finding{Setting: "maxmemory-policy", Value: policy,
			Advice: "full memory refuses writes instead of deleting entries"})
	} else {
		r.Findings = append(r.Findings, Finding{Setting: "maxmemory-policy", Value: policy, Risk: true,
			Advice: "under memory pressure Redis may delete stream entries nobody has read: set noeviction (Arc's docs require it)"})
	}
	aof, err := get("appendonly")
	if err != nil {
		return r, err
	}
	if aof != "yes" {
		r.Findings = append(r.Findings, Finding{Setting: "appendonly", Value: aof, Risk: true,
			Advice: "no append-only file: a crash loses every entry written since the last snapshot, acknowledged or not; " +
				"set appendonly yes (with appendfsync always), or publish with Durability and a replica"})
	} else {
		fsync, err := get("appendfsync")
		if err != nil {
			return r, err
		}
		f := Finding{Setting: "appendfsync", Value: fsync}
		if fsync != "always" {
			f.Risk = true
			f.Advice = "a crash loses up to the last second of acknowledged entries (everysec) or more (no): " +
				"set appendfsync always, or publish with Durability (WAITAOF, Redis ≥ 7.2)"
		} else {
			f.Advice = "every acknowledged entry is on disk"
		}
		r.Findings = append(r.Findings, Finding{Setting: "appendonly", Value: aof, Advice: "append-only file on"}, f)
	}
	if !primary {
		return r, nil
	}
	info, err := client.Info(ctx, "replication").Result()
	if err != nil {
		return r, fmt.Errorf("redisstream: INFO replication: %w", err)
	}
	replicas := 0
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			replicas, _ = strconv.Atoi(v)
		}
	}
	f := Finding{Setting: "replicas", Value: strconv.Itoa(replicas)}
	if replicas == 0 {
		f.Risk = true
		f.Advice = "no replica: losing this machine loses the streams; add one, and publish with Durability{Replicas: 1}"
	} else {
		f.Advice = "publish with Durability{Replicas: n} to count a write only once replicas have it"
	}
	r.Findings = append(r.Findings, f)
	return r, nil
}
