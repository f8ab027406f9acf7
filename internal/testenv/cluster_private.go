package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PrivateClusterNodeTimeout is the cluster-node-timeout of a private
// cluster: short, so that a killed primary's replica is promoted within a
// few seconds, and long enough that a loaded machine's slow replies do not
// make the nodes fail each other.
const PrivateClusterNodeTimeout = 1500 * time.Millisecond

// clusterWait bounds every wait of a private cluster (creation, failover,
// a restarted node's rejoining). Generous: the machine is shared.
const clusterWait = 60 * time.Second

// Cluster is a private Redis Cluster of a test: its own redis-server
// processes on free loopback ports, stopped when the test ends. Tests that
// kill nodes or move slots use one, so that the shared cluster's other
// clients never feel it.
type Cluster struct {
	t     testing.TB
	bin   string
	extra []string

	mu     sync.Mutex
	nodes  map[string]*clusterProc // by address
	order  []string                // addresses in creation order
	client *redis.ClusterClient
}

// clusterProc is one node's process and its directory (which keeps its
// nodes.conf, so a restarted node rejoins as the same node).
type clusterProc struct {
	port int
	dir  string
	cmd  *exec.Cmd // nil while the node is down
}

// PrivateRedisCluster starts primaries×(1+replicasPer) redis-server
// processes with --cluster-enabled yes, each on a free loopback port with
// its own directory under t.TempDir(), joins them with `redis-cli --cluster
// create … --cluster-replicas replicasPer --cluster-yes`, and waits until
// every node reports cluster_state:ok and every replica is in sync. Nodes
// keep nothing on disk (no RDB, no AOF) unless extra asks for it (extra
// goes to every redis-server). cluster-node-timeout is
// PrivateClusterNodeTimeout. Everything is stopped at t.Cleanup.
func PrivateRedisCluster(t testing.TB, primaries, replicasPer int, extra ...string) *Cluster {
	t.Helper()
	if primaries < 3 {
		t.Fatalf("PrivateRedisCluster: redis-cli --cluster create needs at least 3 primaries, got %d", primaries)
	}
	RedisAddr(t) // the shared server is up, so redis-server is installed
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for a private cluster (make test installs it): %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is needed to create a private cluster: %v", err)
	}
	c := &Cluster{t: t, bin: bin, extra: extra, nodes: map[string]*clusterProc{}}
	t.Cleanup(c.stopAll)
	base := t.TempDir()
	for i := 0; i < primaries*(1+replicasPer); i++ {
		port := freeClusterPort(t)
		p := &clusterProc{port: port, dir: filepath.Join(base, strconv.Itoa(port))}
		if err := os.Mkdir(p.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		c.nodes[addr], c.order = p, append(c.order, addr)
		c.start(addr)
	}
	for _, addr := range c.order {
		waitFor(t, addr, "private cluster node", func(rc *redis.Client) bool { return rc.Ping(context.Background()).Err() == nil })
	}
	args := append([]string{"--cluster", "create"}, c.order...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPer), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.order})
	t.Cleanup(func() { _ = c.client.Close() })
	return c
}

// freeClusterPort returns a free loopback port whose cluster bus port
// (port+10000) is free too, both below the ephemeral range (see
// RestartPort): nodes are killed and started again on their ports.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := clusterPortMin + rand.IntN(clusterPortMax-clusterPortMin)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port
	}
	t.Fatal("no free port pair (port, port+10000) for a cluster node")
	return 0
}

// start runs the node of addr (its process must be down).
func (c *Cluster) start(addr string) {
	c.t.Helper()
	p := c.nodes[addr]
	args := append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--dir", p.dir,
		"--save", "", "--appendonly", "no",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(PrivateClusterNodeTimeout.Milliseconds())),
		// A replica may always be promoted, however long its link was down:
		// the tests kill primaries on a loaded machine.
		"--cluster-replica-validity-factor", "0",
		"--logfile", "redis.log"}, c.extra...)
	cmd := exec.Command(c.bin, args...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.cmd = cmd
}

// stopAll kills every node still running.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.nodes {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			p.cmd = nil
		}
	}
}

// Addrs returns the address of every node, up or down, in creation order.
func (c *Cluster) Addrs() []string { return append([]string(nil), c.order...) }

// Client returns a ClusterClient of the cluster, closed at the end of the
// test.
func (c *Cluster) Client() *redis.ClusterClient { return c.client }

// NewClient returns a new ClusterClient of the cluster with opt (Addrs
// filled in), closed at the end of the test.
func (c *Cluster) NewClient(opt redis.ClusterOptions) *redis.ClusterClient {
	opt.Addrs = c.Addrs()
	cc := redis.NewClusterClient(&opt)
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Kill stops the node at addr with SIGKILL: no shutdown, no last write.
func (c *Cluster) Kill(addr string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[addr]
	if !ok {
		c.t.Fatalf("Kill: %s is not a node of this cluster", addr)
	}
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// Restart starts the killed node at addr again, with its nodes.conf, and
// waits until it answers and the cluster is healthy. A primary that was
// replaced rejoins as a replica of its successor.
func (c *Cluster) Restart(addr string) {
	c.t.Helper()
	c.mu.Lock()
	p, ok := c.nodes[addr]
	if !ok {
		c.mu.Unlock()
		c.t.Fatalf("Restart: %s is not a node of this cluster", addr)
	}
	if p.cmd == nil {
		c.start(addr)
	}
	c.mu.Unlock()
	c.WaitHealthy()
}

// up reports the addresses of the running nodes.
func (c *Cluster) up() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, addr := range c.order {
		if c.nodes[addr].cmd != nil {
			addrs = append(addrs, addr)
		}
	}
	return addrs
}

// node runs f on a plain client of addr.
func node[T any](addr string, f func(*redis.Client) T) T {
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	return f(rc)
}

// Slot returns the hash slot of key, as the cluster computes it.
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	for _, addr := range c.up() {
		cmd := node(addr, func(rc *redis.Client) *redis.IntCmd { return rc.ClusterKeySlot(context.Background(), key) })
		slot, err := cmd.Result()
		if err == nil {
			return int(slot)
		}
	}
	c.t.Fatalf("no node answers CLUSTER KEYSLOT %s", key)
	return 0
}

// PrimaryFor returns the address of the primary that serves key's slot, as
// the running nodes see it now (CLUSTER SLOTS, not a client's cache).
func (c *Cluster) PrimaryFor(key string) string {
	c.t.Helper()
	addr, err := c.primaryForSlot(c.Slot(key))
	if err != nil {
		c.t.Fatal(err)
	}
	return addr
}

// primaryForSlot asks a running node which primary serves slot.
func (c *Cluster) primaryForSlot(slot int) (string, error) {
	var last error = fmt.Errorf("no node of the cluster is up")
	for _, addr := range c.up() {
		slots, err := node(addr, func(rc *redis.Client) *redis.ClusterSlotsCmd {
			return rc.ClusterSlots(context.Background())
		}).Result()
		if err != nil {
			last = err
			continue
		}
		for _, s := range slots {
			if slot >= s.Start && slot <= s.End && len(s.Nodes) > 0 {
				return s.Nodes[0].Addr, nil
			}
		}
		last = fmt.Errorf("slot %d is served by no node (as %s sees it)", slot, addr)
	}
	return "", last
}

// Primaries returns the addresses of the running primaries that serve
// slots.
func (c *Cluster) Primaries() []string {
	c.t.Helper()
	var out []string
	for _, addr := range c.up() {
		info := node(addr, func(rc *redis.Client) string { return rc.Info(context.Background(), "replication").Val() })
		if strings.Contains(info, "role:master") {
			out = append(out, addr)
		}
	}
	return out
}

// NodeID returns the cluster node id of the node at addr.
func (c *Cluster) NodeID(addr string) string {
	c.t.Helper()
	id, err := node(addr, func(rc *redis.Client) *redis.StringCmd { return rc.ClusterMyID(context.Background()) }).Result()
	if err != nil {
		c.t.Fatalf("CLUSTER MYID on %s: %v", addr, err)
	}
	return id
}

// WaitFailover polls until the slot of key is served by a primary other
// than old and the cluster is healthy again (WaitHealthy), and returns the
// new primary.
func (c *Cluster) WaitFailover(key, old string) string {
	c.t.Helper()
	slot := c.Slot(key)
	deadline := time.Now().Add(clusterWait)
	for {
		addr, err := c.primaryForSlot(slot)
		if err == nil && addr != old {
			c.WaitHealthy()
			return addr
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("slot %d of %s still on %s (or unserved: %v) after %s", slot, key, old, err, clusterWait)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// WaitHealthy polls until every running node reports cluster_state:ok,
// every running replica's link to its primary is up, and the nodes agree
// on which primary serves each slot.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		why := c.unhealthy()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("private cluster not healthy after %s: %s", clusterWait, why)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// unhealthy says why the cluster is not healthy, or "".
func (c *Cluster) unhealthy() string {
	ctx := context.Background()
	var view string
	running := c.up()
	for _, addr := range running {
		why := node(addr, func(rc *redis.Client) string {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Sprintf("%s: CLUSTER INFO: %v", addr, err)
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return addr + ": cluster_state not ok"
			}
			repl, err := rc.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Sprintf("%s: INFO: %v", addr, err)
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return addr + ": replica link down"
			}
			slots, err := rc.ClusterSlots(ctx).Result()
			if err != nil {
				return fmt.Sprintf("%s: CLUSTER SLOTS: %v", addr, err)
			}
			var b strings.Builder
			serving := map[string]bool{}
			for _, s := range slots {
				if len(s.Nodes) > 0 {
					fmt.Fprintf(&b, "%d-%d@%s;", s.Start, s.End, s.Nodes[0].Addr)
				}
				for _, n := range s.Nodes {
					serving[n.Addr] = true
				}
			}
			// Every running node serves, as a primary or as a replica in
			// sync (CLUSTER SLOTS leaves out a replica still loading).
			if len(serving) != len(running) {
				return fmt.Sprintf("%s: %d nodes serve slots, %d are running", addr, len(serving), len(running))
			}
			if v := sortedView(b.String()); view == "" {
				view = v
			} else if v != view {
				return addr + ": its slot map differs from another node's"
			}
			return ""
		})
		if why != "" {
			return why
		}
	}
	return ""
}

// sortedView orders a "range@addr;" list so that two nodes' CLUSTER SLOTS
// replies compare equal whatever order they came in.
func sortedView(s string) string {
	parts := strings.Split(strings.TrimSuffix(s, ";"), ";")
	for i := 1; i < len(parts); i++ { // insertion sort: a handful of ranges
		for j := i; j > 0 && parts[j] < parts[j-1]; j-- {
			parts[j], parts[j-1] = parts[j-1], parts[j]
		}
	}
	return strings.Join(parts, ";")
}

// Reshard moves slots from the primary at from to the primary at to, one
// slot at a time, the way `redis-cli --cluster reshard` does: the target
// IMPORTING and the source MIGRATING the slot, the slot's keys moved with
// MIGRATE, then the slot handed to the target on every primary. A client
// running meanwhile meets real ASK redirections (a key already moved while
// the slot is migrating) and MOVED ones (after the hand-over). It waits
// until the nodes agree on the new owner.
func (c *Cluster) Reshard(from, to string, slots ...int) {
	c.t.Helper()
	c.ReshardWith(from, to, slots, nil)
}

// ReshardWith is Reshard, calling migrating (when not nil) for each slot
// after its keys have moved and before it is handed over: while migrating
// runs, the source answers the slot's keys with ASK. A test uses it to
// wait, with a deadline, until its clients have gone through ASK.
func (c *Cluster) ReshardWith(from, to string, slots []int, migrating func(slot int)) {
	c.t.Helper()
	ctx := context.Background()
	fromID, toID := c.NodeID(from), c.NodeID(to)
	host, portText, _ := strings.Cut(to, ":")
	port, _ := strconv.Atoi(portText)
	src := redis.NewClient(&redis.Options{Addr: from, MaxRetries: -1})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: to, MaxRetries: -1})
	defer dst.Close()
	must := func(what string, err error) {
		if err != nil {
			c.t.Fatalf("reshard %s → %s: %s: %v", from, to, what, err)
		}
	}
	for _, slot := range slots {
		must("SETSLOT IMPORTING", dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err())
		must("SETSLOT MIGRATING", src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err())
		for {
			keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
			must("GETKEYSINSLOT", err)
			if len(keys) == 0 {
				break
			}
			args := []any{"MIGRATE", host, port, "", 0, 10000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			must("MIGRATE", src.Do(ctx, args...).Err())
		}
		if migrating != nil {
			migrating(slot)
		}
		// The target first, as redis-cli does: once the source hands the
		// slot over it answers MOVED, and the target must own it by then.
		must("SETSLOT NODE (target)", dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err())
		must("SETSLOT NODE (source)", src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err())
		for _, addr := range c.Primaries() {
			if addr != from && addr != to {
				must("SETSLOT NODE ("+addr+")", node(addr, func(rc *redis.Client) error {
					return rc.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err()
				}))
			}
		}
	}
	c.WaitHealthy()
}

// ReplicasOf returns the addresses of the replicas of the primary at
// addr, as the running nodes see them (CLUSTER SLOTS).
func (c *Cluster) ReplicasOf(primary string) []string {
	c.t.Helper()
	for _, addr := range c.up() {
		slots, err := node(addr, func(rc *redis.Client) *redis.ClusterSlotsCmd {
			return rc.ClusterSlots(context.Background())
		}).Result()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if len(s.Nodes) > 0 && s.Nodes[0].Addr == primary {
				var out []string
				for _, n := range s.Nodes[1:] {
					out = append(out, n.Addr)
				}
				return out
			}
		}
	}
	return nil
}

// Pause stops the node at addr with SIGSTOP: it keeps its connections but
// reads and answers nothing, as a stalled machine or a cut link does.
// Resume ends it.
func (c *Cluster) Pause(addr string) { c.signal(addr, syscall.SIGSTOP) }

// Resume continues a node stopped by Pause (SIGCONT).
func (c *Cluster) Resume(addr string) { c.signal(addr, syscall.SIGCONT) }

func (c *Cluster) signal(addr string, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[addr]
	if !ok || p.cmd == nil {
		c.t.Fatalf("%s: not a running node of this cluster", addr)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("%s: %v", addr, err)
	}
}
