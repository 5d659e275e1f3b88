package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
)

// metricsSample is a piece of kube-apiserver v1.37's /metrics.
const metricsSample = `# HELP apiserver_encryption_config_controller_automatic_reloads_total [ALPHA] Total number of reload successes and failures of encryption configuration split by apiserver identity.
# TYPE apiserver_encryption_config_controller_automatic_reloads_total counter
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37",status="failure"} 2
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37",status="success"} 3
# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the last applied encryption configuration with hash as label, split by apiserver identity.
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37",hash="sha256:6bc9f4aa2e5587afbb96074e1809550cbc4de3cc3a35717dac8ff2800a147fd3"} 1
apiserver_request_total{code="200",component="apiserver",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 12
`

func TestParseEncryptionMetrics(t *testing.T) {
	m, err := parseEncryptionMetrics([]byte(metricsSample))
	if err != nil {
		t.Fatal(err)
	}
	if m.Hash != "sha256:6bc9f4aa2e5587afbb96074e1809550cbc4de3cc3a35717dac8ff2800a147fd3" || m.Failures != 2 || m.Successes != 3 {
		t.Errorf("parsed %+v", m)
	}
	if m, err := parseEncryptionMetrics([]byte("# nothing\nup 1\n")); err != nil || m.Hash != "" {
		t.Errorf("no encryption metrics: %+v %v", m, err)
	}
	if _, err := parseEncryptionMetrics([]byte(metricReloads + `{status="failure"}` + "\n")); err == nil {
		t.Error("a line without value parsed")
	}
}

// TestWaitConfigLoaded: the wait ends when every server reports the
// configuration's hash; one that does not is named with why (failed
// reloads counted from the first look), never with the hash.
func TestWaitConfigLoaded(t *testing.T) {
	want := encryption.Hash([]byte("configuration"))
	old := encryption.Hash([]byte("old"))
	metric := func(hash string, failures int) []byte {
		return fmt.Appendf(nil, "%s{status=\"failure\"} %d\n%s{apiserver_id_hash=\"x\",hash=\"%s\"} 1\n", metricReloads, failures, metricConfigInfo, hash)
	}
	var polls atomic.Int32
	servers := map[string]metricsFetch{
		"cp1": func(context.Context) ([]byte, error) { return metric(want, 0), nil },
		"cp2": func(context.Context) ([]byte, error) {
			if polls.Add(1) < 3 {
				return metric(old, 0), nil
			}
			return metric(want, 0), nil
		},
	}
	if err := waitConfigLoaded(context.Background(), servers, want, []string{"key-1", "key-2"}, 5*time.Second, 10*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if polls.Load() != 3 {
		t.Errorf("cp2 asked %d times, want 3", polls.Load())
	}

	var n atomic.Int32
	servers = map[string]metricsFetch{
		"cp1": func(context.Context) ([]byte, error) { return metric(want, 0), nil },
		"cp2": func(context.Context) ([]byte, error) { return metric(old, 4+int(n.Add(1))), nil },
		"cp3": func(context.Context) ([]byte, error) { return nil, errors.New("connection refused") },
		"cp4": func(context.Context) ([]byte, error) { return []byte("up 1\n"), nil },
	}
	err := waitConfigLoaded(context.Background(), servers, want, []string{"key-2", "key-1"}, 50*time.Millisecond, 10*time.Millisecond, nil)
	if err == nil {
		t.Fatal("the wait ended without every server")
	}
	for _, w := range []string{"not every kube-apiserver uses the encryption configuration with key-2, key-1",
		"cp2: it still uses its previous configuration (", " failed reloads since: see journalctl -u kube-apiserver there)",
		"cp3: its /metrics did not answer: connection refused", "cp4: its /metrics has no " + metricConfigInfo} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "cp1") || strings.Contains(err.Error(), strings.TrimPrefix(want, "sha256:")[:16]) ||
		strings.Contains(err.Error(), strings.TrimPrefix(old, "sha256:")[:16]) {
		t.Errorf("the error names a loaded server or a hash: %v", err)
	}
}

// TestRewriteOneFakeAPI: the rewrite's handling of conflicts and deletions,
// against client-go's fake clientset (logic only).
func TestRewriteOneFakeAPI(t *testing.T) {
	sec := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string][]byte{"k": []byte(name)}}
	}
	cs := fake.NewClientset(sec("a"), sec("b"), sec("gone"), sec("busy"))
	conflicts := map[string]int{"a": 1, "busy": 100}
	var mu sync.Mutex
	updates := map[string]int{}
	cs.PrependReactor("update", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		mu.Lock()
		defer mu.Unlock()
		updates[obj.Name]++
		gr := schema.GroupResource{Resource: "secrets"}
		switch {
		case obj.Name == "gone":
			return true, nil, apierrors.NewNotFound(gr, obj.Name)
		case conflicts[obj.Name] > 0:
			conflicts[obj.Name]--
			return true, nil, apierrors.NewConflict(gr, obj.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	api, err := rewriteAPIFor(cs, encryption.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	n, err := api.rewriteAll(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "rewriting secrets default/busy: it changed 5 times while being rewritten") {
		t.Fatalf("err = %v", err)
	}
	if n != 2 || updates["a"] != 2 || updates["b"] != 1 || updates["gone"] != 1 || updates["busy"] != maxConflicts {
		t.Errorf("rewrote %d; updates %v", n, updates)
	}
	got, err := cs.CoreV1().Secrets("default").Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil || string(got.Data["k"]) != "a" {
		t.Errorf("secret a after its rewrite: %v %v", got, err)
	}
	if _, err := rewriteAPIFor(cs, "pods"); err == nil {
		t.Error("a rewrite of pods")
	}
}

// localCluster is encryption.Cluster over one real kube-apiserver on this
// machine (kubetest): its configuration file written here, its /metrics
// read through the admin client, the rewrite and the etcd check through
// the engine's own rewriter.
type localCluster struct {
	path string
	cs   kubernetes.Interface
	rw   *rewriter
}

func (l *localCluster) Observe(context.Context) (map[string]*encryption.HostConfig, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, err
	}
	hc, err := encryption.Parse(b)
	return map[string]*encryption.HostConfig{"local": hc}, err
}

func (l *localCluster) Configure(ctx context.Context, keys []string, config []byte) error {
	tmp := l.path + ".new"
	if err := os.WriteFile(tmp, config, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return err
	}
	fetch := func(ctx context.Context) ([]byte, error) {
		return l.cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	}
	// kube-apiserver looks at the file once a minute.
	return waitConfigLoaded(ctx, map[string]metricsFetch{"local": fetch}, encryption.Hash(config), keys, 3*time.Minute, time.Second, nil)
}

func (l *localCluster) Rewrite(ctx context.Context, resources []string, key encryption.Key, all bool) (encryption.RewriteReport, error) {
	return l.rw.Rewrite(ctx, resources, key, all)
}

// TestRotateKeyAgainstAPIServer rotates the key of a real kube-apiserver
// (reloading its configuration by itself) and etcd: Secrets created before
// are all stored with the new key after, none lost nor changed, and the
// API served reads and writes of Secrets throughout. It takes a few
// minutes: kube-apiserver looks at its configuration once a minute.
func TestRotateKeyAgainstAPIServer(t *testing.T) {
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "state")}
	ring, out, err := encryption.Ensure(store, nil)
	if err != nil || out != encryption.Created {
		t.Fatalf("keyring: %v %v", out, err)
	}
	cfg, err := encryption.Render(ring, []string{encryption.Secrets})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "encryption-config.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := kubetest.StartCluster(t, kubetest.Options{ExtraArgs: []string{"--encryption-provider-config=" + path,
		"--encryption-provider-config-automatic-reload=true"}})
	cs := kc.Client
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{kc.EtcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	// More Secrets than one page of the rewrite's listing.
	const n = rewritePage + 30
	ns := "rotate"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	data := func(i int) string { return fmt.Sprintf("value-%d-%d", i, i*7919) }
	for i := range n {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%03d", i), Namespace: ns},
			StringData: map[string]string{"v": data(i)}}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	k1 := ring.Keys[0]
	before, stale, err := checkStored(ctx, ec, encryption.Secrets, k1.Prefix())
	if err != nil || before < n || len(stale) > 0 {
		t.Fatalf("before the rotation: %d Secrets in etcd, %d not under %s (%v)", before, len(stale), k1.Name, err)
	}

	// Traffic through the API while the key rotates: a write and a read
	// of a Secret every 50 ms; none may fail.
	var ok, failed atomic.Int32
	var firstErr atomic.Value
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; trafficCtx.Err() == nil; i++ {
			name := fmt.Sprintf("traffic-%d", i%20)
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"i": strconv.Itoa(i)}}
			_ = cs.CoreV1().Secrets(ns).Delete(trafficCtx, name, metav1.DeleteOptions{})
			_, err := cs.CoreV1().Secrets(ns).Create(trafficCtx, s, metav1.CreateOptions{})
			if err == nil {
				_, err = cs.CoreV1().Secrets(ns).Get(trafficCtx, fmt.Sprintf("s-%03d", i%n), metav1.GetOptions{})
			}
			switch {
			case trafficCtx.Err() != nil:
			case err != nil:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			default:
				ok.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	start := time.Now()
	res, err := encryption.Rotate(ctx, encryption.RotateOptions{Store: store, Cluster: &localCluster{path: path, cs: cs,
		rw: &rewriter{cs: cs, kv: ec}}})
	stopTraffic()
	wg.Wait()
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	t.Logf("rotated %v → %v in %v: %d rewritten, %d checked in etcd; traffic %d ok, %d failed",
		res.From, res.To, time.Since(start).Round(time.Second), res.Rewrite.Rewritten, res.Rewrite.Checked, ok.Load(), failed.Load())
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Errorf("traffic during the rotation: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
	}
	if res.Key != "key-2" || !slices.Equal(res.To, []string{"key-2"}) || res.Rewrite.Rewritten < n {
		t.Errorf("result %+v", res)
	}
	after, err := encryption.Load(store)
	if err != nil || after.Rotation != nil || !slices.Equal(after.Names(), []string{"key-2"}) {
		t.Fatalf("state after the rotation: %v %v", after, err)
	}
	k2 := after.Keys[0]
	checked, stale, err := checkStored(ctx, ec, encryption.Secrets, k2.Prefix())
	if err != nil || len(stale) > 0 || checked < n {
		t.Fatalf("after the rotation: %d Secrets in etcd, not under %s: %v (%v)", checked, k2.Name, stale, err)
	}
	// No value in etcd holds a Secret's data in the clear.
	resp, err := ec.Get(ctx, etcdResourcePrefix(encryption.Secrets)+ns+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte("value-")) {
			t.Errorf("%s is in the clear in etcd", kv.Key)
		}
	}
	// None lost, none changed.
	list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range list.Items {
		got[s.Name] = string(s.Data["v"])
	}
	for i := range n {
		if name := fmt.Sprintf("s-%03d", i); got[name] != data(i) {
			t.Errorf("Secret %s reads %q after the rotation, want %q", name, got[name], data(i))
		}
	}
	// The server holds and uses the new key alone.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := encryption.Parse(b)
	if err != nil || !slices.Equal(hc.Keyring.Names(), []string{"key-2"}) || strings.Contains(string(b), k1.Secret) {
		t.Errorf("the configuration after the rotation holds %v (%v)", hc.Keyring.Names(), err)
	}
	mb, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := parseEncryptionMetrics(mb); err != nil || m.Hash != encryption.Hash(b) {
		t.Errorf("kube-apiserver does not report the last configuration: %v", err)
	}
}
