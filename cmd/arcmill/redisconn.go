package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Environment variables of the Redis connection. The password has no flag:
// a flag's value shows in the shell history and in ps.
const (
	envRedisAddr             = "ARCMILL_REDIS_ADDR"
	envRedisUsername         = "ARCMILL_REDIS_USERNAME"
	envRedisPassword         = "ARCMILL_REDIS_PASSWORD"
	envRedisSentinelPassword = "ARCMILL_REDIS_SENTINEL_PASSWORD"
	defaultRedisAddr         = "127.0.0.1:6379"
)

// redisFlags is the Redis connection of a command: one address or URL, or
// several addresses (Cluster seeds, Sentinels), credentials and TLS.
type redisFlags struct {
	addr, username, passwordFile string
	db                           int
	cluster                      bool
	sentinelMaster               string
	tls                          bool
	tlsCA, tlsCert, tlsKey       string
	tlsServerName                string
	tlsInsecure                  bool
}

// redisHelp is the part of each command's help about the connection.
const redisHelp = `
Redis connection: --redis takes host:port, a URL (redis://user:pass@host:6379/0,
rediss:// for TLS), or comma-separated addresses with --redis-cluster (seed
nodes) or --sentinel-master (Sentinels). The password comes from
--redis-password-file, else ARCMILL_REDIS_PASSWORD, else the URL; it has no
flag of its own (a flag shows in ps and the shell history) and is never
printed, nor is the URL's. On a Cluster, "dlq redrive" needs the dead-letter
stream and its target in one hash slot (name them with a {hash tag}).
`

func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.addr, "redis", getenv(envRedisAddr, defaultRedisAddr),
		"Redis `address or URL`: host:port, redis://[user:pass@]host:port[/db], rediss://… (TLS), or host:port,host:port with --redis-cluster or --sentinel-master ("+envRedisAddr+")")
	fs.StringVar(&r.username, "redis-username", getenv(envRedisUsername, ""), "Redis ACL `user` ("+envRedisUsername+"; the password: "+envRedisPassword+")")
	fs.StringVar(&r.passwordFile, "redis-password-file", "", "read the Redis password from this `file` (first line) instead of "+envRedisPassword)
	r.db = -1
	fs.Var((*optionalInt)(&r.db), "redis-db", "Redis logical database `number` (default: the URL's, else 0; not on a Cluster)")
	fs.BoolVar(&r.cluster, "redis-cluster", false, "the addresses are Redis Cluster seed nodes")
	fs.StringVar(&r.sentinelMaster, "sentinel-master", "", "Sentinel: the master `name`; --redis lists the Sentinels (their password: "+envRedisSentinelPassword+")")
	fs.BoolVar(&r.tls, "redis-tls", false, "connect with TLS (implied by rediss:// and by the other --redis-tls-* flags)")
	fs.StringVar(&r.tlsCA, "redis-tls-ca", "", "PEM `file` of the CA that signed the server's certificate (default: the system's roots)")
	fs.StringVar(&r.tlsCert, "redis-tls-cert", "", "PEM `file` of the client certificate, for servers that check clients (tls-auth-clients)")
	fs.StringVar(&r.tlsKey, "redis-tls-key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&r.tlsServerName, "redis-tls-server-name", "", "the `name` the server's certificate must carry (default: the host)")
	fs.BoolVar(&r.tlsInsecure, "redis-tls-insecure-skip-verify", false, "UNSAFE: accept any server certificate, so anyone on the path can read and change the traffic (tests only)")
}

// options builds the client options from the flags and the environment;
// its errors are usage errors and never contain the password.
func (r *redisFlags) options() (*redis.UniversalOptions, error) {
	if r.cluster && r.sentinelMaster != "" {
		return nil, usageErr("--redis-cluster and --sentinel-master exclude each other")
	}
	opts, err := r.parseTarget()
	if err != nil {
		return nil, err
	}
	if r.username != "" {
		opts.Username = r.username
	}
	password := os.Getenv(envRedisPassword)
	if r.passwordFile != "" {
		b, err := os.ReadFile(r.passwordFile)
		if err != nil {
			return nil, usageErr("--redis-password-file: %v", err)
		}
		password, _, _ = strings.Cut(string(b), "\n")
		password = strings.TrimSuffix(password, "\r")
	}
	if password != "" {
		opts.Password = password
	}
	if sp := os.Getenv(envRedisSentinelPassword); sp != "" {
		opts.SentinelPassword = sp
	}
	switch {
	case r.db >= 0 && r.cluster:
		return nil, usageErr("--redis-db: a Redis Cluster has database 0 only")
	case r.db >= 0:
		opts.DB = r.db
	}
	if err := r.tlsConfig(opts); err != nil {
		return nil, err
	}
	opts.IsClusterMode = r.cluster
	opts.MasterName = r.sentinelMaster
	return opts, nil
}

// parseTarget reads --redis: a URL (redis.ParseURL, ParseClusterURL or
// ParseFailoverURL) or comma-separated addresses.
func (r *redisFlags) parseTarget() (*redis.UniversalOptions, error) {
	target := strings.TrimSpace(r.addr)
	if target == "" {
		return nil, usageErr("--redis is empty: give host:port or a redis:// URL")
	}
	if !strings.Contains(target, "://") {
		addrs := strings.Split(target, ",")
		for i, a := range addrs {
			a = strings.TrimSpace(a)
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, usageErr("--redis: %q is not host:port (or a redis:// URL)", a)
			}
			addrs[i] = a
		}
		if len(addrs) > 1 && !r.cluster && r.sentinelMaster == "" {
			return nil, usageErr("--redis lists %d addresses: add --redis-cluster (seed nodes) or --sentinel-master NAME (Sentinels)", len(addrs))
		}
		return &redis.UniversalOptions{Addrs: addrs}, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, usageErr("--redis is not a valid URL: %v", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, usageErr("--redis: scheme %q: use redis:// or rediss:// (TLS)", u.Scheme)
	}
	switch {
	case r.sentinelMaster != "":
		o, err := redis.ParseFailoverURL(target)
		if err != nil {
			return nil, usageErr("--redis: %v", err)
		}
		return &redis.UniversalOptions{Addrs: o.SentinelAddrs, SentinelUsername: o.SentinelUsername,
			SentinelPassword: o.SentinelPassword, Username: o.Username, Password: o.Password, DB: o.DB,
			TLSConfig: o.TLSConfig, ClientName: o.ClientName, DialTimeout: o.DialTimeout,
			ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize}, nil
	case r.cluster:
		o, err := redis.ParseClusterURL(target)
		if err != nil {
			return nil, usageErr("--redis: %v", err)
		}
		return &redis.UniversalOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password,
			TLSConfig: o.TLSConfig, ClientName: o.ClientName, DialTimeout: o.DialTimeout,
			ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize}, nil
	default:
		if u.Query().Has("addr") {
			return nil, usageErr("--redis: a URL with addr= lists several nodes: add --redis-cluster or --sentinel-master NAME")
		}
		o, err := redis.ParseURL(target)
		if err != nil {
			return nil, usageErr("--redis: %v", err)
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password,
			DB: o.DB, TLSConfig: o.TLSConfig, ClientName: o.ClientName, DialTimeout: o.DialTimeout,
			ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize}, nil
	}
}

// tlsConfig applies the TLS flags to opts.
func (r *redisFlags) tlsConfig(opts *redis.UniversalOptions) error {
	wanted := r.tls || r.tlsCA != "" || r.tlsCert != "" || r.tlsKey != "" || r.tlsServerName != "" || r.tlsInsecure
	if !wanted {
		return nil
	}
	cfg := opts.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if r.tlsCA != "" {
		pem, err := os.ReadFile(r.tlsCA)
		if err != nil {
			return usageErr("--redis-tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usageErr("--redis-tls-ca: %s holds no PEM certificate", r.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if (r.tlsCert == "") != (r.tlsKey == "") {
		return usageErr("--redis-tls-cert and --redis-tls-key go together")
	}
	if r.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(r.tlsCert, r.tlsKey)
		if err != nil {
			return usageErr("--redis-tls-cert/--redis-tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if r.tlsServerName != "" {
		cfg.ServerName = r.tlsServerName
	}
	cfg.InsecureSkipVerify = r.tlsInsecure
	opts.TLSConfig = cfg
	return nil
}

// describe names the target for messages, without its password.
func (r *redisFlags) describe() string {
	target := strings.TrimSpace(r.addr)
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return "Redis at (an unparsable URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		target = u.Redacted()
	}
	switch {
	case r.sentinelMaster != "":
		return fmt.Sprintf("Redis master %q via Sentinel %s", r.sentinelMaster, target)
	case r.cluster:
		return "Redis Cluster " + target
	}
	return "Redis at " + target
}

// connect builds the one client every command uses and checks that the
// server answers, with advice that fits what went wrong.
func (r *redisFlags) connect(ctx context.Context, stderr io.Writer) (redis.UniversalClient, error) {
	opts, err := r.options()
	if err != nil {
		return nil, err
	}
	if r.tlsInsecure {
		fmt.Fprintln(stderr, "arcmill: warning: --redis-tls-insecure-skip-verify: the server's certificate is not checked")
	}
	client := redis.NewUniversalClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot use %s (%v): %s", r.describe(), err, r.advice(err, opts))
	}
	return client, nil
}

// advice says what to do about a failed connection.
func (r *redisFlags) advice(err error, opts *redis.UniversalOptions) string {
	msg := err.Error()
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case strings.HasPrefix(msg, "NOAUTH"):
		return "the server wants a password: set " + envRedisPassword + " (and --redis-username for an ACL user)"
	case strings.HasPrefix(msg, "WRONGPASS"), strings.Contains(msg, "invalid username-password pair"):
		return "the server refused the user name or password: check " + envRedisPassword + " and --redis-username (" +
			envRedisUsername + ")"
	case strings.Contains(msg, "called without any password configured"):
		return "the server has no password, but one was given: unset " + envRedisPassword + " or the URL's password"
	case strings.HasPrefix(msg, "NOPERM"):
		return "the ACL user may not run this: grant it the commands arcmill needs (+ping +@stream +@pubsub +evalsha +eval)"
	case errors.As(err, &unknownAuthority):
		return "the server's certificate is signed by an authority this machine does not trust: give --redis-tls-ca"
	case errors.As(err, &hostname):
		return "the server's certificate is for another name: connect by that name or give --redis-tls-server-name"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, or not for a server)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "the server does not speak TLS there: use redis:// and drop the --redis-tls flags"
	case opts.TLSConfig != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "i/o timeout")):
		return "no answer to the TLS handshake: if the server does not speak TLS on that port, use redis:// and drop the --redis-tls flags"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate") && opts.TLSConfig != nil &&
		len(opts.TLSConfig.Certificates) == 0:
		return "the server wants a client certificate: give --redis-tls-cert and --redis-tls-key"
	case strings.Contains(msg, "bad certificate"), strings.Contains(msg, "unknown certificate authority"):
		return "the server rejected the client certificate: check --redis-tls-cert and --redis-tls-key"
	case opts.TLSConfig != nil && len(opts.TLSConfig.Certificates) == 0 && closedByPeer(err):
		return "the server closed the TLS connection: if it checks clients (tls-auth-clients), give --redis-tls-cert and --redis-tls-key"
	case opts.TLSConfig != nil && closedByPeer(err):
		return "the server closed the TLS connection: check that it trusts the CA of --redis-tls-cert"
	case opts.TLSConfig == nil && closedByPeer(err):
		return "the server closed the connection: if it wants TLS, use rediss:// or --redis-tls"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		return "start it, or point --redis / " + envRedisAddr + " at a running one"
	}
	return "check --redis / " + envRedisAddr + " and the --redis-* flags"
}

// closedByPeer reports whether the server hung up without a word.
func closedByPeer(err error) bool {
	msg := err.Error()
	return errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// redisHint adds advice to a Redis error met after connecting (an ACL that
// allows PING but not the command).
func redisHint(err error) string {
	if err != nil && strings.Contains(err.Error(), "NOPERM") {
		return " (the ACL user lacks a permission arcmill needs: +@stream for streams, +@pubsub for channels, +eval/+evalsha for redrive)"
	}
	return ""
}

// quietRedisLog drops go-redis's own log lines: what they say comes back
// as the error that arcmill prints once, with advice.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// optionalInt is an int flag whose unset value is -1, shown in the help
// as no default (the flag package omits a default equal to 0).
type optionalInt int

func (o *optionalInt) String() string {
	if o == nil || *o < 0 {
		return "0"
	}
	return strconv.Itoa(int(*o))
}

func (o *optionalInt) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return errors.New("not a number")
	}
	if n < 0 {
		return errors.New("must not be negative")
	}
	*o = optionalInt(n)
	return nil
}
