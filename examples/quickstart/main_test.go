package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
	var events []arc.Event
	require.NoError(t, story(ctx, &out, &events))

	// It reads on a 100-column terminal.
	for _, line := range strings.Split(out.String(), "\n") {
		assert.LessOrEqual(t, utf8.RuneCountInString(line), width, line)
	}
	// The events printed form one causal chain.
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
	assert.Contains(t, out.String(), "payment.*  saw payment.captured, payment.requested")
	assert.Contains(t, out.String(), "attempt 1 failed (SMTP server unreachable), retrying in")
	assert.Contains(t, out.String(), "attempt 2 failed (SMTP server unreachable), retrying in")
	assert.Contains(t, out.String(), "reason=retry_exhausted attempts=3\n    handler=mailer pattern=receipt.*")
	// The first event in full, as Arc JSON; the definition and its schema.
	var first string
	for _, line := range strings.Split(out.String(), "\n") {
		if line == "  {" || first != "" {
			first += line + "\n"
			if line == "  }" {
				break
			}
		}
	}
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, []byte(first)), first)
	var root0 arc.Event
	require.NoError(t, arc.Unmarshal(compact.Bytes(), &root0), first)
	assert.True(t, events[0].Equal(root0), "the first event printed in full")
	assert.Contains(t, out.String(), "order.created v1: An order was placed")
	assert.Contains(t, out.String(), `"minimum": 0`)
	assert.Contains(t, out.String(), `not published to "arc.events"`)
	assert.Contains(t, out.String(), `event "order.created" v1:`)
	assert.Contains(t, out.String(), "/total: minimum: got -5, want 0")
	assert.Equal(t, 1, root.Meta.SchemaVersion, "stamped by the definition")
	assert.Contains(t, out.String(), "relay: relayed=1 attempted=1 publishFailed=0")
	assert.Contains(t, out.String(), "Causation chain:")
	assert.Contains(t, out.String(), "└─ receipt.sent")
}
