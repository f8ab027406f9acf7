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
// cases in one run; a ratio is reported for each round's worst.
const publishRounds = 3

// BenchmarkPublishVsRaw publishes the same Arc events in batches of 100,
// one goroutine, alternating in each round:
//
//   - raw: pipelined XADD of the entries' fields, encoded beforehand (the
//     physical limit: no encoding, no checks);
//   - arcmill: Publisher.Publish, encoding each message (arc.FromMessage,
//     arc.Marshal) and checking its size;
//   - pass-through: the same messages with their Arc JSON handed over
//     (AttachArcJSON), as a relay holding the stored bytes would publish;
//   - watermill: watermill-redisstream's publisher, same marshaller.
//
// It reports each rate and the ratios arcmill/raw and pass-through/raw
// (worst round and overall; target ≥ 0.80) and arcmill/watermill. Machine
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
		pairs, err := Marshaller{}.fields(m)
		require.NoError(b, err)
		raw[i] = pairs
		passed[i] = m.Copy()
		AttachArcJSON(passed[i], []byte(pairs[3].(string)))
	}
	ours, err := NewPublisher(PublisherConfig{Client: client, SkipServerCheck: true})
	require.NoError(b, err)
	theirs, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client, Marshaller: Marshaller{}}, watermill.NopLogger{})
	require.NoError(b, err)
	ctx := context.Background()
	timed := func(publish func(stream string, from, to int) error) time.Duration {
		stream := "arcmill-bench:" + uuid.NewString()
		defer client.Del(ctx, stream)
		start := time.Now()
		for i := 0; i < n; i += batch {
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
	var oursVsRaw, passVsRaw []float64
	for b.Loop() {
		for r := 0; r < publishRounds; r++ {
			took := map[string]time.Duration{}
			for _, name := range order {
				took[name] = timed(cases[name])
				total[name] += took[name]
			}
			oursVsRaw = append(oursVsRaw, took["raw"].Seconds()/took["arcmill"].Seconds())
			passVsRaw = append(passVsRaw, took["raw"].Seconds()/took["pass-through"].Seconds())
		}
	}
	events := float64(n * b.N * publishRounds)
	for _, name := range order {
		b.ReportMetric(events/total[name].Seconds(), name+"_ev/s")
	}
	b.ReportMetric(total["raw"].Seconds()/total["arcmill"].Seconds(), "arcmill/raw")
	b.ReportMetric(slices.Min(oursVsRaw), "arcmill/raw_worst")
	b.ReportMetric(total["raw"].Seconds()/total["pass-through"].Seconds(), "pass/raw")
	b.ReportMetric(slices.Min(passVsRaw), "pass/raw_worst")
	b.ReportMetric(total["watermill"].Seconds()/total["arcmill"].Seconds(), "arcmill/watermill")
}

// BenchmarkPublishEncode is the CPU of building one entry: encoding the
// message (arc.FromMessage, arc.Marshal) against checking a handed-over
// Arc JSON (pass-through), for the benchmark's typical event.
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
}
