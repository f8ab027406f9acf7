package crud

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// goldenCase is one line of testdata/crud.golden.json, written by Node
// running Arc's arcCorePlugin hook (testdata/gen-crud.js).
type goldenCase struct {
	Name           string    `json:"name"`
	Op             Operation `json:"op"`
	Resource       string    `json:"resource"`
	Doc            string    `json:"doc"`
	RequestID      string    `json:"requestId"`
	Route          bool      `json:"route"`          // userId went through Arc's route adapter
	UserID         string    `json:"userId"`         // JSON text, "" for undefined
	OrganizationID string    `json:"organizationId"` // JSON text, "" for undefined
	ID             string    `json:"id"`
	Time           string    `json:"time"`
	Want           string    `json:"want"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/crud.golden.json")
	require.NoError(t, err)
	var cases []goldenCase
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.NotEmpty(t, cases)
	return cases
}

func (g goldenCase) change(t *testing.T) Change {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, g.Time)
	require.NoError(t, err)
	user, err := RawValue(json.RawMessage(g.UserID))
	require.NoError(t, err)
	if g.Route {
		user = RouteUserID(user)
	}
	org, err := RawValue(json.RawMessage(g.OrganizationID))
	require.NoError(t, err)
	return Change{Op: g.Op, Resource: g.Resource, Doc: json.RawMessage(g.Doc), ID: g.ID, Time: at,
		Scope: Scope{RequestID: g.RequestID, UserID: user, OrganizationID: org}}
}

// The event of a change is, byte for byte, the event Arc's arcCorePlugin
// publishes for the same document and request: numeric, null, "" and
// object user ids as the hook gets them and as Arc's routes stringify
// them, and organizations absent, "", null, numbers.
func TestGoldenArcBytes(t *testing.T) {
	t.Parallel()
	for _, g := range loadGolden(t) {
		t.Run(g.Name, func(t *testing.T) {
			t.Parallel()
			ev, err := g.change(t).Event()
			require.NoError(t, err)
			got, err := arc.Marshal(ev)
			require.NoError(t, err)
			assert.Equal(t, g.Want, string(got))
		})
	}
}

// A Go struct as the document gives Arc's bytes when its JSON has the
// document's keys in the document's order.
func TestGoldenArcBytes_GoStruct(t *testing.T) {
	t.Parallel()
	type product struct {
		ID    string  `json:"_id"`
		Name  string  `json:"name"`
		Price float64 `json:"price"`
		V     int     `json:"__v"`
	}
	g := loadGolden(t)[0]
	require.Equal(t, "created with _id", g.Name)
	c := g.change(t)
	c.Doc = product{ID: "665f1c2e9b1e8a0012345678", Name: "Mug", Price: 12.5}
	ev, err := c.Event()
	require.NoError(t, err)
	got, err := arc.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, g.Want, string(got))

	// Created is the same event with a fresh id and time.
	ev2, err := Created("product", c.Doc, c.Scope)
	require.NoError(t, err)
	assert.Equal(t, "product.created", ev2.Type)
	assert.NotEmpty(t, ev2.Meta.ID)
	assert.Equal(t, "665f1c2e9b1e8a0012345678", ev2.Meta.ResourceID)
	assert.Equal(t, "req-1", ev2.Meta.CorrelationID)
}
