package outbox

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetadataCodec(t *testing.T) {
	t.Parallel()
	md := message.Metadata{"arc_type": "order.created", "q": `say "hi"\n`, "ctl": "a\tb", "html": "<&>",
		"uni": "héllo ✓", "": "empty key", "bad": "\xff\xfe"}
	b := appendMetadata(nil, md)
	var viaJSON map[string]string
	require.NoError(t, json.Unmarshal(b, &viaJSON), "valid JSON: %s", b)
	got, err := decodeMetadata(b)
	require.NoError(t, err)
	assert.Equal(t, md, got)
	assert.Equal(t, "\xff\xfe", got["bad"], "invalid UTF-8 keeps its bytes")
	assert.Equal(t, "//4=", viaJSON["arcmill_outbox_b64:bad"], "as base64 under a reserved key")
	std, err := json.Marshal(map[string]string{"b": "1", "a": "2"})
	require.NoError(t, err)
	assert.Equal(t, string(std), string(appendMetadata(nil, message.Metadata{"b": "1", "a": "2"})), "sorted, compact")

	for _, in := range []string{`{ "a" : "b" }`, `{"a":"\u0041"}`, `null`, `{}`} {
		_, err := decodeMetadata([]byte(in))
		assert.NoError(t, err, in)
	}
	for _, in := range []string{``, `{`, `{"a":1}`, `[]`, `{"a":"b"`, `{"a":"b"}x`, `{"a""b"}`, "{\"a\":\"\x01\"}"} {
		_, err := decodeMetadata([]byte(in))
		assert.Error(t, err, in)
	}
}

// FuzzDecodeMetadata: the stored metadata decoder agrees with
// encoding/json on every input without the reserved base64 keys, never
// panics, and reads back exactly what appendMetadata writes.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"a":"b","c":"d"}`, `{"a":"\n"}`, `{ "a":"b"}`, `{"a":1}`, `null`,
		"{\"a\":\"\xff\"}", `{"a":"b","a":"c"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeMetadata(data)
		if bytes.Contains(data, []byte("arcmill_outbox_b64")) {
			return // reserved keys: base64 that encoding/json does not decode
		}
		var want map[string]string
		werr := json.Unmarshal(data, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: decodeMetadata error %v, encoding/json error %v", data, err, werr)
		}
		if err != nil {
			return
		}
		if want == nil {
			want = map[string]string{}
		}
		if len(got) != len(want) {
			t.Fatalf("%q: got %v, want %v", data, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%q: key %q: got %q, want %q", data, k, got[k], v)
			}
		}
		again, err := decodeMetadata(appendMetadata(nil, got))
		if err != nil || len(again) != len(got) {
			t.Fatalf("round trip of %v: %v %v", got, again, err)
		}
		for k, v := range got {
			if again[k] != v {
				t.Fatalf("round trip of %q: %q, want %q", k, again[k], v)
			}
		}
	})
}
