package redisstream

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// The universal suite sends arbitrary Watermill messages, not Arc events,
// so it runs with Watermill's entry layout; the transport (reads, acks,
// claims, close) is the same whatever the layout.
func newPubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	addr := testenv.RedisAddr(t)
	pub, err := NewPublisher(PublisherConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
		Marshaller: wredis.DefaultMarshallerUnmarshaller{}, CloseClient: true})
	require.NoError(t, err)
	if group == "" { // no group asked for: a group of its own, like a fan-out subscriber
		group = "arcmill-test-" + watermill.NewShortUUID()
	}
	// A separate client for the blocking reads, as a team would configure it.
	sub, err := NewSubscriber(SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
		BlockingClient: redis.NewClient(&redis.Options{Addr: addr}), ConsumerGroup: group, Unmarshaller: wredis.DefaultMarshallerUnmarshaller{}, CloseClient: true,
		BlockTime: 100e6, ClaimIdle: 2e9, ClaimInterval: 500e6, CloseTimeout: 200e6})
	require.NoError(t, err)
	return pub, sub
}

func TestUniversalPubSub(t *testing.T) {
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return newPubSub(t, "")
	}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return newPubSub(t, group)
	})
}
