package outbox

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Redrive refuses a negative limit or rate.
func TestRedriveRefusesNegativeOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	for _, opts := range []RedriveOptions{{Limit: -1}, {Rate: -1}} {
		_, err := f.ob.Redrive(context.Background(), opts)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", opts)
	}
}
