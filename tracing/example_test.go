package tracing_test

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/tracing"
	"github.com/arcmill/arcmill/wildcard"
)

// Trace what a service publishes and what its Arc handlers process.
func ExamplePublisher() {
	var (
		pub    message.Publisher  // e.g. redisstream.NewPublisher(...)
		sub    message.Subscriber // e.g. redisstream.NewSubscriber(...)
		events *wildcard.Router
	)
	if pub == nil {
		return // this example only shows the calls
	}
	cfg := tracing.Config{System: "redis"} // the global TracerProvider and W3C propagation
	traced := tracing.Publisher(pub, cfg)  // a PRODUCER span and a traceparent per message
	_ = traced
	_, _ = events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: sub, Topic: "arc:events",
		Patterns:   []string{"order.*"},
		Middleware: []message.HandlerMiddleware{tracing.Middleware(cfg)}, // "process order.*", linked to its producer
	}, nil)
}
