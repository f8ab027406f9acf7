package natsjs

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// BenchmarkVsRaw runs arcmill's JetStream publisher and subscriber beside
// their physical reference, plain nats.go loops doing the same work, in
// one run, on an R1 stream on the single server and an R3 stream on the
// 3-node cluster, the cases alternating over 3 rounds:
//
//   - publish: one event at a time, each waiting for JetStream's ack;
//     raw: js.PublishMsg of the same message, encoded beforehand;
//   - consume: a durable push consumer with a deliver group, every
//     message acknowledged with AckSync (what the subscriber does); raw: a
//     queue subscription bound to such a consumer, AckSync in its callback.
//
// It reports each rate (median of the rounds) and arcmill's over raw.
//
//	go test -run '^$' -bench BenchmarkVsRaw -benchtime 1x ./adapters/natsjs
func BenchmarkVsRaw(b *testing.B) {
	const nPublish, nConsume, rounds = 1000, 3000, 3
	for _, tc := range benchDeployments {
		b.Run(tc.name, func(b *testing.B) {
			urls := strings.Join(tc.urls(b), ",")
			js, prefix, stream := benchStream(b, tc.urls(b), tc.replicas)
			subject := prefix + ".order.created"
			msgs := benchMessages(b, nConsume)
			encoded := make([]*nats.Msg, len(msgs))
			for i, m := range msgs {
				nm, err := (&wnats.NATSMarshaler{}).Marshal(subject, m)
				require.NoError(b, err)
				encoded[i] = nm
			}
			// The stream the consumers read: nConsume events, written once.
			for _, nm := range encoded {
				_, err := js.js.PublishMsgAsync(nm)
				require.NoError(b, err)
			}
			<-js.js.PublishAsyncComplete()

			// Publishing goes to a stream of its own, so that the consumers
			// read exactly nConsume events.
			pubStream, pubPrefix, _ := benchStream(b, tc.urls(b), tc.replicas)
			pubJS := pubStream.js
			pubEncoded := make([]*nats.Msg, nPublish)
			for i, m := range msgs[:nPublish] {
				nm, err := (&wnats.NATSMarshaler{}).Marshal(pubPrefix+".order.created", m)
				require.NoError(b, err)
				pubEncoded[i] = nm
			}
			pub, err := NewPublisher(PublisherConfig{Conn: connect(b, urls), Prefix: pubPrefix})
			require.NoError(b, err)
			b.Cleanup(func() { _ = pub.Close() })

			rate := func(n int, took time.Duration) float64 { return float64(n) / took.Seconds() }
			publishRaw := func() float64 {
				start := time.Now()
				for _, nm := range pubEncoded {
					if _, err := pubJS.PublishMsg(nm); err != nil {
						b.Fatal(err)
					}
				}
				return rate(nPublish, time.Since(start))
			}
			publishArcmill := func() float64 {
				start := time.Now()
				for _, m := range msgs[:nPublish] {
					if err := pub.Publish("", m); err != nil {
						b.Fatal(err)
					}
				}
				return rate(nPublish, time.Since(start))
			}
			group := 0
			consumeRaw := func() float64 {
				group++
				durable := fmt.Sprintf("raw%d", group)
				_, err := js.js.AddConsumer(stream, &nats.ConsumerConfig{Durable: durable,
					DeliverSubject: nats.NewInbox(), DeliverGroup: durable, FilterSubject: prefix + ".>",
					DeliverPolicy: nats.DeliverAllPolicy, AckPolicy: nats.AckExplicitPolicy})
				require.NoError(b, err)
				conn := connect(b, urls)
				defer conn.Close()
				cjs, err := conn.JetStream()
				require.NoError(b, err)
				var got atomic.Int64
				done := make(chan struct{})
				start := time.Now()
				sub, err := cjs.QueueSubscribe(prefix+".>", durable, func(m *nats.Msg) {
					if err := m.AckSync(); err != nil {
						b.Error(err)
					}
					if got.Add(1) == nConsume { // the stream holds exactly nConsume
						close(done)
					}
				}, nats.Bind(stream, durable), nats.ManualAck())
				require.NoError(b, err)
				<-done
				took := time.Since(start)
				require.NoError(b, sub.Unsubscribe())
				return rate(nConsume, took)
			}
			consumeArcmill := func() float64 {
				group++
				sub, err := NewSubscriber(SubscriberConfig{Conn: connect(b, urls), Group: fmt.Sprintf("arc%d", group)})
				require.NoError(b, err)
				defer sub.Close()
				start := time.Now()
				out, err := sub.Subscribe(b.Context(), prefix+".>")
				require.NoError(b, err)
				for range nConsume {
					(<-out).Ack()
				}
				return rate(nConsume, time.Since(start))
			}

			var pubRaw, pubOurs, conRaw, conOurs, pubRatio, conRatio []float64
			for b.Loop() {
				for round := range rounds {
					var pr, po, cr, co float64
					cases := []func(){
						func() { pr = publishRaw() }, func() { po = publishArcmill() },
						func() { cr = consumeRaw() }, func() { co = consumeArcmill() },
					}
					for i := range cases { // raw first in even rounds, arcmill first in odd ones
						cases[i^(round&1)]()
					}
					pubRaw, pubOurs, conRaw, conOurs = append(pubRaw, pr), append(pubOurs, po), append(conRaw, cr), append(conOurs, co)
					pubRatio, conRatio = append(pubRatio, po/pr), append(conRatio, co/cr)
				}
			}
			median := func(v []float64) float64 {
				v = slices.Clone(v)
				slices.Sort(v)
				return v[len(v)/2]
			}
			b.ReportMetric(median(pubRaw), "raw_publish/s")
			b.ReportMetric(median(pubOurs), "publish/s")
			b.ReportMetric(median(pubRatio), "publish_of_raw")
			b.ReportMetric(median(conRaw), "raw_consume/s")
			b.ReportMetric(median(conOurs), "consume/s")
			b.ReportMetric(median(conRatio), "consume_of_raw")
		})
	}
}
