package main

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

func TestRedisInterop(t *testing.T) {
	addr := testenv.RedisAddr(t)
	stream := "arcmill-example:" + uuid.NewString()
	prefix := "arcmill-example-" + uuid.NewString()[:8]
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	t.Cleanup(func() { client.Del(context.Background(), stream, stream+":dlq") })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, addr, stream, "go-billing", prefix), out.String())
	s := out.String()
	assert.Contains(t, s, "Go handler on order.* got: order.created")
	assert.Contains(t, s, "correlation=req-abc user=u-7")
	assert.Contains(t, s, "Arc published on "+prefix+":order.created; Go got order.created")
	assert.Contains(t, s, "to 1 subscriber(s)")

	// What Go wrote is an entry an Arc consumer reads: type + data, Arc JSON.
	assert.Contains(t, s, "dead-lettered to "+stream+":dlq")
	assert.EqualValues(t, 1, client.XLen(context.Background(), stream+":dlq").Val())

	var data string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "  type=order.shipped data=") {
			data = strings.TrimPrefix(line, "  type=order.shipped data=")
		}
	}
	require.NotEmpty(t, data)
	var ev arc.Event
	require.NoError(t, arc.Unmarshal([]byte(data), &ev))
	assert.Equal(t, "go-billing", ev.Meta.Source)
	var generic map[string]any
	require.NoError(t, json.Unmarshal([]byte(data), &generic))
	assert.Equal(t, []string{"meta", "payload", "type"}, keys(generic))
}

func keys(m map[string]any) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
