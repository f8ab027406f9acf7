package natsjs

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go"
)

// DefaultConnOptions returns the options NewPublisher and NewSubscriber
// put before a config's Options when they open the connection themselves
// (URL): reconnect for ever (nats.MaxReconnects(-1)), since nats.go's
// default gives up after 60 attempts, about two minutes, and leaves a
// subscriber that never receives again, where a transport outage should
// only pause it; and log each disconnection and reconnection to logger.
// An option of the config's that sets the same thing wins, as it comes
// later.
func DefaultConnOptions(logger watermill.LoggerAdapter) []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil { // nil: a Close or Drain of ours
				logger.Error("Disconnected from NATS; reconnecting", err, watermill.LogFields{"server": nc.ConnectedUrlRedacted()})
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("Reconnected to NATS", watermill.LogFields{"server": nc.ConnectedUrlRedacted()})
		}),
	}
}

// validateConn checks that a config names one connection: its own Conn,
// or a URL (with Options) to open.
func validateConn(config string, conn *nats.Conn, url string, opts []nats.Option) error {
	switch {
	case conn == nil && url == "":
		return fmt.Errorf("%w: %s.Conn or %s.URL is required", ErrInvalidConfig, config, config)
	case conn != nil && url != "":
		return fmt.Errorf("%w: %s.Conn and %s.URL are both set; give one", ErrInvalidConfig, config, config)
	case conn != nil && len(opts) > 0:
		// They would be ignored silently: the connection is open already.
		return fmt.Errorf("%w: %s.Options apply to the connection opened on URL, not to Conn; give them to nats.Connect",
			ErrInvalidConfig, config)
	}
	for i, o := range opts {
		if o == nil {
			return fmt.Errorf("%w: %s.Options[%d] is nil", ErrInvalidConfig, config, i)
		}
	}
	return nil
}

// dial returns conn, or opens a connection on rawURL with arcmill's
// options and then opts.
func dial(conn *nats.Conn, rawURL string, opts []nats.Option, logger watermill.LoggerAdapter) (*nats.Conn, error) {
	if conn != nil {
		return conn, nil
	}
	nc, err := nats.Connect(rawURL, append(DefaultConnOptions(logger), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("natsjs: connecting to %s: %w", redactURLs(rawURL), err)
	}
	return nc, nil
}

// redactURLs hides the password of each URL of a comma-separated list, so
// that no error or log line carries one.
func redactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") {
			p = "nats://" + p // as nats.Connect reads host:port
		}
		u, err := url.Parse(p)
		switch {
		case err != nil:
			parts[i] = "(unparsable URL)" // it may hold a password
		case u.User != nil:
			// nats://token@host: a user name alone may be a token.
			if _, ok := u.User.Password(); !ok {
				u.User = url.User("xxxxx")
			}
			parts[i] = u.Redacted()
		default:
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
