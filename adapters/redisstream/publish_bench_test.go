package redisstream

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// publishRounds is how many times BenchmarkPublishVsRaw alternates its
// cases in one run: short rounds, so that load from other processes falls
// on every case alike. The median and the worst round's ratio are reported.
const publishRounds = 10

// BenchmarkPublishVsRaw publishes the same Arc events in batches of 100,
// one goroutine, alternating in each round:
//
//   - raw: pipelined XADD of the entries' fields, encoded beforehand (the
//     physical limit: no encoding, no checks);
//   - arcmill: Publisher.Publish, encoding each message
//     (arc.AppendMessageJSON) and checking its size;
//   - pass-through: the same messages with their Arc JSON handed over
//     (AttachArcJSON), as a relay holding the stored bytes would publish;
//   - watermill: watermill-redisstream's publisher, same marshaller.
//
// It reports each rate and the ratios arcmill/raw and pass-through/raw
// (median and worst round; target ≥ 0.80) and arcmill/watermill. Machine
// load moves absolute rates; the ratios come from one run, the cases
// alternating. Run with -benchtime 1x.
func BenchmarkPublishVsRaw(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer client.Close()
	const n, batch = 10000, 100
	msgs := benchEvents(b, n)
	raw := make([][]any, n)
	passed := make([]*message.Message, n)
	for i, m := range msgs {
		ev, err := arc.FromMessage(m)
		require.NoError(b, err)
		data, err := arc.Marshal(ev)
		require.NoError(b, err)
		raw[i] = []any{FieldType, ev.Type, FieldData, data}
		passed[i] = m.Copy()
		AttachArcJSON(passed[i], data)
	}
	ours, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true})
	require.NoError(b, err)
	theirs, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client, Marshaller: Marshaller{}}, watermill.NopLogger{})
	require.NoError(b, err)
	ctx := context.Background()
	// Watermill's publisher, one XADD round trip per message, gets a fifth
	// of the events: its rate does not depend on how many.
	count := map[string]int{"raw": n, "arcmill": n, "pass-through": n, "watermill": n / 5}
	timed := func(name string, publish func(stream string, from, to int) error) time.Duration {
		stream := "arcmill-bench:" + uuid.NewString()
		defer client.Del(ctx, stream)
		start := time.Now()
		for i := 0; i < count[name]; i += batch {
			if err := publish(stream, i, min(i+batch, n)); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	cases := map[string]func(stream string, from, to int) error{
		"raw": func(stream string, from, to int) error {
			_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, pairs := range raw[from:to] {
					p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: pairs, ID: "*"})
				}
				return nil
			})
			return err
		},
		"arcmill":      func(stream string, from, to int) error { return ours.Publish(stream, msgs[from:to]...) },
		"pass-through": func(stream string, from, to int) error { return ours.Publish(stream, passed[from:to]...) },
		"watermill":    func(stream string, from, to int) error { return theirs.Publish(stream, msgs[from:to]...) },
	}
	order := []string{"raw", "arcmill", "pass-through", "watermill"}
	total := map[string]time.Duration{}
	var oursVsRaw, passVsRaw, oursVsTheirs []float64
	for b.Loop() {
		for r := 0; r < publishRounds; r++ {
			rate := map[string]float64{}
			for _, name := range order {
				took := timed(name, cases[name])
				total[name] += took
				rate[name] = float64(count[name]) / took.Seconds()
			}
			oursVsRaw = append(oursVsRaw, rate["arcmill"]/rate["raw"])
			passVsRaw = append(passVsRaw, rate["pass-through"]/rate["raw"])
			oursVsTheirs = append(oursVsTheirs, rate["arcmill"]/rate["watermill"])
		}
	}
	for _, name := range order {
		b.ReportMetric(float64(count[name]*b.N*publishRounds)/total[name].Seconds(), name+"_ev/s")
	}
	b.ReportMetric(median(oursVsRaw), "arcmill/raw")
	b.ReportMetric(slices.Min(oursVsRaw), "arcmill/raw_worst")
	b.ReportMetric(median(passVsRaw), "pass/raw")
	b.ReportMetric(slices.Min(passVsRaw), "pass/raw_worst")
	b.ReportMetric(median(oursVsTheirs), "arcmill/watermill")
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// BenchmarkPublishEncode is the CPU of building one entry: encoding the
// message (arc.AppendMessageJSON, through Marshaller.Marshal's path)
// against checking a handed-over Arc JSON (pass-through), for the
// benchmark's typical event; and Publish's building of a call's 100
// entries (batch100, an op being the batch; ns/event), encoded into the
// pooled batch, nothing sent.
func BenchmarkPublishEncode(b *testing.B) {
	msg := benchEvents(b, 1)[0]
	ev, err := arc.FromMessage(msg)
	require.NoError(b, err)
	data, err := arc.Marshal(ev)
	require.NoError(b, err)
	passed := msg.Copy()
	AttachArcJSON(passed, data)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (Marshaller{}).fields(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pass-through", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (Marshaller{}).fields(passed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch100", func(b *testing.B) {
		msgs := benchEvents(b, 100)
		client := redis.NewClient(&redis.Options{}) // never dialled: nothing is sent
		defer client.Close()
		pub, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true})
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			batch, err := pub.entries("arcmill-bench", msgs)
			if err != nil {
				b.Fatal(err)
			}
			batch.release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
	})
}
