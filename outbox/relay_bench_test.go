package outbox

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
)

// rawRelayRate drains n seeded rows to Redis the way a hand-written relay
// would, with workers goroutines each looping: BEGIN; SELECT … ORDER BY id
// LIMIT batch (the relay's default, 500) FOR UPDATE SKIP LOCKED; one pipelined XADD of the rows
// (type, and the stored payload bytes as data: no encoding, no checks);
// DELETE … WHERE id = ANY(…); COMMIT. It is the physical reference of
// the relay on PostgreSQL; it returns events per second.
func rawRelayRate(b *testing.B, n, workers, batch int) float64 {
	f := newFixture(b, PostgreSQL, false)
	client, _, stream := benchRedis(b)
	seedOutbox(b, f, stream, n)
	table := f.ob.Table()
	sel := "SELECT id, topic, event_type, payload FROM " + table +
		" WHERE status = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
	del := "DELETE FROM " + table + " WHERE id = ANY($1)"
	ctx := context.Background()
	pass := func() (int, error) {
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		defer func() { _ = tx.Rollback() }()
		rs, err := tx.QueryContext(ctx, sel, batch)
		if err != nil {
			return 0, err
		}
		var ids []int64
		var args []*redis.XAddArgs
		for rs.Next() {
			var id int64
			var topic, typ string
			var payload []byte
			if err := rs.Scan(&id, &topic, &typ, &payload); err != nil {
				rs.Close()
				return 0, err
			}
			ids = append(ids, id)
			args = append(args, &redis.XAddArgs{Stream: topic, ID: "*",
				Values: []any{redisstream.FieldType, typ, redisstream.FieldData, payload}})
		}
		if err := closeRows(rs); err != nil || len(ids) == 0 {
			return 0, err
		}
		if _, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, a := range args {
				p.XAdd(ctx, a)
			}
			return nil
		}); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, del, ids); err != nil {
			return 0, err
		}
		return len(ids), tx.Commit()
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := pass()
				if err != nil {
					errs <- err
					return
				}
				if got == 0 {
					return // the rest is locked by others or gone
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	require.EqualValues(b, n, client.XLen(ctx, stream).Val())
	return float64(n) / elapsed.Seconds()
}

// relayRounds is how many times BenchmarkRelayVsRaw alternates its cases.
const relayRounds = 4

// BenchmarkRelayVsRaw drains a PostgreSQL outbox into Redis with 4
// workers, alternating in each round: the raw loop (rawRelayRate), arcmill's
// relay with its defaults, and Watermill's forwarder over watermill-sql.
// It reports each mean rate, and relay/raw (target ≥ 0.75) and
// relay/forwarder (target ≥ 10) as the median and the worst round. The raw loop writes the
// stored payload as the entry's data (it does not encode an Arc event) and
// deletes rows where the relay marks them delivered. Run with
// -benchtime 1x.
func BenchmarkRelayVsRaw(b *testing.B) {
	const n, fwdN, workers = 15000, 4000, 4
	var raw, relay, fwd, cpu []float64
	for b.Loop() {
		for r := 0; r < relayRounds; r++ {
			// The order turns each round, so that neither loop always
			// runs on a warmer database than the other.
			if r%2 == 0 {
				raw = append(raw, rawRelayRate(b, n, workers, DefaultBatchSize))
				relay = append(relay, relayRate(b, PostgreSQL, n, workers, 0))
			} else {
				relay = append(relay, relayRate(b, PostgreSQL, n, workers, 0))
				raw = append(raw, rawRelayRate(b, n, workers, DefaultBatchSize))
			}
			cpu = append(cpu, float64(lastRelayCPU.Nanoseconds())/1000)
			fwd = append(fwd, forwarderRate(b, PostgreSQL, fwdN))
		}
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	median := func(xs []float64) float64 {
		xs = slices.Sorted(slices.Values(xs))
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	var vsRaw, vsFwd []float64
	for i := range raw {
		vsRaw = append(vsRaw, relay[i]/raw[i])
		vsFwd = append(vsFwd, relay[i]/fwd[i])
		b.Logf("round %d: raw %.0f, relay %.0f (%.2f µs CPU/event in this process), forwarder %.0f events/s",
			i+1, raw[i], relay[i], cpu[i], fwd[i])
	}
	b.ReportMetric(mean(raw), "raw_ev/s")
	b.ReportMetric(mean(relay), "relay_ev/s")
	b.ReportMetric(mean(fwd), "forwarder_ev/s")
	b.ReportMetric(median(cpu), "relay_cpu_µs/ev")
	b.ReportMetric(median(vsRaw), "relay/raw")
	b.ReportMetric(slices.Min(vsRaw), "relay/raw_worst")
	b.ReportMetric(median(vsFwd), "relay/forwarder")
	b.ReportMetric(slices.Min(vsFwd), "relay/fwd_worst")
}

// BenchmarkRelayCPU drains 15,000 rows of a PostgreSQL outbox into Redis
// with 4 workers, 3 times, and reports the median CPU time of this process
// per event (the relay's own cost: claiming, decoding, publishing,
// acknowledging; PostgreSQL's and Redis's are not counted) and the rate.
// Run with -benchtime 1x.
func BenchmarkRelayCPU(b *testing.B) {
	var cpu, rate []float64
	for b.Loop() {
		for range 3 {
			rate = append(rate, relayRate(b, PostgreSQL, 15000, 4, 0))
			cpu = append(cpu, float64(lastRelayCPU.Nanoseconds())/1000)
		}
	}
	slices.Sort(cpu)
	slices.Sort(rate)
	b.ReportMetric(cpu[len(cpu)/2], "cpu_µs/ev")
	b.ReportMetric(rate[len(rate)/2], "ev/s")
}
