package arc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// nodeDate is one line of testdata/node-dates.golden.json, written by
// testdata/gen-dates.js from Node's own new Date(string).
type nodeDate struct {
	S     string `json:"s"`
	Valid bool   `json:"valid"`
	MS    int64  `json:"ms"`
}

func readNodeDates(t testing.TB) []nodeDate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "node-dates.golden.json"))
	require.NoError(t, err)
	var dates []nodeDate
	require.NoError(t, json.Unmarshal(b, &dates))
	require.NotEmpty(t, dates)
	return dates
}

// TestNodeDateParity checks the V8 port against Node: the same strings are
// Invalid Date, and valid ones give the same instant (Node ran with TZ=UTC).
func TestNodeDateParity(t *testing.T) {
	t.Parallel()
	for _, d := range readNodeDates(t) {
		ms, ok := parseJSDate(d.S)
		if ok != d.Valid {
			t.Errorf("%q: valid = %v, Node says %v", d.S, ok, d.Valid)
			continue
		}
		if ok && ms != d.MS {
			t.Errorf("%q: %d ms, Node says %d", d.S, ms, d.MS)
		}
	}
}
