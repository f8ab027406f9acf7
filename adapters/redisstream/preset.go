package redisstream

import (
	"time"

	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
)

// Arc's defaults (RedisStreamTransport's options).
const (
	// ArcStream is Arc's stream key: every event type on one stream.
	ArcStream = "arc:events"
	// ArcGroup is Arc's default consumer group.
	ArcGroup = "default"
	// ArcMaxLen is the approximate length Arc trims its stream to on every
	// XADD (MAXLEN ~ 10000).
	ArcMaxLen = 10000
	// ArcDeadLetterStream is Arc's dead-letter stream.
	ArcDeadLetterStream = "arc:events:dlq"
)

// ArcPublisher configures arcmill's Publisher as Arc's transport: Arc's
// layout, and MAXLEN ~ 10000 on ArcStream as Arc trims (set SafeTrimEvery
// and drop MaxLens to never trim what a group still needs).
func ArcPublisher(client redis.UniversalClient) PublisherConfig {
	return PublisherConfig{Client: client, MaxLens: map[string]int64{ArcStream: ArcMaxLen}}
}

// ArcSubscriber configures arcmill's Subscriber as Arc's transport for
// group (ArcGroup when empty): Arc's layout, a new group starting at "$"
// (fromStart: "0"), entries idle 30 s (Arc's claimTimeoutMs) claimed, and
// after 5 deliveries (Arc's maxRetries) moved to ArcDeadLetterStream in
// Arc's layout.
func ArcSubscriber(client redis.UniversalClient, group string, fromStart bool) SubscriberConfig {
	if group == "" {
		group = ArcGroup
	}
	oldest := "$"
	if fromStart {
		oldest = "0"
	}
	return SubscriberConfig{Client: client, ConsumerGroup: group, OldestID: oldest,
		ClaimIdle: DefaultClaimIdle, MaxDeliveries: DefaultMaxDeliveries, DeadLetterStream: ArcDeadLetterStream}
}

// WatermillArcPublisherConfig is watermill-redisstream's publisher configured as
// Arc's transport: Arc's entry layout, and MAXLEN ~ 10000 on ArcStream.
// Approximate trimming ignores consumer groups: a slow or stopped group can
// lose entries, as in Arc; raise or drop the Maxlens entry when
// groups may fall behind.
func WatermillArcPublisherConfig(client redis.UniversalClient) wredis.PublisherConfig {
	return wredis.PublisherConfig{
		Client:     client,
		Marshaller: Marshaller{},
		Maxlens:    map[string]int64{ArcStream: ArcMaxLen},
	}
}

// WatermillArcSubscriberConfig is watermill-redisstream's subscriber configured as
// Arc's transport, for group (ArcGroup when empty): Arc's entry layout; a
// new group starts at "$" (new entries only, as Arc's XGROUP CREATE … $),
// or at "0" with fromStart; pending entries idle for 30 s are claimed. Give
// the subscriber its own client: it blocks on XREADGROUP.
func WatermillArcSubscriberConfig(client redis.UniversalClient, group string, fromStart bool) wredis.SubscriberConfig {
	if group == "" {
		group = ArcGroup
	}
	oldest := "$"
	if fromStart {
		oldest = "0"
	}
	return wredis.SubscriberConfig{
		Client:                        client,
		Unmarshaller:                  Marshaller{},
		ConsumerGroup:                 group,
		OldestId:                      oldest,
		MaxIdleTime:                   DefaultClaimIdle,
		NackResendSleep:               100 * time.Millisecond,
		DisableIndefiniteInitialBlock: true,
	}
}
