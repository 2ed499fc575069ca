package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often, at most, the certificate files are looked
// at again: a stat of each per second, on the handshakes that come.
const certCheckEvery = time.Second

// certFiles serves the certificate of DASHBOARD_TLS_CERT_FILE and
// DASHBOARD_TLS_KEY_FILE and follows changes of the files without a
// restart (a renewal by certbot or cert-manager): a handshake gets the
// cached certificate, and at most once every certCheckEvery the files'
// modification times and sizes are compared with those of the pair
// loaded; when they differ, the pair is read again. A pair that does not
// load keeps the certificate served so far, and is logged once.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  [2]fileStamp // of the pair served
	failed  [2]fileStamp // of the last pair that did not load, logged once
	checked time.Time
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

// loadCertFiles reads the pair at start; an error names the variables.
func loadCertFiles(certFile, keyFile string, logger *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, logger: logger, now: time.Now}
	stamps, err := c.stat()
	if err == nil {
		err = c.load(stamps)
	}
	if err != nil {
		return nil, fmt.Errorf("DASHBOARD_TLS_CERT_FILE=%s, DASHBOARD_TLS_KEY_FILE=%s: %w", certFile, keyFile, err)
	}
	c.checked = c.now()
	return c, nil
}

// tlsConfig is the server's TLS configuration: HTTP/2 first, HTTP/1.1 for
// clients without it, the certificate from the files.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.getCertificate,
	}
}

func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= certCheckEvery {
		c.checked = now
		c.reload()
	}
	return c.cert, nil
}

// reload reads the pair again if the files changed. Called with mu held.
func (c *certFiles) reload() {
	stamps, err := c.stat()
	if err == nil && stamps == c.loaded {
		return
	}
	if err == nil {
		if err = c.load(stamps); err == nil {
			c.failed = [2]fileStamp{}
			c.logger.Info("TLS certificate reloaded", "cert_file", c.certFile, "not_after", c.cert.Leaf.NotAfter)
			return
		}
	}
	if stamps == c.failed && err != nil {
		return // this pair was logged already
	}
	c.failed = stamps
	c.logger.Error("TLS certificate files changed but do not load; serving the previous certificate",
		"cert_file", c.certFile, "key_file", c.keyFile, "err", err)
}

func (c *certFiles) stat() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return s, err
		}
		s[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

// load reads the pair and, if it loads, serves it from now on.
func (c *certFiles) load(stamps [2]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.cert, c.loaded = &cert, stamps
	return nil
}
