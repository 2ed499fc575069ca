package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/config"
)

// The HTTP/2 tests: event streams over TLS (many on one connection) and
// over h2c, the certificate reloaded from its files, and refusals that
// must not end the other streams of their connection.

// testCert is a self-signed certificate for 127.0.0.1 and localhost.
type testCert struct {
	certPEM, keyPEM []byte
	leaf            *x509.Certificate
}

func newTestCert(t testing.TB, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, for the clients' RootCAs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		leaf:    leaf,
	}
}

// roots is a pool that trusts c.
func (c testCert) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.leaf)
	return p
}

// certPaths are the files a TLS test server reads.
type certPaths struct{ cert, key string }

// write replaces the files with c, each by a rename, as a renewal does.
func (p certPaths) write(t testing.TB, c testCert) {
	t.Helper()
	for _, f := range []struct {
		path string
		data []byte
	}{{p.key, c.keyPEM}, {p.cert, c.certPEM}} {
		tmp := f.path + ".new"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// startTLS runs the server with DASHBOARD_TLS_CERT_FILE/KEY_FILE holding a
// fresh self-signed certificate. s.get skips verification, because the
// reload test changes the certificate under it; the tests that check the
// chain build their clients from the returned certificate.
func startTLS(t *testing.T, cfg config.Config) (*testServer, certPaths, testCert) {
	t.Helper()
	s, paths, c, stop := startTLSStoppable(t, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return s, paths, c
}

// startTLSStoppable is startTLS with the server's stop (see startStoppable).
func startTLSStoppable(t *testing.T, cfg config.Config) (*testServer, certPaths, testCert, func() error) {
	t.Helper()
	dir := t.TempDir()
	paths := certPaths{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	c := newTestCert(t, "first")
	paths.write(t, c)
	cfg.TLSCertFile, cfg.TLSKeyFile = paths.cert, paths.key
	s, stop := startStoppable(t, cfg, false)
	s.URL = "https://" + s.addr
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	s.client = &http.Client{Transport: tr}
	return s, paths, c, stop
}

// setupLatest creates table h2t and the public dashboard "h2" whose stat
// panel "n" counts it.
func setupLatest(t *testing.T, s *testServer) {
	t.Helper()
	s.exec(t, `CREATE TABLE h2t (id serial PRIMARY KEY)`)
	createDashboard(t, s.pool, "h2", true, [3]string{"n", "stat", "SELECT count(*) AS n FROM h2t"})
	awaitDashboard(t, s, "h2", "h2t")
}

// statOf is the value the stat panel of an update shows.
func statOf(m sseMsg) string { return statValue(m.body()) }

// oneConn is an HTTP/2 client that holds exactly one TLS connection: every
// request is a stream of it.
func oneConn(t *testing.T, addr string, roots *x509.CertPool) (*http.Client, *http2.ClientConn) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q, want h2", p)
	}
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: cc}, cc
}

// TestHTTP2FiftyStreamsOneTLSConnection: 50 event streams share one TLS
// connection, and after a committed insert each shows the new count.
func TestHTTP2FiftyStreamsOneTLSConnection(t *testing.T) {
	t.Parallel()
	s, _, cert := startTLS(t, testConfig(t))
	setupLatest(t, s)
	client, cc := oneConn(t, s.addr, cert.roots())
	streams := make([]*sseClient, 50)
	for i := range streams {
		streams[i] = openSSE(t, client, s.URL+"/d/h2/events")
		if c := streams[i].resp; c.StatusCode != http.StatusOK || c.ProtoMajor != 2 {
			t.Fatalf("stream %d: got %d over %s, want 200 over HTTP/2", i, c.StatusCode, c.Proto)
		}
	}
	for i, c := range streams {
		if got := statOf(wantFull(t, c)); got != "0" {
			t.Fatalf("stream %d: first frame shows %q, want 0", i, got)
		}
	}
	if n := promValue(t, s, "dashboard_sse_clients"); n != 50 {
		t.Fatalf("got %v open streams, want 50", n)
	}
	s.exec(t, `INSERT INTO h2t DEFAULT VALUES`)
	for i, c := range streams {
		if got := statOf(c.nextUpdate(t)); got != "1" {
			t.Fatalf("stream %d: got %q after the insert, want 1", i, got)
		}
	}
	if st := cc.State(); st.StreamsActive != 50 || st.Closing || st.Closed {
		t.Fatalf("client connection: %+v, want 50 active streams, open", st)
	}
	if got := promLabelled(t, s, `dashboard_sse_streams_opened_total{proto="HTTP/2.0"}`); got != 50 {
		t.Errorf("streams opened over HTTP/2: got %v, want 50", got)
	}
}

// wantFull reads the first update of a stream opened without a version:
// the full state.
func wantFull(t *testing.T, c *sseClient) sseMsg {
	t.Helper()
	m := c.nextUpdate(t)
	wantUpdate(t, m, "#heading", "#grid")
	return m
}

// promLabelled returns the value of a metric line given with its labels.
func promLabelled(t testing.TB, s *testServer, series string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// TestHTTP2RefusalsKeepTheConnection: on one HTTP/2 connection, requests
// answered 400 (a body), 404 and 503 (the stream limit) end only their own
// stream; the open streams of the connection go on.
func TestHTTP2RefusalsKeepTheConnection(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxStreams = 2
	s, _, cert := startTLS(t, cfg)
	setupLatest(t, s)
	client, cc := oneConn(t, s.addr, cert.roots())
	streams := []*sseClient{openSSE(t, client, s.URL+"/d/h2/events"), openSSE(t, client, s.URL+"/d/h2/events")}
	for _, c := range streams {
		wantFull(t, c)
	}
	body, _ := http.NewRequest("GET", s.URL+"/d/h2/events", strings.NewReader("hello"))
	notFound, _ := http.NewRequest("GET", s.URL+"/d/nothing-here/events", nil)
	busy, _ := http.NewRequest("GET", s.URL+"/d/h2/events", nil)
	for _, r := range []struct {
		req  *http.Request
		want int
	}{{body, http.StatusBadRequest}, {notFound, http.StatusNotFound}, {busy, http.StatusServiceUnavailable}} {
		resp, err := client.Do(r.req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.req.Method, r.req.URL.Path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.want || resp.ProtoMajor != 2 {
			t.Fatalf("%s: got %d over %s, want %d over HTTP/2", r.req.URL.Path, resp.StatusCode, resp.Proto, r.want)
		}
	}
	if st := cc.State(); st.Closing || st.Closed {
		t.Fatalf("the connection is closing after the refusals: %+v", st)
	}
	s.exec(t, `INSERT INTO h2t DEFAULT VALUES`)
	for i, c := range streams {
		if got := statOf(c.nextUpdate(t)); got != "1" {
			t.Fatalf("stream %d: got %q after the insert, want 1", i, got)
		}
	}
}

// TestH2CStream: with DASHBOARD_H2C a stream over HTTP/2 without TLS gets
// its frames.
func TestH2CStream(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.H2C = true
	s := startServer(t, cfg, false)
	setupLatest(t, s)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	c := openSSE(t, &http.Client{Transport: tr}, s.URL+"/d/h2/events")
	if c.resp.StatusCode != http.StatusOK || c.resp.ProtoMajor != 2 {
		t.Fatalf("got %d over %s, want 200 over HTTP/2", c.resp.StatusCode, c.resp.Proto)
	}
	if got := statOf(wantFull(t, c)); got != "0" {
		t.Fatalf("first frame shows %q, want 0", got)
	}
	s.exec(t, `INSERT INTO h2t DEFAULT VALUES`)
	if got := statOf(c.nextUpdate(t)); got != "1" {
		t.Fatalf("got %q after the insert, want 1", got)
	}
}

// TestTLSTokenCookieSecure: the token exchange over TLS sets a Secure
// cookie, and a private dashboard's stream over HTTP/2 ends when its token
// is revoked.
func TestTLSTokenCookieSecure(t *testing.T) {
	t.Parallel()
	s, _, cert := startTLS(t, testConfig(t))
	s.exec(t, `CREATE TABLE h2t (id serial PRIMARY KEY)`)
	createDashboard(t, s.pool, "private", false, [3]string{"n", "stat", "SELECT count(*) AS n FROM h2t"})
	awaitDashboard(t, s, "private", "h2t")
	secret, tok, err := access.Create(context.Background(), s.pool, "private", "tls test", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.roots()}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	eventually(t, "the token known to the server", func() bool {
		resp, err := client.Get(s.URL + "/d/private?token=" + secret)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusSeeOther
	})
	resp, err := client.Get(s.URL + "/d/private?token=" + secret)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	k := tokenCookieOf(resp)
	if k == nil || !k.Secure || !k.HttpOnly {
		t.Fatalf("token exchange over TLS: got cookie %v (%q), want Secure and HttpOnly", k, resp.Header.Values("Set-Cookie"))
	}
	stream := openSSE(t, client, s.URL+"/d/private/events", "Cookie", "dashboard_token="+secret)
	if stream.resp.StatusCode != http.StatusOK || stream.resp.ProtoMajor != 2 {
		t.Fatalf("stream with the cookie: got %d over %s, want 200 over HTTP/2", stream.resp.StatusCode, stream.resp.Proto)
	}
	wantFull(t, stream)
	if err := access.Revoke(context.Background(), s.pool, tok.ID); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.nextWithin(contractWait)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream of a revoked token: got %v, want its end", err)
		}
	}
}

// TestTLSCertificateReload: a new pair written over the files is served to
// new handshakes without a restart; a broken one keeps the previous
// certificate.
func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	s, paths, first := startTLS(t, testConfig(t))
	served := func() *big.Int {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := served(); got.Cmp(first.leaf.SerialNumber) != 0 {
		t.Fatalf("got certificate %v, want the first %v", got, first.leaf.SerialNumber)
	}
	second := newTestCert(t, "second")
	paths.write(t, second)
	eventually(t, "the second certificate served", func() bool {
		return served().Cmp(second.leaf.SerialNumber) == 0
	})
	// A client that trusts only the second certificate verifies it.
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: second.roots()})
	if err != nil {
		t.Fatalf("handshake trusting the second certificate: %v", err)
	}
	conn.Close()

	const broken = "TLS certificate files changed but do not load"
	before := strings.Count(s.logs.String(), broken)
	if err := os.WriteFile(paths.cert, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the broken pair noticed", func() bool {
		served()
		return strings.Count(s.logs.String(), broken) > before
	})
	if got := served(); got.Cmp(second.leaf.SerialNumber) != 0 {
		t.Fatalf("after a broken replacement: got certificate %v, want the second %v", got, second.leaf.SerialNumber)
	}
	// The server still serves: the same process answers over TLS.
	if resp, _ := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the reloads: got %d", resp.StatusCode)
	}
}

// TestTLSBadPairStopsTheStart: a pair that does not load stops serve with
// an error that names the variables.
func TestTLSBadPairStopsTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := newTestCert(t, "a"), newTestCert(t, "b")
	paths := certPaths{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	paths.write(t, a)
	if err := os.WriteFile(paths.key, b.keyPEM, 0o600); err != nil { // a key of another certificate
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key string }{
		{"mismatched key", paths.cert, paths.key},
		{"missing file", filepath.Join(dir, "missing.pem"), paths.key},
	} {
		cfg := configFor("postgres://127.0.0.1:1/never") // not reached: the certificate comes first
		cfg.TLSCertFile, cfg.TLSKeyFile = tc.cert, tc.key
		err := serve(context.Background(), cfg, slog.New(slog.DiscardHandler), serveOptions{})
		if err == nil || !strings.Contains(err.Error(), "DASHBOARD_TLS_CERT_FILE") {
			t.Errorf("%s: got %v, want an error naming DASHBOARD_TLS_CERT_FILE", tc.name, err)
		}
	}
}

// TestCertFilesReloadRules drives the reload with its own clock: the files
// are looked at no more than once a second, a changed pair is served, even
// one of the same sizes and modification times, and a broken one is logged
// once and keeps the certificate served.
func TestCertFilesReloadRules(t *testing.T) {
	dir := t.TempDir()
	paths := certPaths{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	first, second := newTestCert(t, "first"), newTestCert(t, "second")
	paths.write(t, first)
	logs := &syncBuffer{}
	c, err := loadCertFiles(paths.cert, paths.key, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	serial := func() *big.Int {
		cert, err := c.getCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Leaf.SerialNumber
	}
	if got := serial(); got.Cmp(first.leaf.SerialNumber) != 0 {
		t.Fatalf("got %v, want the first certificate", got)
	}
	paths.write(t, second)
	advance(certCheckEvery / 2)
	if got := serial(); got.Cmp(first.leaf.SerialNumber) != 0 {
		t.Fatalf("within a second of the last look: got %v, want the first certificate still", got)
	}
	advance(certCheckEvery)
	if got := serial(); got.Cmp(second.leaf.SerialNumber) != 0 {
		t.Fatalf("after a second: got %v, want the second certificate", got)
	}
	if err := os.WriteFile(paths.key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		advance(certCheckEvery)
		if got := serial(); got.Cmp(second.leaf.SerialNumber) != 0 {
			t.Fatalf("with a broken key: got %v, want the second certificate kept", got)
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Fatalf("broken pair logged %d times, want once:\n%s", n, logs.String())
	}
	// A pair that is broken for one check only (a renewal that wrote the
	// certificate, not yet the key) is not logged.
	paths.write(t, second)
	advance(certCheckEvery)
	serial()
	logged := strings.Count(logs.String(), "do not load")
	if err := os.WriteFile(paths.key, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	advance(certCheckEvery)
	serial()
	paths.write(t, second)
	advance(certCheckEvery)
	serial()
	if n := strings.Count(logs.String(), "do not load") - logged; n != 0 {
		t.Fatalf("a pair broken for one check logged %d times, want none:\n%s", n, logs.String())
	}
	// Fixed again: served, and a later break is logged again.
	paths.write(t, first)
	advance(certCheckEvery)
	if got := serial(); got.Cmp(first.leaf.SerialNumber) != 0 {
		t.Fatalf("after the fix: got %v, want the first certificate", got)
	}
	// A renewal of the same sizes with the same modification times, as a
	// copy within the file system's time granularity leaves it.
	var third testCert
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("no certificate of the first's sizes in 1000 tries")
		}
		third = newTestCert(t, "first")
		if len(third.certPEM) == len(first.certPEM) && len(third.keyPEM) == len(first.keyPEM) {
			break
		}
	}
	var mods [2]time.Time
	for i, name := range []string{paths.cert, paths.key} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		mods[i] = fi.ModTime()
	}
	paths.write(t, third)
	for i, name := range []string{paths.cert, paths.key} {
		if err := os.Chtimes(name, mods[i], mods[i]); err != nil {
			t.Fatal(err)
		}
	}
	advance(certCheckEvery)
	if got := serial(); got.Cmp(third.leaf.SerialNumber) != 0 {
		t.Fatalf("after a renewal of the same sizes and times: got %v, want the third certificate %v", got, third.leaf.SerialNumber)
	}
}

// TestTLSHTTP1Stream: a client without HTTP/2 gets its stream over TLS on
// HTTP/1.1, written by the handler (chunked, no Connection: close).
func TestTLSHTTP1Stream(t *testing.T) {
	t.Parallel()
	s, _, cert := startTLS(t, testConfig(t))
	setupLatest(t, s)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.roots(), NextProtos: []string{"http/1.1"}}}
	t.Cleanup(tr.CloseIdleConnections)
	c := openSSE(t, &http.Client{Transport: tr}, s.URL+"/d/h2/events")
	if c.resp.StatusCode != http.StatusOK || c.resp.ProtoMajor != 1 {
		t.Fatalf("got %d over %s, want 200 over HTTP/1.1", c.resp.StatusCode, c.resp.Proto)
	}
	if c.resp.Close || c.resp.Header.Get("Connection") != "" {
		t.Errorf("got Connection %q, want none: the response ends with its last chunk", c.resp.Header.Get("Connection"))
	}
	if got := statOf(wantFull(t, c)); got != "0" {
		t.Fatalf("first frame shows %q, want 0", got)
	}
	s.exec(t, `INSERT INTO h2t DEFAULT VALUES`)
	if got := statOf(c.nextUpdate(t)); got != "1" {
		t.Fatalf("got %q after the insert, want 1", got)
	}
	if got := promLabelled(t, s, `dashboard_sse_streams_opened_total{proto="HTTP/1.1"}`); got != 1 {
		t.Errorf("streams opened over HTTP/1.1: got %v, want 1", got)
	}
}

// TestShutdownEndsHTTP2Streams: at shutdown the streams of an HTTP/2
// connection are told to reconnect and end, and serve returns.
func TestShutdownEndsHTTP2Streams(t *testing.T) {
	t.Parallel()
	s, _, cert, stop := startTLSStoppable(t, testConfig(t))
	setupLatest(t, s)
	client, _ := oneConn(t, s.addr, cert.roots())
	streams := []*sseClient{openSSE(t, client, s.URL+"/d/h2/events"), openSSE(t, client, s.URL+"/d/h2/events")}
	for _, c := range streams {
		wantFull(t, c)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for i, c := range streams {
		var last sseMsg
		for {
			m, err := c.nextWithin(contractWait)
			if err != nil {
				if last.event != "reconnect" || last.retry == "" {
					t.Errorf("stream %d ended (%v) after %q, want a retry and the reconnect event last", i, err, last.lines)
				}
				break
			}
			last = m
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v", err)
	}
}
