package redisstream

import (
	"time"

	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
)

// Arc's defaults (ARC-CONTRACT.md §1.6).
const (
	// ArcStream is Arc's stream key: every event type on one stream.
	ArcStream = "arc:events"
	// ArcGroup is Arc's default consumer group.
	ArcGroup = "default"
	// ArcMaxLen is the approximate length Arc trims its stream to on every
	// XADD (MAXLEN ~ 10000).
	ArcMaxLen = 10000
)

// ArcPublisherConfig is watermill-redisstream's publisher configured as
// Arc's transport: Arc's entry layout, and MAXLEN ~ 10000 on ArcStream.
// Approximate trimming ignores consumer groups: a slow or stopped group can
// lose entries (Arc's weakness 4); raise or drop the Maxlens entry when
// groups may fall behind.
func ArcPublisherConfig(client redis.UniversalClient) wredis.PublisherConfig {
	return wredis.PublisherConfig{
		Client:     client,
		Marshaller: Marshaller{},
		Maxlens:    map[string]int64{ArcStream: ArcMaxLen},
	}
}

// ArcSubscriberConfig is watermill-redisstream's subscriber configured as
// Arc's transport, for group (ArcGroup when empty): Arc's entry layout; a
// new group starts at "$" (new entries only, as Arc's XGROUP CREATE … $),
// or at "0" with fromStart; pending entries idle for 30 s are claimed. Give
// the subscriber its own client: it blocks on XREADGROUP.
func ArcSubscriberConfig(client redis.UniversalClient, group string, fromStart bool) wredis.SubscriberConfig {
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
		MaxIdleTime:                   30 * time.Second,
		NackResendSleep:               100 * time.Millisecond,
		DisableIndefiniteInitialBlock: true,
	}
}
