// Command tricenter-probe is the workload of tricenter's verification
// gates, shipped as an OCI image with the node artifacts (no registry):
//
//	tricenter-probe serve [--listen :8080]
//	    answers GET /whoami with the caller's address as this pod sees it
//	tricenter-probe check --peer URL [--service URL] [--resolve NAME]...
//	    fetches the peer's /whoami and checks the peer saw this pod's own
//	    IP (routed, no NAT), resolves names through the cluster DNS and
//	    fetches a Service URL; the JSON report goes to stdout and to the
//	    termination log, the exit code says whether every check passed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tricenter-probe serve|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "check":
		var ok bool
		ok, err = check(os.Args[2:], os.Stdout)
		if err == nil && !ok {
			os.Exit(1)
		}
	default:
		err = fmt.Errorf("unknown command %q: use serve or check", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tricenter-probe:", err)
		os.Exit(2)
	}
}

// Whoami is what serve answers.
type Whoami struct {
	// Remote is the caller's IP as this pod saw it.
	Remote string `json:"remote"`
	Host   string `json:"host"`
}

func whoamiHandler(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	name, _ := os.Hostname()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Whoami{Remote: host, Host: name})
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", whoamiHandler)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

// Result is one check.
type Result struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is what check prints.
type Report struct {
	Self    []string `json:"self"`
	Results []Result `json:"results"`
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func check(args []string, out io.Writer) (bool, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	peer := fs.String("peer", "", "URL of a peer pod's /whoami (by pod IP)")
	service := fs.String("service", "", "URL of a Service's /whoami (by DNS name)")
	var resolve listFlag
	fs.Var(&resolve, "resolve", "a name to resolve through the cluster DNS (repeatable)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long each check may retry")
	termLog := fs.String("termination-log", "/dev/termination-log", "where the report also goes")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	self := ownIPs()
	rep := Report{Self: self}
	if *peer != "" {
		rep.Results = append(rep.Results, fetchCheck("pod-to-pod "+*peer, *peer, self, true, *timeout))
	}
	for _, n := range resolve {
		rep.Results = append(rep.Results, resolveCheck(n, *timeout))
	}
	if *service != "" {
		rep.Results = append(rep.Results, fetchCheck("service "+*service, *service, self, false, *timeout))
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return false, err
	}
	fmt.Fprintln(out, string(b))
	if *termLog != "" {
		_ = os.WriteFile(*termLog, b, 0o644)
	}
	ok := len(rep.Results) > 0
	for _, r := range rep.Results {
		ok = ok && r.OK
	}
	return ok, nil
}

func ownIPs() []string {
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// retry calls f until it succeeds or the deadline passes.
func retry(timeout time.Duration, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = f(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fetchCheck(name, url string, self []string, wantSelf bool, timeout time.Duration) Result {
	var who Whoami
	err := retry(timeout, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&who)
	})
	if err != nil {
		return Result{Name: name, Detail: err.Error()}
	}
	seen := false
	for _, s := range self {
		if s == who.Remote {
			seen = true
		}
	}
	if wantSelf && !seen {
		return Result{Name: name, Detail: fmt.Sprintf("%s saw the caller as %s, not as this pod (%s): NAT on the path",
			who.Host, who.Remote, strings.Join(self, ", "))}
	}
	return Result{Name: name, OK: true, Detail: fmt.Sprintf("answered by %s, caller seen as %s", who.Host, who.Remote)}
}

func resolveCheck(name string, timeout time.Duration) Result {
	var addrs []string
	err := retry(timeout, func(ctx context.Context) error {
		var err error
		addrs, err = net.DefaultResolver.LookupHost(ctx, name)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no addresses")
		}
		return err
	})
	if err != nil {
		return Result{Name: "resolve " + name, Detail: err.Error()}
	}
	return Result{Name: "resolve " + name, OK: true, Detail: strings.Join(addrs, ", ")}
}
