package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Role is what a caller may do.
type Role int

// Roles, weakest first.
const (
	// NoRole may do nothing.
	NoRole Role = iota
	// ReadOnly sees everything (payloads still redacted unless exposed).
	ReadOnly
	// Operator also redrives, purges and cancels tasks.
	Operator
)

// String names the role.
func (r Role) String() string {
	switch r {
	case ReadOnly:
		return "read-only"
	case Operator:
		return "operator"
	}
	return "none"
}

// Credential is one caller the console knows.
type Credential struct {
	// Name identifies the caller in the audit list, and is the basic-auth
	// user name. Required.
	Name string
	// Token, when set, authenticates "Authorization: Bearer <Token>".
	Token string
	// Password, when set, authenticates basic auth as Name.
	Password string
	// Role is what the caller may do. Required.
	Role Role
}

// Auth says who may see and who may change.
type Auth struct {
	// Credentials are the built-in bearer tokens and basic-auth users.
	Credentials []Credential
	// Middleware, when set, runs the service's own authentication around
	// the console. It names the caller with WithPrincipal; a request it
	// lets through without one gets MiddlewareRole, named "middleware".
	// A request with console credentials is judged by those first; one
	// whose Authorization header matches no credential goes to Middleware
	// too, which may know it (the service's own bearer tokens, say).
	Middleware func(http.Handler) http.Handler
	// MiddlewareRole is the role of a request Middleware let through
	// without a principal. Defaults to ReadOnly.
	MiddlewareRole Role
}

func (a *Auth) setDefaults() {
	if a.MiddlewareRole == NoRole {
		a.MiddlewareRole = ReadOnly
	}
}

func (a Auth) validate() error {
	names := map[string]bool{}
	for i, c := range a.Credentials {
		switch {
		case c.Name == "" || strings.Contains(c.Name, ":"):
			return fmt.Errorf("%w: Auth.Credentials[%d].Name %q: required, without ':'", ErrInvalidConfig, i, c.Name)
		case c.Token == "" && c.Password == "":
			return fmt.Errorf("%w: Auth.Credentials[%d] (%s) has neither Token nor Password", ErrInvalidConfig, i, c.Name)
		case c.Role != ReadOnly && c.Role != Operator:
			return fmt.Errorf("%w: Auth.Credentials[%d] (%s) has no role: ReadOnly or Operator", ErrInvalidConfig, i, c.Name)
		case names[c.Name]:
			return fmt.Errorf("%w: Auth.Credentials[%d]: %q is listed twice", ErrInvalidConfig, i, c.Name)
		case c.Token != "" && len(c.Token) < 16:
			return fmt.Errorf("%w: Auth.Credentials[%d] (%s): a token under 16 characters is guessable", ErrInvalidConfig, i, c.Name)
		}
		names[c.Name] = true
	}
	if a.MiddlewareRole != ReadOnly && a.MiddlewareRole != Operator {
		return fmt.Errorf("%w: Auth.MiddlewareRole must be ReadOnly or Operator", ErrInvalidConfig)
	}
	return nil
}

// Configured reports whether any authentication is set.
func (a Auth) Configured() bool { return len(a.Credentials) > 0 || a.Middleware != nil }

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in the audit list.
	Name string
	// Role is what the caller may do.
	Role Role
	// bearer is true when a bearer token authenticated the request: a
	// browser never sends one on its own, so it needs no CSRF token.
	bearer bool
}

type principalKey struct{}

// WithPrincipal names the caller for the console; Auth.Middleware calls it.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller the request was authenticated as.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// authenticate finds the caller of r among the credentials; ok is false
// when r brings none (or wrong ones).
func (a Auth) authenticate(r *http.Request) (Principal, bool) {
	h := r.Header.Get("Authorization")
	if tok, found := strings.CutPrefix(h, "Bearer "); found {
		for _, c := range a.Credentials {
			if c.Token != "" && subtle.ConstantTimeCompare([]byte(c.Token), []byte(tok)) == 1 {
				return Principal{Name: c.Name, Role: c.Role, bearer: true}, true
			}
		}
		return Principal{}, false
	}
	if user, pass, found := r.BasicAuth(); found {
		for _, c := range a.Credentials {
			if c.Password != "" && c.Name == user && subtle.ConstantTimeCompare([]byte(c.Password), []byte(pass)) == 1 {
				return Principal{Name: c.Name, Role: c.Role}, true
			}
		}
	}
	return Principal{}, false
}

// authn wraps next so that it runs with a principal, or answers 401/403.
func (c *Console) authn(next http.Handler) http.Handler {
	a := c.cfg.Auth
	withMiddleware := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); !ok {
			r = r.WithContext(WithPrincipal(r.Context(), Principal{Name: "middleware", Role: a.MiddlewareRole}))
		}
		next.ServeHTTP(w, r)
	})
	var viaMiddleware http.Handler
	if a.Middleware != nil {
		viaMiddleware = a.Middleware(withMiddleware)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Configured() {
			// Nothing configured: only this machine may come in, and not
			// through a proxy on it, which would make every client look
			// local. The Host must name this machine too: a hostile page
			// whose name rebinds to 127.0.0.1 is otherwise a same-origin
			// caller of the console from the operator's own browser.
			if !loopbackRemote(r.RemoteAddr) || proxied(r) || !loopbackHost(r.Host) {
				c.refuse(w, r, http.StatusForbidden, "the console has no authentication configured and answers "+
					"loopback clients only, addressed as localhost or a loopback IP, not proxied ones: configure Auth")
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Name: "local", Role: Operator})))
			return
		}
		if p, ok := a.authenticate(r); ok {
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
			return
		}
		// Credentials the console does not know may be the service's own
		// (its bearer tokens, say): Middleware judges them.
		if viaMiddleware != nil {
			viaMiddleware.ServeHTTP(w, r)
			return
		}
		if len(a.Credentials) > 0 {
			w.Header().Set("WWW-Authenticate", `Basic realm="arcmill console", charset="UTF-8"`)
		}
		c.refuse(w, r, http.StatusUnauthorized, "authentication required")
	})
}

// require answers 403 unless the caller has role at least.
func (c *Console) require(role Role, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		if p.Role < role {
			c.refuse(w, r, http.StatusForbidden, "this needs the "+role.String()+" role; you are "+p.Role.String())
			return
		}
		next(w, r)
	}
}

// csrfToken is the caller's CSRF token: an HMAC of their name, so it needs
// no server-side session and holds across replicas that share CSRFKey.
func (c *Console) csrfToken(p Principal) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte("arcmill-console-csrf\x00" + p.Name))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// mutation wraps a handler that changes something: Operator role, the
// cross-origin check, and the CSRF token unless a bearer token came.
func (c *Console) mutation(next http.HandlerFunc) http.HandlerFunc {
	checked := c.require(Operator, func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		if !p.bearer {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue("csrf")
			}
			if !hmac.Equal([]byte(got), []byte(c.csrfToken(p))) {
				c.refuse(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
				return
			}
		}
		next(w, r)
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.cop.Check(r); err != nil {
			c.refuse(w, r, http.StatusForbidden, "cross-origin request refused")
			return
		}
		checked(w, r)
	}
}

// loopbackRemote reports whether a RemoteAddr is on this machine.
func loopbackRemote(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a request's Host names this machine:
// localhost, a name under .localhost (RFC 6761 keeps both on loopback) or a
// loopback IP, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// proxied reports whether a request names a client behind a proxy.
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Host"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}
