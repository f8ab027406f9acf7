package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
)

// lastID is the stream's newest entry id, or "0" when it is empty.
func lastID(ctx context.Context, client *redis.Client, stream string) (string, error) {
	entries, err := client.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil || len(entries) == 0 {
		return "0", err
	}
	return entries[0].ID, nil
}

// Run twice in a row on the same database file and the default stream,
// the session does the same thing each time: the rolled-back create adds
// nothing, and the create, update and delete add exactly their three
// events, in order, with the request's scope and the product's id.
func TestCrudGormRunTwiceDoesTheSameThing(t *testing.T) {
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	dbPath := filepath.Join(t.TempDir(), "crud.db")

	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tip, err := lastID(ctx, client, defaultStream)
		require.NoError(t, err)
		var out bytes.Buffer
		require.NoError(t, run(ctx, &out, "", dbPath, addr, defaultStream), "run %d: %s", i, out.String())
		assert.Contains(t, out.String(), "rolled back: no event", "run %d", i)
		assert.Contains(t, out.String(), "3 events on "+defaultStream, "run %d", i)

		added, err := client.XRange(ctx, defaultStream, "("+tip, "+").Result()
		require.NoError(t, err)
		require.Len(t, added, 3, "run %d: one event per committed write, none for the rollback", i)
		var resourceID string
		for j, want := range []string{"product.created", "product.updated", "product.deleted"} {
			var ev arc.Event
			require.NoError(t, arc.Unmarshal([]byte(added[j].Values["data"].(string)), &ev))
			assert.Equal(t, want, ev.Type, "run %d", i)
			assert.Equal(t, want, added[j].Values["type"], "run %d: Arc's entry layout", i)
			assert.Equal(t, "u-7", ev.Meta.UserID)
			assert.Equal(t, "org-1", ev.Meta.OrganizationID)
			assert.Len(t, ev.Meta.CorrelationID, 36, "the request id")
			if j == 0 {
				resourceID = ev.Meta.ResourceID
			}
			assert.Equal(t, resourceID, ev.Meta.ResourceID)
			var payload struct {
				Operation string
				Data      Product
			}
			require.NoError(t, json.Unmarshal(ev.Payload, &payload))
			assert.Equal(t, "Mug", payload.Data.Name)
		}
		assert.NotEmpty(t, resourceID)
		cancel()
	}
	// run stopped the relay it started: none of the outbox's goroutines is left.
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/outbox", 5*time.Second)
}
