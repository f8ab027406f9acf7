package natsjs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// Close is idempotent: the universal suite closes a publisher twice in a
// row, and the second Drain used to meet the first one's connection
// closing ("nats: connection closed").
func TestPublisher_CloseTwice(t *testing.T) {
	t.Parallel()
	for range 20 {
		pub, err := NewPublisher(PublisherConfig{URL: testenv.NatsURL(t)})
		require.NoError(t, err)
		require.NoError(t, pub.Close())
		require.NoError(t, pub.Close())
		require.Eventually(t, pub.conn.IsClosed, waitTimeout, pollInterval)
		require.NoError(t, pub.Close())
	}
}
