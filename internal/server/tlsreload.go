package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Certificate is a TLS certificate and key read from PEM files and read
// again when they change, so that a renewed certificate is served without a
// restart. It is safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	onReload          func(error)
	now               func() time.Time

	cert            atomic.Pointer[tls.Certificate]
	check           recheck
	mu              sync.Mutex // held while the files are read
	rawCert, rawKey []byte
	// failed is what was last refused (the contents, or the errors that
	// kept the files from being read), so that a broken renewal is logged
	// and counted once, not at every read.
	failed string
}

// LoadCertificate reads the certificate and key files. It returns an error
// naming the files when they cannot be read or do not form a key pair.
// onReload, if not nil, is called after each later read that found the files
// changed, with nil or the error that kept the previous certificate in
// force.
func LoadCertificate(certFile, keyFile string, logger *slog.Logger, onReload func(error)) (*Certificate, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: logger.With("component", "tls"), onReload: onReload, now: time.Now}
	rawCert, rawKey, cert, err := readKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.rawCert, c.rawKey = rawCert, rawKey
	c.cert.Store(cert)
	c.check.read(c.now())
	return c, nil
}

func readKeyPair(certFile, keyFile string) (rawCert, rawKey []byte, cert *tls.Certificate, err error) {
	rawCert, errC := os.ReadFile(certFile)
	rawKey, errK := os.ReadFile(keyFile)
	cert, err = keyPair(certFile, keyFile, rawCert, errC, rawKey, errK)
	return rawCert, rawKey, cert, err
}

// keyPair makes the certificate of files read with the errors given.
func keyPair(certFile, keyFile string, rawCert []byte, errC error, rawKey []byte, errK error) (*tls.Certificate, error) {
	if errC != nil {
		return nil, fmt.Errorf("tls certificate: %w", errC)
	}
	if errK != nil {
		return nil, fmt.Errorf("tls key: %w", errK)
	}
	pair, err := tls.X509KeyPair(rawCert, rawKey)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &pair, nil
}

// GetCertificate is the tls.Config.GetCertificate hook: it returns the
// certificate in force, reading the files again first when the last read is
// more than a second old. A renewal that cannot be read or does not form a
// key pair is logged and the previous certificate goes on being served.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.check.due(c.now()) {
		c.reload()
	}
	return c.cert.Load(), nil
}

func (c *Certificate) reload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	rawCert, errC := os.ReadFile(c.certFile)
	rawKey, errK := os.ReadFile(c.keyFile)
	if errC == nil && errK == nil && bytes.Equal(rawCert, c.rawCert) && bytes.Equal(rawKey, c.rawKey) {
		c.failed = ""
		return
	}
	seen := fmt.Sprintf("%v\x00%v\x00%s\x00%s", errC, errK, rawCert, rawKey)
	if seen == c.failed {
		return
	}
	cert, err := keyPair(c.certFile, c.keyFile, rawCert, errC, rawKey, errK)
	c.failed = ""
	if err != nil {
		c.failed = seen
		c.log.Error("tls certificate not reloaded; the previous one stays in force", "err", err)
	} else {
		c.rawCert, c.rawKey = rawCert, rawKey
		c.cert.Store(cert)
		c.log.Info("tls certificate reloaded", "cert_file", c.certFile)
	}
	if c.onReload != nil {
		c.onReload(err)
	}
}

// TLSConfig returns a server configuration that serves the certificate:
// TLS 1.2 at least, HTTP/2 and HTTP/1.1 offered.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}
