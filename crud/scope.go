package crud

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// Scope is who and what a change belongs to: what Arc reads from the
// request when it emits a CRUD event.
type Scope struct {
	// RequestID becomes meta.correlationId. Empty: absent.
	RequestID string
	// UserID is the acting user (payload.userId and meta.userId). Empty:
	// absent.
	UserID string
	// OrganizationID is the tenant (payload.organizationId and
	// meta.organizationId). Empty: absent.
	OrganizationID string
}

type scopeKey struct{}

// WithScope returns a context that carries s.
func WithScope(ctx context.Context, s Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// ScopeFrom returns the scope ctx carries, or the zero Scope.
func ScopeFrom(ctx context.Context) Scope {
	s, _ := ctx.Value(scopeKey{}).(Scope)
	return s
}

// RequestIDHeader is the header Middleware takes the request id from.
const RequestIDHeader = "X-Request-Id"

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Identify returns the acting user and organization of a request,
	// typically from what the authentication middleware put in its
	// context. Defaults to none (no user, no organization).
	Identify func(r *http.Request) (userID, organizationID string)
	// NewRequestID makes a request id for a request without a valid
	// X-Request-Id header. Defaults to a UUID v4.
	NewRequestID func() string
	// MaxRequestIDLength is the longest X-Request-Id taken from a client;
	// a longer one is replaced. Defaults to DefaultMaxRequestIDLength.
	MaxRequestIDLength int
}

// DefaultMaxRequestIDLength bounds a client's X-Request-Id: it is written
// into every event of the request.
const DefaultMaxRequestIDLength = 200

func (c *MiddlewareConfig) setDefaults() {
	if c.NewRequestID == nil {
		c.NewRequestID = uuid.NewString
	}
	if c.MaxRequestIDLength <= 0 {
		c.MaxRequestIDLength = DefaultMaxRequestIDLength
	}
}

// Middleware is net/http middleware that puts the request's Scope in its
// context (see ScopeFrom), and echoes the request id in the response's
// X-Request-Id header so a client can find its events.
func Middleware(cfg MiddlewareConfig) func(http.Handler) http.Handler {
	cfg.setDefaults()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(RequestIDHeader)
			if id == "" || len(id) > cfg.MaxRequestIDLength {
				id = cfg.NewRequestID()
			}
			s := Scope{RequestID: id}
			if cfg.Identify != nil {
				s.UserID, s.OrganizationID = cfg.Identify(r)
			}
			w.Header().Set(RequestIDHeader, id)
			next.ServeHTTP(w, r.WithContext(WithScope(r.Context(), s)))
		})
	}
}
