package redisstream

import (
	"context"
	"errors"
	"fmt"
	"github.com/arcmill/arcmill/internal/testenv"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// xadd appends an entry of the given fields and returns its id.
func (b *bundle) xadd(fields ...string) string {
	b.t.Helper()
	args := []any{"XADD", b.stream, "*"}
	for _, f := range fields {
		args = append(args, f)
	}
	id, err := b.client.Do(context.Background(), args...).Text()
	require.NoError(b.t, err)
	return id
}

// retryCounts returns the delivery count of each of the group's pending
// entries.
func (b *bundle) retryCounts(group string) map[string]int64 {
	b.t.Helper()
	pending, err := b.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: b.stream, Group: group,
		Start: "-", End: "+", Count: 1000}).Result()
	require.NoError(b.t, err)
	out := map[string]int64{}
	for _, p := range pending {
		out[p.ID] = p.RetryCount
	}
	return out
}

// A bounded read brings whole entries up to the batch budget and only the
// ids of the rest, which it leaves pending to the consumer with one
// delivery; fetching them by id, in order, brings them within the budget
// again, never counts a delivery, and reports an entry deleted meanwhile
// without fields. An oversized entry comes cut, wherever it stands.
func TestBoundedRead_DefersWhatIsOverTheBudgetAndFetchesItInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, b.client.XGroupCreateMkStream(ctx, b.stream, "g", "0").Err())
	var ids, values []string
	for i := 0; i < 10; i++ {
		v := fmt.Sprintf("%d:%s", i, strings.Repeat("v", 40<<10))
		if i == 5 {
			v = strings.Repeat("o", 300<<10) // over the entry limit below
		}
		ids, values = append(ids, b.xadd("type", "t", "data", v)), append(values, v)
	}
	r := &boundedReader{client: b.client, stream: b.stream, group: "g", consumer: "me", maxEntry: 200 << 10,
		budget: 100 << 10}

	got, err := r.read(ctx, ">", 100)
	require.NoError(t, err)
	require.Len(t, got, 10, "every entry of the batch is read, and pending to the consumer")
	for i, e := range got {
		assert.Equal(t, ids[i], e.ID)
		if i < 2 {
			assert.Equal(t, []string{"type", "t", "data", values[i]}, e.Fields, "within the budget: whole")
			assert.False(t, e.deferred)
		} else {
			assert.True(t, e.deferred, "over the budget: id only")
			assert.Nil(t, e.Fields)
		}
	}
	for _, id := range ids {
		assert.Equal(t, int64(1), b.retryCounts("g")[id], "one delivery each")
	}

	require.NoError(t, b.client.XDel(ctx, b.stream, ids[9]).Err())
	rest := got[2:]
	for rest[0].deferred {
		fetched, err := r.fetch(ctx, idsOf(rest))
		require.NoError(t, err)
		require.Len(t, fetched, len(rest))
		copy(rest, fetched)
		for len(rest) > 0 && !rest[0].deferred {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
	}
	for i, e := range got {
		switch {
		case i == 5:
			assert.Equal(t, len("typetdata")+len(values[5]), e.size(), "the oversized entry keeps its size")
			assert.Equal(t, []string{"type", "t", "data", values[5][:excerptBytes]}, e.Fields, "and comes cut")
		case i == 9:
			assert.Empty(t, e.Fields, "deleted while pending: no fields")
			assert.False(t, e.deferred)
		default:
			assert.Equal(t, []string{"type", "t", "data", values[i]}, e.Fields, "entry %d whole, in order", i)
		}
	}
	counts := b.retryCounts("g")
	for _, id := range ids[:9] {
		assert.Equal(t, int64(1), counts[id], "fetching counts no delivery")
	}

	// A claim is bounded the same way: an oversized entry comes cut.
	claimer := &boundedReader{client: b.client, stream: b.stream, group: "g", consumer: "other", maxEntry: 200 << 10,
		budget: 100 << 10}
	claimed, err := claimer.claim(ctx, 0, []string{ids[5], ids[6]})
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	assert.Equal(t, values[5][:excerptBytes], claimed[0].Fields[3])
	assert.Equal(t, values[6], claimed[1].Fields[3])
	assert.Equal(t, int64(2), b.retryCounts("g")[ids[5]], "a claim counts a delivery, as XCLAIM does")
}

// heapPeak samples the Go heap until stop, and returns the highest
// HeapAlloc it saw.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// Under the default configuration, a stream holding 20 entries of 10 MB
// (200 MB) between ordinary events costs the consumer a small fraction of
// that in Go heap: the big entries never cross the network whole. Each is
// dead-lettered once, with an excerpt, and the events around them are
// handled in order. (Not parallel: it measures the process's heap.)
func TestBoundedRead_HugeEntriesLeaveTheHeapFlat(t *testing.T) {
	// A private server: scripts over 200 MB of entries hold Redis for
	// seconds, which would time out other packages' tests on the shared one.
	addr, _ := testenv.PrivateRedis(t)
	b := setupAt(t, addr)
	const huge, count = 10 << 20, 20
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(t, err)
	publish := func(typ string, n int) {
		for i := 0; i < n; i++ {
			ev, err := arc.NewEvent(typ, map[string]int{"i": i}, arc.Meta{})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(b.stream, msg))
		}
	}
	publish("order.before", 2)
	bigIDs := map[string]bool{}
	big := strings.Repeat("x", huge)
	for i := 0; i < count; i++ {
		bigIDs[b.xadd("type", "order.big", "data", big)] = true
	}
	excerpt := big[:excerptBytes]
	big = ""
	publish("order.after", 3)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop := heapPeak()
	stopped := false
	t.Cleanup(func() { // a failed wait below must not leave the sampler to the next test's leak check
		if !stopped {
			stop()
		}
	})
	var mu sync.Mutex
	var handled []string
	// One at a time: the order checked is the read's, across distinct keys.
	sub := b.subscriber(SubscriberConfig{MaxInFlight: 1})
	b.routedDeadLettersFunc(sub, func(ev arc.Event) {
		mu.Lock()
		handled = append(handled, ev.Type+string(ev.Payload))
		mu.Unlock()
	})
	// 200 MB through scripts: seconds alone, a minute or more beside make
	// test's other packages on two cores.
	if !assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 5 && b.xlen(b.dlq) == count && b.pending("g") == 0
	}, 18*testWait, 10*time.Millisecond) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after %s: %d of 5 events handled, %d of %d dead letters, %d pending", 18*testWait, len(handled),
			b.xlen(b.dlq), count, b.pending("g"))
	}
	peak, stopped := stop(), true
	growth := int64(peak) - int64(base)
	t.Logf("heap: base %d MB, peak %d MB, growth %d MB for %d MB of entries", base>>20, peak>>20, growth>>20,
		count*huge>>20)
	assert.Less(t, growth, int64(32<<20), "one read holds about MaxBatchBytes, not the batch")

	mu.Lock()
	assert.Equal(t, []string{`order.before{"i":0}`, `order.before{"i":1}`, `order.after{"i":0}`, `order.after{"i":1}`,
		`order.after{"i":2}`}, handled, "the events around the big entries, in order")
	mu.Unlock()
	dead, err := RangeEntries(context.Background(), b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, e := range dead {
		dl := mustDeadLetter(t, e)
		seen[dl.OriginalID]++
		assert.True(t, bigIDs[dl.OriginalID], "only the big entries are dead-lettered")
		assert.Contains(t, dl.Envelope.Error.Message, "over MaxEntryBytes")
		assert.Equal(t, int64(len("type")+len("order.big")+len("data")+huge), dl.Truncated)
		assert.Equal(t, []string{"type", "order.big", "data", excerpt}, dl.RawFields, "with an excerpt")
	}
	assert.Len(t, seen, count)
	for id, n := range seen {
		assert.Equal(t, 1, n, "dead-lettered once: %s", id)
	}
}

// loseReply runs the first bounded read of new entries and then reports a
// timeout, as a client whose read timeout a slow script outlasted sees it:
// the entries are in the group's pending list, the reply is lost.
type loseReply struct{ armed atomic.Bool }

func (l *loseReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *loseReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (l *loseReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		err := next(ctx, cmd)
		if len(args) > 1 && args[1] == boundedReadScript.Hash() && fmt.Sprint(args[len(args)-1]) == ">" &&
			l.armed.CompareAndSwap(true, false) {
			cmd.SetErr(errors.New("test: i/o timeout"))
			return cmd.Err()
		}
		return err
	}
}

// A read whose reply is lost after Redis ran it (a timeout) has taken its
// entries into the group's pending list for this consumer: the consumer
// delivers them, in order and once, at its next turn, not after ClaimIdle.
func TestBoundedRead_LostReplyIsRecoveredInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish("order.placed", 3)
	hook := &loseReply{}
	hook.armed.Store(true)
	client := redis.NewClient(&redis.Options{Addr: b.client.Options().Addr})
	client.AddHook(hook)
	t.Cleanup(func() { _ = client.Close() })
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", BlockTime: testBlockTime,
		ClaimInterval: None})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(context.Background(), b.stream)
	require.NoError(t, err)
	for _, id := range ids {
		select {
		case m := <-msgs:
			assert.Equal(t, id, m.Metadata.Get(MetadataEntryID), "in order")
			m.Ack()
		case <-time.After(testWait):
			t.Fatal("the entries of the lost reply were not delivered")
		}
	}
	assert.False(t, hook.armed.Load(), "a reply was lost")
	require.Eventually(t, func() bool { return b.pending("g") == 0 }, testWait, 5*time.Millisecond)
	b.publish("order.placed", 1)
	select {
	case m := <-msgs:
		assert.NotContains(t, ids, m.Metadata.Get(MetadataEntryID), "nothing delivered twice")
		m.Ack()
	case <-time.After(testWait):
		t.Fatal("the consumer did not go on reading")
	}
}
