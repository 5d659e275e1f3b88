package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// healthEvent is a service's health transition, sent by its checker to the
// agent loop.
type healthEvent struct {
	service string
	gen     uint64 // the checker generation; stale events are dropped
	healthy bool
	detail  string // why it failed, or "" when healthy
	at      time.Time
}

// checker polls one service's health endpoint and reports transitions
// after Rise consecutive successes or Fall consecutive failures.
type checker struct {
	service string
	gen     uint64
	check   bgp.Check
	client  *http.Client
	tr      *http.Transport
	out     chan<- healthEvent
	// caStamp is the modification time and size of the CA file the
	// transport trusts: a CA rotation rewrites the file (the old and the
	// new CA, then the new one only) and the checker trusts what it holds
	// from the next probe on.
	caStamp string
}

func newChecker(service string, gen uint64, ch bgp.Check, out chan<- healthEvent) (*checker, error) {
	tr := &http.Transport{
		Proxy:               nil, // health checks are local: never through a proxy
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &checker{
		service: service, gen: gen, check: ch, out: out, tr: tr,
		client: &http.Client{Transport: tr, Timeout: ch.Timeout.Duration,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	// A CA file that does not exist yet (the agent starts before the
	// control plane writes its certificates) is read again at each probe;
	// one that exists but holds no certificate is a configuration error.
	if err := c.loadCA(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return c, nil
}

// loadCA reads the check's CA bundle into the transport, again whenever
// the file changes (a new transport then: one in use is not modified).
func (c *checker) loadCA() error {
	if c.check.CAFile == "" {
		return nil
	}
	st, err := os.Stat(c.check.CAFile)
	if err != nil {
		if c.tr.TLSClientConfig != nil {
			return nil // keep what it trusts
		}
		return fmt.Errorf("service %s: reading check CA: %w", c.service, err)
	}
	stamp := fmt.Sprint(st.ModTime().UnixNano(), "/", st.Size())
	if c.tr.TLSClientConfig != nil && stamp == c.caStamp {
		return nil
	}
	pem, err := os.ReadFile(c.check.CAFile)
	if err != nil {
		return fmt.Errorf("service %s: reading check CA: %w", c.service, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("service %s: check CA %s holds no PEM certificate", c.service, c.check.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.tr.TLSClientConfig == nil {
		c.tr.TLSClientConfig = tc
	} else {
		old := c.tr
		c.tr = old.Clone()
		c.tr.TLSClientConfig = tc
		c.client.Transport = c.tr
		old.CloseIdleConnections()
	}
	c.caStamp = stamp
	return nil
}

// probe runs one check: nil when the endpoint answered 2xx in time.
func (c *checker) probe(ctx context.Context) error {
	if err := c.loadCA(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.check.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.check.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", c.check.URL, resp.Status)
	}
	return nil
}

// run polls until ctx ends. It starts from "unhealthy" and reports the
// first transition to healthy after Rise successes.
func (c *checker) run(ctx context.Context) {
	defer c.client.CloseIdleConnections()
	healthy := false
	ok, fail := 0, 0
	t := time.NewTicker(c.check.Interval.Duration)
	defer t.Stop()
	for {
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			ok, fail = ok+1, 0
		} else {
			ok, fail = 0, fail+1
		}
		var ev *healthEvent
		switch {
		case !healthy && ok >= c.check.Rise:
			healthy = true
			ev = &healthEvent{service: c.service, gen: c.gen, healthy: true}
		case healthy && fail >= c.check.Fall:
			healthy = false
			ev = &healthEvent{service: c.service, gen: c.gen, detail: err.Error()}
		case !healthy && fail == 1:
			// Report the first failure's reason (the state stays unhealthy).
			ev = &healthEvent{service: c.service, gen: c.gen, detail: err.Error()}
		}
		if ev != nil {
			ev.at = time.Now()
			select {
			case c.out <- *ev:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
