// Command tricenter-lb is the in-cluster load-balancer controller (package
// lb/controller), shipped as an OCI image with the node artifacts and run
// by the installer as a Deployment in the tricenter-lb namespace:
//
//	tricenter-lb [--config FILE] [--health-listen ADDR] [--log-format text|json]
//
// It reads the pool from --config (the ConfigMap the installer renders
// from the inventory), its namespace and name from POD_NAMESPACE and
// POD_NAME, talks to the API with the pod's ServiceAccount, and answers
// GET /healthz on --health-listen: 200 while it runs and, when leading,
// holds its Lease.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
	"github.com/tricenter/terraform-provider-tricenter/lb"
	"github.com/tricenter/terraform-provider-tricenter/lb/controller"
)

// DefaultConfig is where the Deployment mounts the ConfigMap.
const DefaultConfig = "/etc/tricenter-lb/config.yaml"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tricenter-lb:", err)
		os.Exit(1)
	}
}

func run() error {
	cfgPath := flag.String("config", DefaultConfig, "the controller configuration (the pool and its reserved addresses)")
	health := flag.String("health-listen", ":8080", "address of the /healthz endpoint")
	format := flag.String("log-format", "text", "log format: text or json")
	level := flag.String("log-level", "info", "log level: debug, info, warn or error")
	flag.Parse()
	log, err := logging.New(os.Stderr, *format, *level)
	if err != nil {
		return err
	}
	logging.RouteKlog(log.Handler())
	pool, err := lb.LoadControllerConfig(*cfgPath)
	if err != nil {
		return err
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("the API: %w", err)
	}
	rc.UserAgent = controller.Component
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Unhealthy when leading without renewing the Lease for 20 s past
	// its expiry (leaderelection's adaptor).
	hz := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := hz.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: *health, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("Health endpoint stopped", "error", err)
			stop()
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("Starting", "pool", fmt.Sprint(pool.Ranges), "reserved", len(pool.Reserved))
	return controller.Run(ctx, cs, controller.Options{Pool: pool,
		Namespace: os.Getenv("POD_NAMESPACE"), Identity: os.Getenv("POD_NAME"),
		Logger: log, Elector: hz.SetLeaderElection})
}
