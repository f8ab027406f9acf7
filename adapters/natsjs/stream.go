package natsjs

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// DefaultReplicas is StreamConfig.Replicas's default: one copy, all a
// single server can hold.
const DefaultReplicas = 1

// StreamConfig configures EnsureStreamConfig.
type StreamConfig struct {
	// Name is the stream's name. Required.
	Name string
	// Prefix makes the stream hold <Prefix>.>: DefaultPrefix for the
	// events, DefaultDeadLetterPrefix for the dead letters, a partitioned
	// prefix (see PartitionMapping). Required.
	Prefix string
	// Replicas is how many servers of a JetStream cluster hold the stream
	// (and, by inheritance, its consumers and their positions). A stream
	// with R replicas accepts publishes and acks while a majority of them
	// are up, so on a 3-node cluster set 3: it loses nothing acknowledged,
	// and keeps serving, when any one node is lost; 5 on 5 nodes survives
	// two. At most the cluster's size, and 1 on a single server. When set,
	// an existing stream with another count is scaled to this one in
	// place; when 0, an existing stream keeps its count, and a new one gets
	// DefaultReplicas.
	Replicas int
}

func (c *StreamConfig) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c StreamConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *StreamConfig) validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: StreamConfig.Name is required", ErrInvalidConfig)
	case !validTokens(c.Prefix):
		return fmt.Errorf("%w: StreamConfig.Prefix %q is not a sequence of subject tokens", ErrInvalidConfig, c.Prefix)
	case c.Replicas < 1 || c.Replicas > 5:
		// JetStream's own bound: Raft groups of more than 5 are refused.
		return fmt.Errorf("%w: StreamConfig.Replicas must be 1 to 5, got %d", ErrInvalidConfig, c.Replicas)
	}
	return nil
}

// EnsureStreamConfig creates the stream cfg describes if it is missing, and
// scales an existing one to cfg.Replicas if that is set and differs. A
// stream of that name holding other subjects is left as it is.
func EnsureStreamConfig(js nats.JetStreamManager, cfg StreamConfig) error {
	scale := cfg.Replicas != 0 // the default is for new streams only
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	info, err := js.StreamInfo(cfg.Name)
	switch {
	case errors.Is(err, nats.ErrStreamNotFound):
		_, err = js.AddStream(&nats.StreamConfig{Name: cfg.Name, Subjects: []string{cfg.Prefix + ".>"}, Replicas: cfg.Replicas})
		if err == nil {
			return nil
		}
		// Another process may have created it meanwhile.
		if info, err = js.StreamInfo(cfg.Name); err != nil {
			return fmt.Errorf("natsjs: creating stream %s for %s.>: %w", cfg.Name, cfg.Prefix, err)
		}
	case err != nil:
		return fmt.Errorf("natsjs: stream %s: %w", cfg.Name, err)
	}
	if !scale || info.Config.Replicas == cfg.Replicas {
		return nil
	}
	// Scaling in place keeps the messages and the consumers' positions.
	update := info.Config
	update.Replicas = cfg.Replicas
	if _, err := js.UpdateStream(&update); err != nil {
		return fmt.Errorf("natsjs: scaling stream %s from %d to %d replicas: %w", cfg.Name, info.Config.Replicas,
			cfg.Replicas, err)
	}
	return nil
}
