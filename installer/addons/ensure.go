package addons

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// AppliedAnnotation holds the hash of what tricenter last applied to an
// object.
const AppliedAnnotation = "tricenter.io/applied-hash"

// ManagedByLabel marks the objects tricenter manages.
const ManagedByLabel = "app.kubernetes.io/managed-by"

type applier struct {
	cs      kubernetes.Interface
	log     *slog.Logger
	changed []string
}

func (a *applier) record(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.log.Info("Changed", "change", msg)
	a.changed = append(a.changed, msg)
}

// object is a typed API object (a pointer).
type object interface {
	metav1.Object
	comparable
}

// client is the part of a typed client-go resource client ensure uses.
type client[T object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// appliedHash is the hash of the object as tricenter wants it.
func appliedHash(obj any) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16]), nil
}

// stamp labels want as managed and annotates it with its hash.
func stamp(want metav1.Object) error {
	l := want.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[ManagedByLabel] = "tricenter"
	want.SetLabels(l)
	h, err := appliedHash(want)
	if err != nil {
		return err
	}
	an := want.GetAnnotations()
	if an == nil {
		an = map[string]string{}
	}
	an[AppliedAnnotation] = h
	want.SetAnnotations(an)
	return nil
}

// ensure creates want, or updates the existing object when its applied
// hash differs. kind names the object in changes and errors.
func ensure[T object](ctx context.Context, a *applier, c client[T], kind string, want T) (T, error) {
	var zero T
	if err := stamp(want); err != nil {
		return zero, err
	}
	name := want.GetName()
	if ns := want.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	have, err := c.Get(ctx, want.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		got, err := c.Create(ctx, want, metav1.CreateOptions{FieldManager: "tricenter"})
		if err != nil {
			return zero, fmt.Errorf("creating %s %s: %w", kind, name, err)
		}
		a.record("created %s %s", kind, name)
		return got, nil
	case err != nil:
		return zero, fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	if have.GetAnnotations()[AppliedAnnotation] == want.GetAnnotations()[AppliedAnnotation] {
		return have, nil
	}
	want.SetResourceVersion(have.GetResourceVersion())
	got, err := c.Update(ctx, want, metav1.UpdateOptions{FieldManager: "tricenter"})
	if err != nil {
		return zero, fmt.Errorf("updating %s %s: %w", kind, name, err)
	}
	a.record("updated %s %s", kind, name)
	return got, nil
}
