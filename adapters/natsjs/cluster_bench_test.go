package natsjs

import (
	"strings"
	"testing"

	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// BenchmarkReplicas compares, in one run, an R1 stream on the single
// server with an R3 stream on the 3-node cluster: publishing (one event at
// a time, each waiting for JetStream's ack, as Publisher.Publish does) and
// consuming (a group member acknowledging each message with AckSync).
// What R3 costs is the replication round trip of each publish and each
// ack.
//
//	go test -run '^$' -bench BenchmarkReplicas -benchtime 2000x ./adapters/natsjs
func BenchmarkReplicas(b *testing.B) {
	for _, tc := range benchDeployments {
		b.Run("publish/"+tc.name, func(b *testing.B) {
			js, prefix, _ := benchStream(b, tc.urls(b), tc.replicas)
			pub, err := NewPublisher(PublisherConfig{Conn: js.conn, Prefix: prefix})
			require.NoError(b, err)
			msgs := benchMessages(b, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for _, m := range msgs {
				if err := pub.Publish("", m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			require.NoError(b, pub.Close())
		})
		b.Run("consume/"+tc.name, func(b *testing.B) {
			js, prefix, _ := benchStream(b, tc.urls(b), tc.replicas)
			for _, m := range benchMessages(b, b.N) { // not timed
				nm, err := (&wnats.NATSMarshaler{}).Marshal(prefix+".order.created", m)
				require.NoError(b, err)
				_, err = js.js.PublishMsgAsync(nm)
				require.NoError(b, err)
			}
			<-js.js.PublishAsyncComplete()
			sub, err := NewSubscriber(SubscriberConfig{Conn: connect(b, strings.Join(tc.urls(b), ",")), Group: "bench"})
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			msgs, err := sub.Subscribe(b.Context(), prefix+".>")
			require.NoError(b, err)
			for range b.N {
				m := <-msgs
				m.Ack()
			}
			b.StopTimer()
			require.NoError(b, sub.Close())
		})
	}
}

// benchDeployments are the streams the benchmarks compare: R1 on the
// single server, R3 on the 3-node cluster.
var benchDeployments = []struct {
	name     string
	urls     func(testing.TB) []string
	replicas int
}{
	{"R1-single", func(t testing.TB) []string { return []string{testenv.NatsURL(t)} }, 1},
	{"R3-cluster", func(t testing.TB) []string { return testenv.NatsClusterURLs(t) }, 3},
}

// benchJS is a benchmark's own connection and JetStream context.
type benchJS struct {
	conn *nats.Conn
	js   nats.JetStreamContext
}

// benchStream creates a stream of its own with replicas, deleted when b
// ends, and returns a connection (closed by the publisher that takes it)
// and its prefix.
func benchStream(b *testing.B, urls []string, replicas int) (*benchJS, string, string) {
	b.Helper()
	nc := connect(b, strings.Join(urls, ","))
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(256))
	require.NoError(b, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix, stream := "arcmillb"+id, "ARCMILL_B_"+id
	require.NoError(b, EnsureStreamConfig(js, StreamConfig{Name: stream, Prefix: prefix, Replicas: replicas}))
	admin := connect(b, strings.Join(urls, ","))
	b.Cleanup(func() {
		ajs, err := admin.JetStream()
		if err == nil {
			_ = ajs.DeleteStream(stream)
		}
		admin.Close()
		nc.Close()
	})
	return &benchJS{conn: nc, js: js}, prefix, stream
}

// benchMessages returns n Arc events as messages.
func benchMessages(b *testing.B, n int) []*message.Message {
	b.Helper()
	out := make([]*message.Message, n)
	for i := range out {
		ev, err := arc.NewEvent("order.created", map[string]int{"n": i}, arc.Meta{})
		require.NoError(b, err)
		out[i], err = arc.ToMessage(ev)
		require.NoError(b, err)
	}
	return out
}
