package arc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// arcGolden is one case of testdata/events.golden.json, written by
// testdata/gen-events.js with Arc's createEvent / createChildEvent and
// JSON.stringify.
type arcGolden struct {
	Name    string      `json:"name"`
	Type    string      `json:"type"`
	Payload string      `json:"payload"`
	Meta    [][2]string `json:"meta"`
	Parent  string      `json:"parent"`
	Want    string      `json:"want"`
}

func readArcGoldens(t *testing.T) []arcGolden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "events.golden.json"))
	require.NoError(t, err)
	var cases []arcGolden
	require.NoError(t, json.Unmarshal(b, &cases))
	require.NotEmpty(t, cases)
	return cases
}

// TestArcGoldenEvents: NewEvent and NewChild write the bytes Arc's
// createEvent and createChildEvent give for the same call, key order
// included; and what Arc writes is read and written back unchanged, also
// through a Watermill message.
func TestArcGoldenEvents(t *testing.T) {
	t.Parallel()
	for _, c := range readArcGoldens(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			var meta Meta
			for _, kv := range c.Meta {
				require.NoError(t, meta.decodeField([]byte(kv[0]), []byte(kv[1])))
			}
			var ev Event
			var err error
			if c.Parent == "" {
				ev, err = NewEvent(c.Type, json.RawMessage(c.Payload), meta)
			} else {
				ev, err = NewChild(mustUnmarshal(t, c.Parent), c.Type, json.RawMessage(c.Payload), meta)
			}
			require.NoError(t, err)
			assert.Equal(t, c.Want, mustMarshal(t, ev), "built in Go")

			read := mustUnmarshal(t, c.Want)
			assert.Equal(t, c.Want, mustMarshal(t, read), "read and written back")
			msg, err := ToMessage(read)
			require.NoError(t, err)
			back, err := FromMessage(msg)
			require.NoError(t, err)
			assert.Equal(t, c.Want, mustMarshal(t, back), "through a message")
			assert.True(t, back.Equal(read))
		})
	}
}
