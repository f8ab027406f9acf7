package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// redisServerStart bounds the wait for a throwaway redis-server to listen.
const redisServerStart = 15 * time.Second

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// startRedisServer runs a throwaway redis-server on a free loopback port
// with args (where "{port}" is replaced by that port; a first argument
// that is no flag is a configuration file) and returns the
// port once it accepts connections. It is stopped when t ends. A missing
// redis-server binary fails the test, or skips it under
// ARCMILL_SKIP_MISSING_SERVICES=1, as the shared services do.
func startRedisServer(t *testing.T, args ...string) int {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("redis-server is not installed (%v); to skip the tests that need it, set %s=1", err, testenv.SkipVariable)
		}
		t.Skipf("redis-server is not installed, skipped as %s=1 asks", testenv.SkipVariable)
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ { // another process may take the free port first
		port := freePort(t)
		var full []string
		rest := args
		if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
			full, rest = []string{args[0]}, args[1:] // a configuration file comes first
		}
		full = append(full, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
		for _, a := range rest {
			full = append(full, strings.ReplaceAll(a, "{port}", strconv.Itoa(port)))
		}
		cmd := exec.Command(bin, full...)
		var log bytes.Buffer
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = cmd.Stdout
		require.NoError(t, cmd.Start())
		ready, logged := make(chan struct{}), make(chan struct{})
		go func() { // the log says when it listens; a failed start exits instead
			defer close(logged)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				// A server says it is ready; a Sentinel, that it monitors.
				if strings.Contains(sc.Text(), "Ready to accept connections") || strings.Contains(sc.Text(), "+monitor master") {
					close(ready)
					_, _ = io.Copy(io.Discard, out)
					return
				}
			}
		}()
		exited := make(chan error, 1)
		go func() { <-logged; exited <- cmd.Wait() }()
		select {
		case <-ready:
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return port
		case <-exited:
		case <-time.After(redisServerStart):
			_ = cmd.Process.Kill()
			<-exited
		}
		if attempt == 2 {
			t.Fatalf("redis-server %v did not start:\n%s", full, log.String())
		}
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1 and localhost, and a
// client certificate, as PEM files.
type testPKI struct {
	caCert, serverCert, serverKey, clientCert, clientKey string
	otherCA                                              string // a CA that signed none of them
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return der
	}
	serial := int64(1)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	}
	newCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := newKey()
		tmpl := template(cn)
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		require.NoError(t, err)
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return cert, k, der
	}
	ca, caKey, caDER := newCA("arcmill test CA")
	_, _, otherDER := newCA("another CA")
	leaf := func(cn string, usage x509.ExtKeyUsage, ips []net.IP, names []string) ([]byte, []byte) {
		k := newKey()
		tmpl := template(cn)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses, tmpl.DNSNames = ips, names
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		require.NoError(t, err)
		return der, keyDER(k)
	}
	srv, srvKey := leaf("redis", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	cli, cliKey := leaf("arcmill", x509.ExtKeyUsageClientAuth, nil, nil)
	return testPKI{
		caCert: write("ca.pem", "CERTIFICATE", caDER), otherCA: write("other-ca.pem", "CERTIFICATE", otherDER),
		serverCert: write("server.pem", "CERTIFICATE", srv), serverKey: write("server.key", "PRIVATE KEY", srvKey),
		clientCert: write("client.pem", "CERTIFICATE", cli), clientKey: write("client.key", "PRIVATE KEY", cliKey),
	}
}

// arcmillWith runs the binary with only the given ARCMILL_* settings (the
// caller's own ARCMILL_REDIS_* variables are dropped) and no stdin.
func arcmillWith(t *testing.T, env []string, args ...string) result {
	t.Helper()
	var full []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ARCMILL_REDIS_") {
			full = append(full, kv)
		}
	}
	return runBinary(t, nil, append(full, env...), args...)
}
