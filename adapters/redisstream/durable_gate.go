package redisstream

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// durabilityRecheck is how long the answer of a durability pre-check (or
// of a WAIT that fell short) stands before the server is asked again.
// Short, so that a replica that comes back is written to within a relay's
// retry, and long enough that a relay retrying in a loop asks the server a
// few times per second, not once per batch.
const durabilityRecheck = 200 * time.Millisecond

// durableGate keeps a durable publisher from writing while the durability
// it asks for is known to be missing. Without it, every retry of a batch
// during a replica outage writes the batch again (the XADDs succeed, only
// WAIT falls short), and the stream fills with copies nobody confirmed.
//
// The gate costs nothing while confirmations arrive: it is opened by a
// WAIT that fell short and closed again by one that succeeded. While it
// is open, Publish asks the server (INFO) whether enough replicas are
// connected and acknowledging, at most once per durabilityRecheck, and
// fails with ErrNotDurable, writing nothing, when they are not. When they
// are, the batch is written and WAIT decides as before: the gate only
// ever refuses a write, it never confirms one.
type durableGate struct {
	short atomic.Bool // the last confirmation fell short

	mu      sync.Mutex // guards the cached answer only, never held across I/O
	checked time.Time  // when err was found
	err     error      // the cached answer: nil, or why writing is pointless
}

// fellShort records a confirmation that did not come: later publishes ask
// the server first, and the next durabilityRecheck refuses at once.
func (g *durableGate) fellShort(why error) {
	g.mu.Lock()
	g.checked, g.err = time.Now(), why
	g.mu.Unlock()
	g.short.Store(true)
}

// confirmed records a confirmation: the gate closes.
func (g *durableGate) confirmed() {
	if g.short.Load() {
		g.short.Store(false)
		g.mu.Lock()
		g.checked, g.err = time.Time{}, nil
		g.mu.Unlock()
	}
}

// admit returns nil when a durable write may go ahead, or the error that
// refuses it, nothing written.
func (p *Publisher) admitDurable(ctx context.Context, topic string, d Durability) error {
	target, err := nodeFor(ctx, p.cfg.Client, topic)
	if err != nil {
		return fmt.Errorf("redisstream: finding the cluster node of %q: %w", topic, err)
	}
	g := p.gateOf(target)
	if !g.short.Load() {
		return nil
	}
	g.mu.Lock()
	if time.Since(g.checked) < durabilityRecheck {
		err := g.err
		g.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w (nothing written)", err)
		}
		return nil
	}
	g.mu.Unlock()
	err = p.durabilityReady(ctx, topic, d)
	g.mu.Lock()
	g.checked, g.err = time.Now(), err
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w (nothing written)", err)
	}
	return nil
}

// gateOf returns the gate of the server node writes go to: the
// publisher's one gate on a single server (or Sentinel), one per primary on
// a Cluster, so that a replica outage behind one primary does not hold up
// the streams of the others.
func (p *Publisher) gateOf(node pipeliner) *durableGate {
	c, ok := node.(*redis.Client)
	if _, isCluster := p.cfg.Client.(*redis.ClusterClient); !isCluster || !ok {
		return &p.gate
	}
	g, _ := p.nodeGates.LoadOrStore(c.Options().Addr, &durableGate{})
	return g.(*durableGate)
}

// replicaMaxLag is how many seconds since its last acknowledgement
// (INFO's lag) a replica may show and still count as acknowledging.
// Replicas acknowledge every second, so a healthy one shows 0 or 1; a
// stopped one that the primary has not yet dropped grows past it.
const replicaMaxLag = 2

// durabilityReady asks the server of topic (on a Cluster, the primary
// serving topic's slot) whether the durability d asks for can be
// confirmed now: enough replicas online and acknowledging (INFO
// replication) and, with Fsync, an append-only file (INFO persistence).
// A server that does not answer is an error of its own (the transport's);
// nothing is written either way.
func (p *Publisher) durabilityReady(ctx context.Context, topic string, d Durability) error {
	sections := []string{"replication"}
	if d.Fsync {
		sections = append(sections, "persistence")
	}
	server, err := nodeFor(ctx, p.cfg.Client, topic)
	if err != nil {
		return fmt.Errorf("redisstream: checking durability before writing: finding the cluster node of %q: %w", topic, err)
	}
	info, err := server.Info(ctx, sections...).Result()
	if err != nil {
		return fmt.Errorf("redisstream: checking durability before writing (INFO): %w", err)
	}
	if d.Fsync && infoField(info, "aof_enabled") != "1" {
		return fmt.Errorf("%w: the primary has no append-only file (appendonly no), so WAITAOF cannot confirm", ErrNotDurable)
	}
	if n := acknowledgingReplicas(info); n < d.Replicas {
		return fmt.Errorf("%w: %d of %d replica(s) online and acknowledging (INFO replication)", ErrNotDurable, n, d.Replicas)
	}
	return nil
}

// infoField returns the value of name in an INFO reply, or "".
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// acknowledgingReplicas counts the slaveN lines of INFO replication with
// state=online and lag ≤ replicaMaxLag.
func acknowledgingReplicas(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "slave") {
			continue
		}
		_, attrs, ok := strings.Cut(line, ":")
		if !ok || !strings.Contains(attrs, "state=") {
			continue // slave_read_only:1 and the like
		}
		online, lag := false, math.MaxInt
		for _, kv := range strings.Split(attrs, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "state":
				online = v == "online"
			case "lag":
				if l, err := strconv.Atoi(v); err == nil {
					lag = l
				}
			}
		}
		if online && lag <= replicaMaxLag {
			n++
		}
	}
	return n
}
