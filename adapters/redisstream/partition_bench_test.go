package redisstream

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// scalingCase is one setup BenchmarkPartitionScaling measures.
type scalingCase struct {
	name       string
	partitions int // 0: one stream on the single Redis; -1: one stream on the cluster, no partitioning
}

var scalingCases = []scalingCase{{"one_node", 0}, {"cluster_stream", -1}, {"p1", 1}, {"p3", 3}, {"p6", 6}}

// scalingTotals adds up one case's runs.
type scalingTotals struct {
	publish, consume       time.Duration
	primaryCPU, replicaCPU time.Duration // the servers', during publish and consume
	clientCPU              time.Duration // this process's
	events                 int
	primaries              int // primaries holding partitions
}

// redisCPU is the CPU time (user + system) the servers of client have
// used: the primaries', and the replicas', which replicate the writes.
func redisCPU(b *testing.B, client redis.UniversalClient) (primaries, replicas time.Duration) {
	read := func(ctx context.Context, c *redis.Client) (time.Duration, error) {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return 0, err
		}
		var total float64
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_user" || k == "used_cpu_sys" {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
		return time.Duration(total * float64(time.Second)), nil
	}
	ctx := context.Background()
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		d, err := read(ctx, client.(*redis.Client))
		require.NoError(b, err)
		return d, 0
	}
	var mu sync.Mutex
	sum := func(into *time.Duration) func(context.Context, *redis.Client) error {
		return func(ctx context.Context, c *redis.Client) error {
			d, err := read(ctx, c)
			mu.Lock()
			*into += d
			mu.Unlock()
			return err
		}
	}
	require.NoError(b, cc.ForEachMaster(ctx, sum(&primaries)))
	require.NoError(b, cc.ForEachSlave(ctx, sum(&replicas)))
	return primaries, replicas
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPartitionScaling: events/s published and consumed through
// partitioned streams with 1, 3 and 6 partitions on the Redis Cluster
// (three primaries, three replicas, all on this machine), against one
// stream on the single Redis, in one run. Publishing: 4 goroutines, batches
// of 100 (each a pipeline per partition). Consuming: the wildcard router
// with a no-op Arc handler, as BenchmarkConsume, over a PartitionSubscriber
// (a Subscriber per partition, MaxInFlight 64 each). cluster_stream is the
// plain Publisher and Subscriber on one key of the cluster: what the
// cluster client and the replica cost, apart from partitioning. It reports each case's
// events/s, its ratio to one_node, and the CPU every Redis server and this
// process spent per event (primaries, replicas, client), the per-node
// figures to project from: a primary given a core of its own serves about
// 1e6 / primary_cpu_µs/event events/s (each written and read once), its
// replica needs replica_cpu_µs/event, and the consuming and publishing
// processes client_cpu_µs/event.
func BenchmarkPartitionScaling(b *testing.B) {
	const n = 20000
	single := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b), PoolSize: 32})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisClusterAddrs(b), PoolSize: 32})
	defer cluster.Close()
	msgs := benchEvents(b, n)
	totals := map[string]*scalingTotals{}
	for _, c := range scalingCases {
		totals[c.name] = &scalingTotals{}
	}
	for b.Loop() {
		for _, c := range scalingCases {
			t := totals[c.name]
			client := redis.UniversalClient(cluster)
			var pub message.Publisher
			var sub message.Subscriber
			var err error
			topic := "arcmill-bench:" + uuid.NewString()
			parts := Partitions{Stream: topic, N: max(c.partitions, 1)}
			if c.partitions <= 0 {
				if c.partitions == 0 {
					client = single
				}
				pub, err = NewPublisher(PublisherConfig{Client: client})
				require.NoError(b, err)
				sub, err = NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "bench",
					Consumers: benchConsumers, MaxInFlight: benchInFlight})
				t.primaries = 1
			} else {
				pub, err = NewPartitionPublisher(PartitionPublisherConfig{Partitions: c.partitions,
					Publisher: PublisherConfig{Client: cluster}})
				require.NoError(b, err)
				sub, err = NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: c.partitions,
					Subscriber: SubscriberConfig{Client: cluster, ConsumerGroup: "bench", Consumers: benchConsumers,
						MaxInFlight: benchInFlight}})
				nodes, nerr := PartitionNodes(context.Background(), cluster, parts)
				require.NoError(b, nerr)
				distinct := map[string]bool{}
				for _, a := range nodes {
					distinct[a] = true
				}
				t.primaries = len(distinct)
			}
			require.NoError(b, err)
			prim0, repl0 := redisCPU(b, client)
			own0 := processCPU()
			start := time.Now()
			var wg sync.WaitGroup
			const publishers, batch = 4, 100
			for g := 0; g < publishers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g * batch; i < n; i += publishers * batch {
						if err := pub.Publish(topic, msgs[i:min(i+batch, n)]...); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			t.publish += time.Since(start)
			t.consume += consume(b, sub, topic, n)
			prim1, repl1 := redisCPU(b, client)
			t.primaryCPU += prim1 - prim0
			t.replicaCPU += repl1 - repl0
			t.clientCPU += processCPU() - own0
			t.events += n
			_ = sub.Close()
			_ = pub.Close()
			for _, k := range parts.Keys() {
				client.Del(context.Background(), k)
			}
		}
	}
	base := totals["one_node"]
	for _, c := range scalingCases {
		t := totals[c.name]
		pubRate := float64(t.events) / t.publish.Seconds()
		conRate := float64(t.events) / t.consume.Seconds()
		b.ReportMetric(pubRate, c.name+"_publish_events/s")
		b.ReportMetric(conRate, c.name+"_consume_events/s")
		if c.name != "one_node" {
			b.ReportMetric(pubRate/(float64(base.events)/base.publish.Seconds()), c.name+"_publish_vs_one_node")
			b.ReportMetric(conRate/(float64(base.events)/base.consume.Seconds()), c.name+"_consume_vs_one_node")
			b.ReportMetric(float64(t.primaries), c.name+"_primaries")
		}
		// Publish and consume both: each event is written once and read once.
		b.ReportMetric(float64(t.primaryCPU.Microseconds())/float64(t.events), c.name+"_primary_cpu_µs/event")
		if c.name != "one_node" {
			b.ReportMetric(float64(t.replicaCPU.Microseconds())/float64(t.events), c.name+"_replica_cpu_µs/event")
		}
		b.ReportMetric(float64(t.clientCPU.Microseconds())/float64(t.events), c.name+"_client_cpu_µs/event")
	}
}
