package redisstream

import (
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/middleware"
)

// Both publishers share their client with middleware.DeadLetter, which
// keeps its once-only guard (middleware.RedisGuard) in the same Redis as
// the dead letters by default.
var (
	_ middleware.RedisClienter = (*DeadLetterPublisher)(nil)
	_ middleware.RedisClienter = (*Publisher)(nil)
)

// RedisClient returns the client the publisher writes with
// (middleware.RedisClienter).
func (p *DeadLetterPublisher) RedisClient() redis.UniversalClient { return p.Client }

// RedisClient returns the client the publisher writes with
// (middleware.RedisClienter).
func (p *Publisher) RedisClient() redis.UniversalClient { return p.cfg.Client }
