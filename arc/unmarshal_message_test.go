package arc

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// diffLimits are the limits the differential checks read under: the
// defaults, tight ones, and ones that take values deeper than a write
// takes (where ToMessage refuses what Unmarshal read).
var diffLimits = []Limits{{}, {MaxDepth: 3, MaxTypeBytes: 5}, {MaxDepth: 1}, {MaxDepth: NoLimit, MaxTypeBytes: NoLimit},
	{MaxDepth: hardMaxDepth}, {MaxDepth: hardMaxDepth + 1}, {MaxDepth: hardMaxDepth + 2}}

// checkSameAsToMessage checks that Unmarshal and UnmarshalEventMessage
// give what Unmarshal in two passes over meta (unmarshal without
// oneMetaPass), then ToMessage, give: the same event, message and error.
func checkSameAsToMessage(t *testing.T, l Limits, data []byte) {
	t.Helper()
	var want, got0 Event
	err1 := l.unmarshal(data, &want, false)
	if err0 := l.Unmarshal(data, &got0); !reflect.DeepEqual(err0, err1) || !reflect.DeepEqual(got0, want) {
		t.Fatalf("%+v %q: Unmarshal gives %v %#v, want %v %#v", l, data, err0, got0, err1, want)
	}
	var msg1 *message.Message
	if err1 == nil {
		msg1, err1 = ToMessage(want)
	}
	var got Event
	msg2, err2 := l.UnmarshalEventMessage(data, &got, 1)
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("%+v %q: error %v, want %v", l, data, err2, err1)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v %q: event %#v, want %#v", l, data, got, want)
	}
	if err1 != nil {
		if err1.Error() != err2.Error() || !reflect.DeepEqual(err1, err2) ||
			errors.Is(err1, ErrMalformedEvent) != errors.Is(err2, ErrMalformedEvent) ||
			errors.Is(err1, ErrInvalidEvent) != errors.Is(err2, ErrInvalidEvent) {
			t.Fatalf("%+v %q: error %v, want %v", l, data, err2, err1)
		}
		if msg2 != nil {
			t.Fatalf("%+v %q: a message with the error", l, data)
		}
		return
	}
	if msg2.UUID != msg1.UUID || !reflect.DeepEqual(msg2.Payload, msg1.Payload) ||
		!reflect.DeepEqual(msg2.Metadata, msg1.Metadata) {
		t.Fatalf("%+v %q: message %q %q %v, want %q %q %v", l, data,
			msg2.UUID, msg2.Payload, msg2.Metadata, msg1.UUID, msg1.Payload, msg1.Metadata)
	}
}

// diffCorpus is the package's test inputs: the fuzz seeds and stored
// corpora, Arc's golden events, and deep values around the bounds.
func diffCorpus(t testing.TB) [][]byte {
	var out [][]byte
	for _, s := range append(fuzzSeeds, contractExample, typicalEvent, smallEvent) {
		out = append(out, []byte(s))
	}
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			for _, p := range []string{"[]byte(", "string("} {
				if q, ok := strings.CutPrefix(line, p); ok {
					if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
						out = append(out, []byte(s))
					}
				}
			}
		}
	}
	for _, c := range readArcGoldens(t) {
		out = append(out, []byte(c.Want))
		if c.Parent != "" {
			out = append(out, []byte(c.Parent))
		}
	}
	for _, n := range []int{hardMaxDepth - 2, hardMaxDepth - 1, hardMaxDepth, hardMaxDepth + 1, hardMaxDepth + 2} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		out = append(out,
			[]byte(`{"type":"t","payload":`+deep+`,"meta":{"id":"1"}}`),
			[]byte(`{"type":"t","meta":{"id":"1","x":`+deep+`}}`),
			[]byte(`{"type":"t","meta":{"id":"1","timestamp":`+deep+`}}`))
	}
	return out
}

// TestUnmarshalEventMessageIsUnmarshalThenToMessage: the adapters' entry
// point changes nothing, over the package's inputs and every Limits.
func TestUnmarshalEventMessageIsUnmarshalThenToMessage(t *testing.T) {
	corpus := diffCorpus(t)
	ok := 0
	for _, l := range diffLimits {
		for _, data := range corpus {
			checkSameAsToMessage(t, l, data)
			if l.Unmarshal(data, new(Event)) == nil {
				ok++
			}
		}
	}
	require.Greater(t, ok, 300, "too few inputs decode")
}

// FuzzUnmarshalEventMessage: the same, for any input.
func FuzzUnmarshalEventMessage(f *testing.F) {
	for _, data := range diffCorpus(f) {
		if len(data) < 4096 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range diffLimits {
			checkSameAsToMessage(t, l, data)
		}
	})
}
