package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckSeesSelfAndFailsOnNAT(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(whoamiHandler))
	defer srv.Close()
	// The caller reaches the server from 127.0.0.1: a pod that owns that
	// address passes, one that does not (NAT) fails.
	var out bytes.Buffer
	ok, err := check([]string{"--peer", srv.URL + "/whoami", "--timeout", "2s", "--termination-log", ""}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("results: %+v", rep.Results)
	}
	// ownIPs skips loopback, so 127.0.0.1 is "not this pod": a NAT verdict.
	if ok || rep.Results[0].OK || !strings.Contains(rep.Results[0].Detail, "NAT") {
		t.Fatalf("a caller seen under another address passed: %+v", rep.Results[0])
	}
	r := fetchCheck("x", srv.URL+"/whoami", []string{"127.0.0.1"}, true, 2*time.Second)
	if !r.OK {
		t.Fatalf("caller seen as itself failed: %+v", r)
	}
}

func TestResolveAndUnreachable(t *testing.T) {
	if r := resolveCheck("localhost", 2*time.Second); !r.OK {
		t.Fatalf("localhost: %+v", r)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := fetchCheck("dead", "http://"+addr+"/whoami", nil, false, time.Second)
	if r.OK || r.Detail == "" {
		t.Fatalf("a closed port passed: %+v", r)
	}
}
