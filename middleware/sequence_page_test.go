package middleware

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// parkedFixture parks keys for three handlers: ("g","a") 130 keys,
// ("g","b") 120, ("h","a") 5, three keys to a millisecond (ties in the
// index, sorted by key), parked in an order other than List's. It returns
// each handler's keys in List's order.
func parkedFixture(t *testing.T, client redis.UniversalClient, prefix string) map[[2]string][]string {
	t.Helper()
	ctx := context.Background()
	want := map[[2]string][]string{}
	base := time.UnixMilli(1_700_000_000_000)
	for _, h := range []struct {
		gh [2]string
		n  int
	}{{[2]string{"h", "a"}, 5}, {[2]string{"g", "b"}, 120}, {[2]string{"g", "a"}, 130}} {
		st := newSequenceStore(client, prefix, h.gh[0], h.gh[1])
		for i := range h.n {
			key := fmt.Sprintf("k%03d", i)
			ok, err := st.park(ctx, key, "e-"+key, []byte(`{"eventId":"e-`+key+`"}`), base.Add(time.Duration(i/3)*time.Millisecond))
			require.NoError(t, err)
			require.True(t, ok)
			want[h.gh] = append(want[h.gh], key)
		}
	}
	return want
}

// ids names sequences as "group/handler/key".
func ids(seqs []ParkedSequence) []string {
	out := make([]string, 0, len(seqs))
	for _, s := range seqs {
		out = append(out, s.Group+"/"+s.Handler+"/"+s.Key)
	}
	return out
}

func idsOf(want map[[2]string][]string, ghs ...[2]string) []string {
	var out []string
	for _, gh := range ghs {
		for _, k := range want[gh] {
			out = append(out, gh[0]+"/"+gh[1]+"/"+k)
		}
	}
	return out
}

// Pages of parked sequences, across handlers, concatenate to the whole
// list in List's order, each with the total; a filter pages its own keys.
func TestParkedPages(t *testing.T) {
	client, prefix := seqRedis(t, "parkedpages")
	parkedPages(t, client, prefix)
}

// The same on a Redis Cluster, where each handler's keys live on the node
// of its hash tag.
func TestParkedPagesOnCluster(t *testing.T) {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisClusterAddrs(t)})
	prefix := "arcmill-test:parkedpages:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		assert.NoError(t, client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			keys, err := c.Keys(ctx, prefix+"*").Result()
			for _, k := range keys {
				c.Del(ctx, k)
			}
			return err
		}))
		_ = client.Close()
	})
	parkedPages(t, client, prefix)
}

func parkedPages(t *testing.T, client redis.UniversalClient, prefix string) {
	ctx := context.Background()
	want := parkedFixture(t, client, prefix)
	ga, gb, ha := [2]string{"g", "a"}, [2]string{"g", "b"}, [2]string{"h", "a"}
	all := idsOf(want, ga, gb, ha)
	admin := SequenceAdmin{Client: client, Prefix: prefix, chunk: 7} // chunks that end inside ties

	seqs, err := admin.List(ctx, ParkedFilter{})
	require.NoError(t, err)
	require.Equal(t, all, ids(seqs), "List, read in chunks")

	for _, size := range []int{25, 100, 130, 7} {
		var got []string
		for off := 0; ; off += size {
			p, err := admin.ListPage(ctx, ParkedFilter{Offset: off, Limit: size})
			require.NoError(t, err)
			assert.EqualValues(t, len(all), p.Total, "offset %d", off)
			if off >= len(all) {
				assert.Empty(t, p.Sequences)
				break
			}
			require.Len(t, p.Sequences, min(size, len(all)-off), "offset %d", off)
			got = append(got, ids(p.Sequences)...)
		}
		assert.Equal(t, all, got, "pages of %d", size)
	}

	// From a rank on to the end, in chunks.
	p, err := admin.ListPage(ctx, ParkedFilter{Offset: 11})
	require.NoError(t, err)
	assert.Equal(t, all[11:], ids(p.Sequences))

	// A filter pages, and counts, its own keys.
	p, err = admin.ListPage(ctx, ParkedFilter{Handler: "a", Offset: 120, Limit: 10})
	require.NoError(t, err)
	assert.EqualValues(t, 135, p.Total)
	assert.Equal(t, idsOf(want, ga, ha)[120:130], ids(p.Sequences))
	p, err = admin.ListPage(ctx, ParkedFilter{Group: "g", Handler: "b", Offset: 100, Limit: 50})
	require.NoError(t, err)
	assert.EqualValues(t, 120, p.Total)
	assert.Equal(t, idsOf(want, gb)[100:], ids(p.Sequences))
	p, err = admin.ListPage(ctx, ParkedFilter{Key: "k001", Offset: 1, Limit: 1})
	require.NoError(t, err)
	assert.EqualValues(t, 3, p.Total)
	assert.Equal(t, []string{"g/b/k001"}, ids(p.Sequences))
	assert.Equal(t, "e-k001", p.Sequences[0].Head.EventID)
}

// A walk goes on from where it was when keys it has shown leave the index
// (released and drained, or discarded) between its chunks: it skips none.
func TestParkedWalkSkipsNoneAsKeysLeave(t *testing.T) {
	client, prefix := seqRedis(t, "parkedwalk")
	ctx := context.Background()
	want := parkedFixture(t, client, prefix)
	admin := SequenceAdmin{Client: client, Prefix: prefix, chunk: 7}
	st := newSequenceStore(client, prefix, "g", "a")
	var got []string
	total, err := admin.Each(ctx, ParkedFilter{Group: "g", Handler: "a", Offset: 3}, func(s ParkedSequence) error {
		got = append(got, s.Key)
		if len(got)%5 == 0 { // behind the walk: the one it just showed
			n, err := st.discard(ctx, s.Key)
			require.NoError(t, err)
			require.GreaterOrEqual(t, n, int64(0))
		}
		return nil
	})
	require.NoError(t, err)
	assert.EqualValues(t, 130, total)
	assert.Equal(t, want[[2]string{"g", "a"}][3:], got)
}

// commandLog records the commands a client sends, pipelined or not.
type commandLog struct {
	mu   sync.Mutex
	cmds [][]any
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			l.add(c)
		}
		return next(ctx, cmds)
	}
}

func (l *commandLog) add(c redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = append(l.cmds, c.Args())
}

func (l *commandLog) named(name string) [][]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]any
	for _, c := range l.cmds {
		if strings.EqualFold(fmt.Sprint(c[0]), name) {
			out = append(out, c)
		}
	}
	return out
}

// A page reads its own keys, and ranges over the index's window only:
// not every key parked.
func TestParkedPageReadsOnlyItsKeys(t *testing.T) {
	client, prefix := seqRedis(t, "parkedread")
	parkedFixture(t, client, prefix)
	log := &commandLog{}
	client.AddHook(log)
	p, err := SequenceAdmin{Client: client, Prefix: prefix}.ListPage(context.Background(), ParkedFilter{Offset: 120, Limit: 20})
	require.NoError(t, err)
	require.Len(t, p.Sequences, 20)
	assert.EqualValues(t, 255, p.Total)
	assert.Len(t, log.named("hgetall"), 20, "one state read a key of the page")
	assert.Len(t, log.named("zcard"), 3+20, "one count a handler, one a key of the page")
	var ranges []string
	for _, c := range log.named("zrange") {
		ranges = append(ranges, fmt.Sprint(c[1:]))
	}
	// ("g","a") from rank 120 (its last 10), then 10 of ("g","b").
	assert.Equal(t, []string{
		fmt.Sprintf("[%s 120 139 withscores]", sequenceBase(prefix, "g", "a")+"index"),
		fmt.Sprintf("[%s 0 9 withscores]", sequenceBase(prefix, "g", "b")+"index"),
	}, ranges)
}
