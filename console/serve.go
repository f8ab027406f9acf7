package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// CheckListen refuses to serve on addr without authentication unless addr
// is a loopback address: the console deletes and republishes production
// events. An empty host (":8080") listens on every interface, so it is
// not loopback; "localhost" is.
func CheckListen(addr string, auth Auth) error {
	if auth.Configured() {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: %v", ErrInvalidConfig, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w (%q): configure Auth (a token, basic auth or Middleware), or listen on 127.0.0.1",
		ErrInsecureListen, addr)
}

// Serve serves c on addr until ctx ends, then shuts the server down and
// closes c. It refuses a non-loopback addr without authentication
// (CheckListen). ready, when not nil, receives the bound address (useful
// with port 0) once the listener is open.
func Serve(ctx context.Context, addr string, c *Console, ready func(net.Addr)) error {
	if err := CheckListen(addr, c.cfg.Auth); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(ln.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		c.Close()
		return fmt.Errorf("console: serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	c.Close()
	return err
}
