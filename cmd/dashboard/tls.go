package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// certCheckEvery is how often, at most, the certificate files are looked
// at again: a read of each per second, on the handshakes that come.
const certCheckEvery = time.Second

// certFiles serves the certificate of DASHBOARD_TLS_CERT_FILE and
// DASHBOARD_TLS_KEY_FILE and follows changes of the files without a
// restart (a renewal by certbot or cert-manager): a handshake gets the
// certificate served, and at most once every certCheckEvery one handshake
// reads both files again and compares their SHA-256 with that of the pair
// served; when it differs, the pair is parsed and served. Contents, not
// modification times and sizes: a renewal of the same size within the
// file system's time granularity is noticed too, and the files are small.
// The other handshakes go on with the certificate served meanwhile, so a
// slow file system holds up one handshake a second, not all of them. A
// pair that does not load keeps the certificate served so far, and is
// logged once.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger
	now               func() time.Time

	cert      atomic.Pointer[tls.Certificate]
	checked   atomic.Int64 // the last look at the files, in Unix nanoseconds
	reloading atomic.Bool  // a handshake is looking at the files

	// Only the handshake that set reloading touches these.
	loaded [sha256.Size]byte // of the pair served
	failed [sha256.Size]byte // of the last pair that did not load, logged once
	// seen is a pair that did not load at the last check and is not
	// logged yet: a renewal that writes the certificate before the key
	// shows such a pair for a moment, and the next check loads it.
	seen [sha256.Size]byte
}

// loadCertFiles reads the pair at start; an error names the variables.
func loadCertFiles(certFile, keyFile string, logger *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, logger: logger, now: time.Now}
	certPEM, keyPEM, err := c.read()
	if err == nil {
		err = c.load(certPEM, keyPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("DASHBOARD_TLS_CERT_FILE=%s, DASHBOARD_TLS_KEY_FILE=%s: %w", certFile, keyFile, err)
	}
	c.checked.Store(c.now().UnixNano())
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
	if c.due() && c.reloading.CompareAndSwap(false, true) {
		// Asked again: another handshake may have looked in between.
		if c.due() {
			c.checked.Store(c.now().UnixNano())
			c.reload()
		}
		c.reloading.Store(false)
	}
	return c.cert.Load(), nil
}

// due reports whether the files were last looked at certCheckEvery ago.
func (c *certFiles) due() bool {
	return c.now().Sub(time.Unix(0, c.checked.Load())) >= certCheckEvery
}

// reload reads the pair again and serves it if it changed and loads.
// Called by one handshake at a time.
func (c *certFiles) reload() {
	certPEM, keyPEM, err := c.read()
	var sum [sha256.Size]byte
	if err == nil {
		sum = pairSum(certPEM, keyPEM)
		if sum == c.loaded {
			c.seen = [sha256.Size]byte{}
			return
		}
		if err = c.load(certPEM, keyPEM); err == nil {
			c.failed, c.seen = [sha256.Size]byte{}, [sha256.Size]byte{}
			c.logger.Info("TLS certificate reloaded", "cert_file", c.certFile, "not_after", c.cert.Load().Leaf.NotAfter)
			return
		}
	} else {
		// A file that cannot be read is told apart by its error.
		sum = sha256.Sum256([]byte(err.Error()))
	}
	if sum == c.failed {
		return // this pair was logged already
	}
	if sum != c.seen {
		c.seen = sum // logged if it is still there at the next check
		return
	}
	c.failed = sum
	c.logger.Error("TLS certificate files changed but do not load; serving the previous certificate",
		"cert_file", c.certFile, "key_file", c.keyFile, "err", err)
}

// read reads both files.
func (c *certFiles) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(c.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// load parses the pair and, if it loads, serves it from now on.
func (c *certFiles) load(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	c.loaded = pairSum(certPEM, keyPEM)
	c.cert.Store(&cert)
	return nil
}

// pairSum is the SHA-256 of both files, the length of the first in front
// so that no two pairs run together alike.
func pairSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
