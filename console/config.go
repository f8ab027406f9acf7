package console

import (
	stdsql "database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/outbox"
)

// Sentinel errors; every error the package returns wraps one of them.
var (
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("console: invalid configuration")
	// ErrInsecureListen is returned for a non-loopback address without
	// authentication.
	ErrInsecureListen = errors.New("console: refusing to serve on a non-loopback address without authentication")
	// ErrNotFound is a dead letter, task or source that does not exist.
	ErrNotFound = errors.New("console: not found")
)

// Defaults of Config.
const (
	// DefaultAdminPrefix is Arc's outbox admin prefix.
	DefaultAdminPrefix = "/admin/outbox"
	// DefaultRedriveRate is the dead letters a redrive task moves per second.
	DefaultRedriveRate = 100.0
	// DefaultScanLimit bounds the dead letters read from one source to
	// group them.
	DefaultScanLimit = 100_000
	// DefaultPageSize is the dead letters or groups on one page.
	DefaultPageSize = 50
	// DefaultHealthyLag is the relay lag past which Arc's health route
	// reports unhealthy.
	DefaultHealthyLag = time.Minute
	// DefaultAuditSize is how many mutations the audit list keeps.
	DefaultAuditSize = 500
	// DefaultDeadLetterSuffix names a stream's dead-letter stream (Arc's
	// arc:events:dlq for arc:events).
	DefaultDeadLetterSuffix = ":dlq"
)

// Stream is a Redis stream the console shows.
type Stream struct {
	// Name of the stream. Required.
	Name string
	// DeadLetter names its dead-letter stream. Defaults to Name +
	// DefaultDeadLetterSuffix.
	DeadLetter string
	// MaxLen trims the stream (MAXLEN ~) on each redriven entry; 0 trims
	// nothing. Defaults to 0, except redisstream.ArcMaxLen for Arc's
	// arc:events, as Arc's publishers trim it.
	MaxLen int64
}

// Outbox is an arcmill outbox the console shows.
type Outbox struct {
	// Name labels it in pages and letter ids (letters, digits, - and _).
	// Defaults to the outbox's table name.
	Name string
	// Outbox is the outbox. Required.
	Outbox *outbox.Outbox
	// DB is the outbox's database, from which the event explorer reads
	// its pending and delivered rows (with a bounded SELECT on the
	// outbox's table): the outbox package lists only dead letters.
	// Defaults to nil: the explorer shows only the outbox's dead letters.
	DB *stdsql.DB
}

// Config configures a Console.
type Config struct {
	// Redis reads and changes the streams. Required when Streams is set.
	Redis redis.UniversalClient
	// Streams are the Redis streams shown, with their dead letters.
	Streams []Stream
	// Outboxes are the outboxes shown, with their dead letters.
	Outboxes []Outbox
	// Breakers are the circuit breakers (middleware.Breaker) whose state
	// the overview shows, one line each. Defaults to none.
	Breakers []BreakerStats
	// Routers are the wildcard routers whose counters the overview shows
	// (handled, failed, unrouted, malformed), one line each. Defaults to
	// none.
	Routers []Router
	// Auth says who may see and who may change. Defaults to nobody
	// configured: loopback clients only, each an Operator.
	Auth Auth
	// BasePath is the path the console is mounted under (after any
	// http.StripPrefix), used to build its links, e.g. "/console".
	// Defaults to "" (mounted at the root).
	BasePath string
	// AdminPrefix is where Arc's outbox admin routes are served. Defaults
	// to DefaultAdminPrefix.
	AdminPrefix string
	// ExposePayloads shows event payloads and error stacks, which are
	// otherwise redacted, as in Arc. Defaults to false.
	ExposePayloads bool
	// RedriveRate caps the dead letters a redrive task moves per second.
	// Defaults to DefaultRedriveRate.
	RedriveRate float64
	// ScanLimit bounds the dead letters read from one source to group and
	// list them; more are counted but not grouped. Defaults to
	// DefaultScanLimit.
	ScanLimit int
	// PageSize is the rows on one page. Defaults to DefaultPageSize.
	PageSize int
	// HealthyLag is the relay lag (age of the oldest pending outbox row)
	// past which Arc's health route says unhealthy. Defaults to
	// DefaultHealthyLag.
	HealthyLag time.Duration
	// AuditSize is how many mutations the audit list keeps (they are all
	// logged). Defaults to DefaultAuditSize.
	AuditSize int
	// SampleInterval is how often the console samples lag, pending, dead
	// letters and throughput for the overview's charts; NoSampling turns
	// the sampler off. Defaults to DefaultSampleInterval.
	SampleInterval time.Duration
	// SampleWindow is how far back the charts reach. Defaults to
	// DefaultSampleWindow.
	SampleWindow time.Duration
	// SequencePrefix is the key prefix of the sequenced handlers whose
	// parked keys the Parked page shows (middleware.SequenceConfig.Prefix),
	// in Redis. Defaults to middleware.DefaultSequencePrefix.
	SequencePrefix string
	// CSRFKey signs CSRF tokens. Set the same key on every replica behind
	// one load balancer. Defaults to a random key per Console.
	CSRFKey []byte
	// Logger receives the audit log and errors. Defaults to no logging.
	Logger watermill.LoggerAdapter
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	for i := range c.Streams {
		if c.Streams[i].DeadLetter == "" {
			c.Streams[i].DeadLetter = c.Streams[i].Name + DefaultDeadLetterSuffix
		}
		if c.Streams[i].MaxLen == 0 && c.Streams[i].Name == redisstream.ArcStream {
			c.Streams[i].MaxLen = redisstream.ArcMaxLen
		}
	}
	for i := range c.Outboxes {
		if c.Outboxes[i].Name == "" && c.Outboxes[i].Outbox != nil {
			c.Outboxes[i].Name = c.Outboxes[i].Outbox.Table()
		}
	}
	c.BasePath = strings.TrimSuffix(c.BasePath, "/")
	if c.AdminPrefix == "" {
		c.AdminPrefix = DefaultAdminPrefix
	}
	c.AdminPrefix = strings.TrimSuffix(c.AdminPrefix, "/")
	if c.RedriveRate == 0 {
		c.RedriveRate = DefaultRedriveRate
	}
	if c.ScanLimit == 0 {
		c.ScanLimit = DefaultScanLimit
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.HealthyLag == 0 {
		c.HealthyLag = DefaultHealthyLag
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.SampleWindow == 0 {
		c.SampleWindow = DefaultSampleWindow
	}
	if c.AuditSize == 0 {
		c.AuditSize = DefaultAuditSize
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Auth.setDefaults()
}

// Validate reports a configuration that cannot work, defaults applied;
// every error wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	c.Streams = append([]Stream(nil), c.Streams...)
	c.Outboxes = append([]Outbox(nil), c.Outboxes...)
	c.setDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Streams) == 0 && len(c.Outboxes) == 0 {
		return bad("neither Streams nor Outboxes is set: there is nothing to show")
	}
	if len(c.Streams) > 0 && c.Redis == nil {
		return bad("Redis is required with Streams")
	}
	seen := map[string]bool{}
	for i, s := range c.Streams {
		switch {
		case s.Name == "":
			return bad("Streams[%d].Name is empty", i)
		case s.DeadLetter == s.Name:
			return bad("Streams[%d].DeadLetter is the stream itself (%q)", i, s.Name)
		case s.MaxLen < 0:
			return bad("Streams[%d].MaxLen is %d: must not be negative", i, s.MaxLen)
		case seen["s:"+s.DeadLetter]:
			return bad("Streams[%d]: dead-letter stream %q is listed twice", i, s.DeadLetter)
		}
		seen["s:"+s.DeadLetter] = true
	}
	for i, o := range c.Outboxes {
		switch {
		case o.Outbox == nil:
			return bad("Outboxes[%d].Outbox is nil", i)
		case !validName(o.Name):
			return bad("Outboxes[%d].Name %q: use letters, digits, - and _", i, o.Name)
		case seen["o:"+o.Name]:
			return bad("Outboxes[%d].Name %q is listed twice", i, o.Name)
		}
		seen["o:"+o.Name] = true
	}
	for i, r := range c.Routers {
		switch {
		case r.Router == nil:
			return bad("Routers[%d].Router is nil", i)
		case r.Name == "":
			return bad("Routers[%d].Name is empty", i)
		case seen["r:"+r.Name]:
			return bad("Routers[%d].Name %q is listed twice", i, r.Name)
		}
		seen["r:"+r.Name] = true
	}
	if c.BasePath != "" && !strings.HasPrefix(c.BasePath, "/") {
		return bad("BasePath %q must start with /", c.BasePath)
	}
	if !strings.HasPrefix(c.AdminPrefix, "/") || strings.HasPrefix(c.AdminPrefix+"/", "/api/") {
		return bad("AdminPrefix %q must start with / and not be under /api/", c.AdminPrefix)
	}
	switch {
	case c.RedriveRate < 0:
		return bad("RedriveRate is %g: must not be negative", c.RedriveRate)
	case c.ScanLimit < 0:
		return bad("ScanLimit is %d: must not be negative", c.ScanLimit)
	case c.PageSize < 0 || c.PageSize > 1000:
		return bad("PageSize is %d: must be 1 to 1000", c.PageSize)
	case c.HealthyLag < 0:
		return bad("HealthyLag is %v: must not be negative", c.HealthyLag)
	case c.SampleInterval < 0 && c.SampleInterval != NoSampling:
		return bad("SampleInterval is %v: must be positive, or NoSampling", c.SampleInterval)
	case c.SampleWindow < 0 || c.SampleInterval > 0 && c.SampleWindow < 2*c.SampleInterval:
		return bad("SampleWindow is %v: must hold at least two samples (SampleInterval %v)", c.SampleWindow, c.SampleInterval)
	case c.AuditSize < 0:
		return bad("AuditSize is %d: must not be negative", c.AuditSize)
	case len(c.CSRFKey) > 0 && len(c.CSRFKey) < 16:
		return bad("CSRFKey has %d bytes: give at least 16", len(c.CSRFKey))
	}
	return c.Auth.validate()
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
