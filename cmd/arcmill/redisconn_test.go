package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Secrets used by the throwaway servers; no output may ever contain one.
const (
	defaultPassword = "default-Secret-1"
	opsPassword     = "ops-Secret-2"
	watcherPassword = "watcher-Secret-3"
	wrongPassword   = "wrong-Secret-4"
)

// assertNoSecret checks that a run printed none of the passwords.
func assertNoSecret(t *testing.T, r result) {
	t.Helper()
	for _, s := range []string{defaultPassword, opsPassword, watcherPassword, wrongPassword} {
		assert.NotContains(t, r.stdout+r.stderr, s, "a password was printed")
	}
}

func TestCLIReachesRedisWithPasswordAndACLUsersAndAdvisesOnAuthErrors(t *testing.T) {
	t.Parallel()
	port := startRedisServer(t, "--port", "{port}", "--requirepass", defaultPassword,
		"--user", "ops", "on", ">"+opsPassword, "~*", "&*", "+@all",
		"--user", "watcher", "on", ">"+watcherPassword, "~*", "&*", "-@all", "+ping", "+hello", "+auth")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	at := "ARCMILL_REDIS_ADDR=" + addr
	admin := redis.NewClient(&redis.Options{Addr: addr, Password: defaultPassword})
	t.Cleanup(func() { assert.NoError(t, admin.Close()) })
	ctx := context.Background()

	// No password: the advice is the password, not "start it".
	r := arcmillWith(t, []string{at}, "publish", "order.created", "{}", "--stream", "s")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "ARCMILL_REDIS_PASSWORD")
	assert.Contains(t, r.stderr, "--redis-username")
	assert.NotContains(t, r.stderr, "start it")

	// A wrong password, from the environment or in a URL, is never printed.
	r = arcmillWith(t, []string{at, "ARCMILL_REDIS_PASSWORD=" + wrongPassword}, "publish", "order.created", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "refused the user name or password")
	assertNoSecret(t, r)
	r = arcmillWith(t, nil, "dlq", "list", "--redis", "redis://ops:"+wrongPassword+"@"+addr+"/0")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "redis://ops:xxxxx@"+addr)
	assertNoSecret(t, r)

	// The default user's password from the environment: publish, then tail.
	withPass := []string{at, "ARCMILL_REDIS_PASSWORD=" + defaultPassword}
	r = arcmillWith(t, withPass, "publish", "order.created", `{"n":1}`, "--stream", "auth:events")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = arcmillWith(t, withPass, "tail", "--stream", "auth:events", "--from-start", "--count", "1", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"type":"order.created"`)
	assertNoSecret(t, r)

	// An ACL user by flag, and by URL with a database number.
	r = arcmillWith(t, []string{at, "ARCMILL_REDIS_PASSWORD=" + opsPassword}, "publish", "order.paid", "{}",
		"--redis-username", "ops", "--stream", "auth:events")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = arcmillWith(t, nil, "publish", "order.shipped", "{}", "--stream", "auth:db2",
		"--redis", "redis://ops:"+opsPassword+"@"+addr+"/2")
	require.Equal(t, exitOK, r.code, r.stderr)
	assertNoSecret(t, r)
	db2 := redis.NewClient(&redis.Options{Addr: addr, Password: defaultPassword, DB: 2})
	t.Cleanup(func() { assert.NoError(t, db2.Close()) })
	assert.EqualValues(t, 1, db2.XLen(ctx, "auth:db2").Val(), "the URL's database")

	// --redis-db, and the password from a file.
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(defaultPassword+"\n"), 0o600))
	r = arcmillWith(t, []string{at}, "publish", "order.shipped", "{}", "--stream", "auth:db3", "--redis-db", "3",
		"--redis-password-file", pwFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	db3 := redis.NewClient(&redis.Options{Addr: addr, Password: defaultPassword, DB: 3})
	t.Cleanup(func() { assert.NoError(t, db3.Close()) })
	assert.EqualValues(t, 1, db3.XLen(ctx, "auth:db3").Val(), "--redis-db")
	assert.EqualValues(t, 2, admin.XLen(ctx, "auth:events").Val())

	// A user that may connect but not write: the advice names the ACL.
	r = arcmillWith(t, []string{at, "ARCMILL_REDIS_PASSWORD=" + watcherPassword, "ARCMILL_REDIS_USERNAME=watcher"},
		"publish", "order.created", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "NOPERM")
	assert.Contains(t, r.stderr, "+@stream")
	assertNoSecret(t, r)
}

func TestCLIReachesRedisOverMutualTLSWithAuthAndAdvisesOnTLSErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tlsPort := startRedisServer(t, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", pki.serverCert,
		"--tls-key-file", pki.serverKey, "--tls-ca-cert-file", pki.caCert, "--tls-auth-clients", "yes",
		"--requirepass", defaultPassword)
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	pass := "ARCMILL_REDIS_PASSWORD=" + defaultPassword
	clientCert := []string{"--redis-tls-cert", pki.clientCert, "--redis-tls-key", pki.clientKey}
	withTLS := func(args ...string) []string {
		return append(append(args, "--redis-tls-ca", pki.caCert), clientCert...)
	}

	// rediss:// with the CA and a client certificate, and AUTH.
	r := arcmillWith(t, []string{pass}, withTLS("publish", "order.created", `{"n":1}`, "--stream", "tls:events",
		"--redis", "rediss://"+addr)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	// host:port with --redis-tls, and a tail that reads it back.
	r = arcmillWith(t, []string{pass, "ARCMILL_REDIS_ADDR=" + addr}, withTLS("tail", "--redis-tls",
		"--stream", "tls:events", "--from-start", "--count", "1", "--format", "json")...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"type":"order.created"`)
	// The certificate checked against the name it was issued for.
	r = arcmillWith(t, []string{pass}, withTLS("publish", "order.paid", "{}", "--stream", "tls:events",
		"--redis", "rediss://localhost:"+strconv.Itoa(tlsPort))...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assertNoSecret(t, r)

	cases := []struct {
		name   string
		env    []string
		args   []string
		advice string
	}{
		{"no CA", []string{pass}, append([]string{"--redis", "rediss://" + addr}, clientCert...), "--redis-tls-ca"},
		{"another CA", []string{pass}, append([]string{"--redis", "rediss://" + addr, "--redis-tls-ca", pki.otherCA}, clientCert...),
			"--redis-tls-ca"},
		{"no client certificate", []string{pass}, []string{"--redis", "rediss://" + addr, "--redis-tls-ca", pki.caCert},
			"--redis-tls-cert"},
		{"plain text to a TLS port", []string{pass}, []string{"--redis", "redis://" + addr}, "rediss://"},
		{"wrong server name", []string{pass}, withTLS("--redis", "rediss://"+addr, "--redis-tls-server-name", "redis.example"),
			"--redis-tls-server-name"},
		{"no password", nil, withTLS("--redis", "rediss://"+addr), "ARCMILL_REDIS_PASSWORD"},
	}
	for _, c := range cases {
		r := arcmillWith(t, c.env, append([]string{"publish", "order.created", "{}"}, c.args...)...)
		assert.Equal(t, exitFailure, r.code, c.name)
		assert.Contains(t, r.stderr, c.advice, c.name)
		assert.NotContains(t, r.stderr, "start it", c.name)
	}

	// Skipping verification works, and says it is unsafe every time.
	r = arcmillWith(t, []string{pass}, append([]string{"publish", "order.created", "{}", "--stream", "tls:events",
		"--redis", "rediss://" + addr, "--redis-tls-insecure-skip-verify"}, clientCert...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "warning: --redis-tls-insecure-skip-verify")

	// TLS to a server that does not speak it.
	plain := startRedisServer(t, "--port", "{port}")
	r = arcmillWith(t, nil, "publish", "order.created", "{}", "--redis", "rediss://127.0.0.1:"+strconv.Itoa(plain),
		"--redis-tls-ca", pki.caCert)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "does not speak TLS")
}

func TestRedisFlagMistakesAreUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--redis", "a:1,b:2"},
		{"--redis", "http://x:1"},
		{"--redis", "localhost"},
		{"--redis", "a:1", "--redis-cluster", "--sentinel-master", "m"},
		{"--redis", "a:1", "--redis-cluster", "--redis-db", "2"},
		{"--redis-db", "-2"},
		{"--redis-tls-cert", "x.pem"},
		{"--redis-tls-ca", "/no/such/ca.pem"},
		{"--redis", "redis://a:1?addr=b:2"},
	} {
		r := arcmillWith(t, nil, append([]string{"publish", "order.created", "{}"}, args...)...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
	}
	r := arcmillWith(t, nil, "publish", "order.created", "{}", "--redis", "redis://u:"+wrongPassword+"@[::1")
	assert.Equal(t, exitUsage, r.code)
	assertNoSecret(t, r)
}

// A one-node Redis Cluster (all slots on one node) is reached through
// --redis-cluster with a seed address or a URL.
func TestCLIReachesARedisCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := startRedisServer(t, "--port", "{port}", "--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes-{port}.conf"))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	node := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, node.Close()) })
	ctx := context.Background()
	require.NoError(t, node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err())
	require.Eventually(t, func() bool {
		info, err := node.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, redisServerStart, 10*time.Millisecond, "the cluster never became ok")

	r := arcmillWith(t, []string{"ARCMILL_REDIS_ADDR=" + addr}, "publish", "order.created", `{"n":1}`,
		"--redis-cluster", "--stream", "{shop}:events")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = arcmillWith(t, nil, "tail", "--redis", "redis://"+addr, "--redis-cluster", "--stream", "{shop}:events",
		"--from-start", "--count", "1", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"type":"order.created"`)
}

// Through Sentinel, the CLI reaches the master that Sentinel names.
func TestCLIReachesTheMasterThroughSentinel(t *testing.T) {
	t.Parallel()
	master := startRedisServer(t, "--port", "{port}")
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte("sentinel monitor shop 127.0.0.1 "+strconv.Itoa(master)+" 1\n"), 0o600))
	sentinel := startRedisServer(t, conf, "--sentinel", "--port", "{port}")
	at := "127.0.0.1:" + strconv.Itoa(sentinel)

	r := arcmillWith(t, []string{"ARCMILL_REDIS_ADDR=" + at}, "publish", "order.created", "{}",
		"--sentinel-master", "shop", "--stream", "sentinel:events")
	require.Equal(t, exitOK, r.code, r.stderr)
	direct := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(master)})
	t.Cleanup(func() { assert.NoError(t, direct.Close()) })
	assert.EqualValues(t, 1, direct.XLen(context.Background(), "sentinel:events").Val(), "written on the master")

	r = arcmillWith(t, []string{"ARCMILL_REDIS_ADDR=" + at}, "publish", "order.created", "{}",
		"--sentinel-master", "no-such-master")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, `master "no-such-master" via Sentinel`)
}
