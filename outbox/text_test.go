package outbox

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

// The stored form of a string is text every dialect keeps and compares
// as it is (valid UTF-8, no NUL, no trailing space), it reads back as the
// string, and two distinct strings never share one.
func TestColumnTextRoundTripsAndNeverCollides(t *testing.T) {
	t.Parallel()
	in := []string{"", "plain", "order.created", "50%", "%FF", "\xff", "\xfe", "\xed\xa0\x80", "\x00", "a\x00b",
		"k", "k ", "k  ", " k", "\ufffd", "\ufffd%FF", "\ufffd\ufffd", "\ufffdk%20", "\ufffd%", "é", "\xc3", "😀"}
	seen := map[string]string{}
	for _, s := range in {
		c := toColumn(s)
		assert.True(t, utf8.ValidString(c), "%q stored as %q", s, c)
		assert.NotContains(t, c, "\x00", "%q", s)
		assert.False(t, strings.HasSuffix(c, " "), "%q stored as %q", s, c)
		assert.Equal(t, s, fromColumn(c), "%q stored as %q", s, c)
		if other, dup := seen[c]; dup {
			t.Errorf("%q and %q are both stored as %q", s, other, c)
		}
		seen[c] = s
	}
	assert.Equal(t, "\ufffd%FF", toColumn("\xff"))
	assert.Equal(t, "\ufffdk%20", toColumn("k "))
	assert.Equal(t, "plain", toColumn("plain"), "text is stored as it is, as before")
}

// A value the outbox did not escape (a row written before the escape
// existed, or by hand) reads back as it is, even when it starts with the
// marker.
func TestColumnTextReadsUnescapedRowsAsTheyAre(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"\ufffd", "\ufffdabc", "\ufffd%", "\ufffd%G0", "\ufffd%ff", "\ufffd%41", "\ufffd50%"} {
		assert.Equal(t, s, fromColumn(s), "%q", s)
	}
}

func FuzzColumnText(f *testing.F) {
	for _, s := range []string{"", "a", "\xff", "k ", "\ufffd%FF", "\x00", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := toColumn(s)
		if !utf8.ValidString(c) || strings.IndexByte(c, 0) >= 0 || strings.HasSuffix(c, " ") {
			t.Fatalf("%q stored as %q", s, c)
		}
		if back := fromColumn(c); back != s {
			t.Fatalf("%q stored as %q reads back as %q", s, c, back)
		}
		if fromColumn(s) != s && toColumn(fromColumn(s)) != s {
			t.Fatalf("%q read as an escape it is not", s)
		}
	})
}
