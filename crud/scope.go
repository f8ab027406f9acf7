package crud

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// Scope is who and what a change belongs to: what Arc's CRUD hook reads
// from the request when it emits an event. NewScope builds the common
// all-strings case.
type Scope struct {
	// RequestID becomes meta.correlationId. Empty: absent.
	RequestID string
	// UserID is the acting user's id as Arc's hook sees it
	// (ctx.user.id ?? ctx.user._id): payload.userId is this JSON value as
	// it is (a number stays a number, null stays null), meta.userId its
	// String(x) (JSString), absent when it is null. Absent: both absent.
	// Arc's CRUD routes stringify the user id before the hook sees it (see
	// RouteUserID).
	UserID Value
	// OrganizationID is the tenant as Arc's request context holds it
	// (ctx.context.organizationId): payload.organizationId and
	// meta.organizationId are this JSON value as it is, "" and null
	// included. Absent: both absent.
	OrganizationID Value
}

// NewScope returns the scope of a request whose user and organization ids
// are strings, an empty one meaning absent (no user, no tenant). Set the
// fields for a numeric id, an empty-string organization or null.
func NewScope(requestID, userID, organizationID string) Scope {
	return Scope{RequestID: requestID, UserID: StringOrAbsent(userID),
		OrganizationID: StringOrAbsent(organizationID)}
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
	// context, as the values Scope.UserID and Scope.OrganizationID hold
	// (Absent for none). For the bytes an Arc CRUD route writes, return
	// RouteUserID of the user's id (Arc's routes stringify it); return the
	// raw value (Int, RawValue) for what Arc's hook writes when a host
	// calls it with its own user object. Defaults to none (no user, no
	// organization).
	Identify func(r *http.Request) (userID, organizationID Value)
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
