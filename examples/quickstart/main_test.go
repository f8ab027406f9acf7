package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Run twice in a row, the quickstart does the same thing: it needs no
// server and keeps nothing (its SQLite file is a fresh temporary one).
func TestQuickstartRunTwiceDoesTheSameThing(t *testing.T) {
	for i := 1; i <= 2; i++ {
		t.Run(fmt.Sprintf("run %d", i), checkQuickstartRun)
	}
}

func checkQuickstartRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out))

	// Every JSON line is an Arc event; together they form one causal chain.
	var events []arc.Event
	for _, line := range strings.Split(out.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "{\"type\"") {
			var ev arc.Event
			require.NoError(t, arc.Unmarshal([]byte(line), &ev), line)
			events = append(events, ev)
		}
	}
	require.Len(t, events, 4)
	wantTypes := []string{"order.created", "payment.requested", "payment.captured", "receipt.sent"}
	root := events[0]
	for i, ev := range events {
		assert.Equal(t, wantTypes[i], ev.Type)
		assert.Equal(t, "u-7", ev.Meta.UserID, "user inherited down the chain")
		if i > 0 {
			assert.Equal(t, events[i-1].Meta.ID, ev.Meta.CausationID)
			assert.Equal(t, root.Meta.ID, ev.Meta.CorrelationID)
			assert.Empty(t, ev.Meta.ResourceID, "resource is not inherited")
		}
	}
	assert.Contains(t, out.String(), "*          saw 4 events")
	assert.Contains(t, out.String(), "payment.*  saw payment.requested, payment.captured")
	assert.Contains(t, out.String(), "attempt 1 failed (SMTP server unreachable), retrying in")
	assert.Contains(t, out.String(), "attempt 2 failed (SMTP server unreachable), retrying in")
	assert.Contains(t, out.String(), "reason=retry_exhausted attempts=3 handler=mailer pattern=receipt.*")
	assert.Contains(t, out.String(), `not published to "arc.events"`)
	assert.Contains(t, out.String(), `event "order.created" v1: /total: minimum: got -5, want 0`)
	assert.Equal(t, 1, root.Meta.SchemaVersion, "stamped by the definition")
	assert.Contains(t, out.String(), "relay: relayed=1 attempted=1 publishFailed=0")
	assert.Contains(t, out.String(), "Causation chain:")
	assert.Contains(t, out.String(), "└─ receipt.sent")
}
