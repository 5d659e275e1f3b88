package addons

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/csaupgrade"
)

// FieldManager is the field manager of everything tricenter applies.
const FieldManager = "tricenter"

// ManagedByLabel marks the objects tricenter manages.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// AppliedAnnotation held the hash of what tricenter last applied, when
// add-ons were updated only when it changed. Server-side apply replaced
// it; the first apply of this version removes it.
const AppliedAnnotation = "tricenter.io/applied-hash"

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
	runtime.Object
	metav1.Object
}

// applyClient is the part of a typed client-go resource client apply uses:
// T is the object, AC its apply configuration.
type applyClient[T object, AC any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Apply(ctx context.Context, cfg AC, opts metav1.ApplyOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// applyOptions: tricenter's field manager, conflicts forced. The apply
// configuration holds every field tricenter owns of the object and nothing
// else, so forcing takes back only those fields (what kubectl apply
// --server-side --force-conflicts does); fields other managers set alone
// stay theirs.
var applyOptions = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// apply applies want with server-side apply on every call, so whatever
// changed tricenter's fields out of band is put back. It records a change
// only when the object was created or the apply wrote it: its
// resourceVersion moved (an apply that changes nothing writes nothing) and
// more than its status or field ownership differs (a controller's status
// write between the read and the apply is not tricenter's change). kind
// and ns name the object in changes and errors (ns is empty for
// cluster-scoped objects).
func apply[T object, AC interface{ GetName() *string }](ctx context.Context, a *applier, c applyClient[T, AC], kind, ns string, want AC) (T, error) {
	var zero T
	name := *want.GetName()
	ref := name
	if ns != "" {
		ref = ns + "/" + name
	}
	have, err := c.Get(ctx, name, metav1.GetOptions{})
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return zero, fmt.Errorf("reading %s %s: %w", kind, ref, err)
	}
	if exists {
		if have, err = upgradeOwnership(ctx, c, have); err != nil {
			return zero, fmt.Errorf("moving tricenter's fields of %s %s to server-side apply: %w", kind, ref, err)
		}
	}
	got, err := c.Apply(ctx, want, applyOptions)
	if err != nil {
		return zero, fmt.Errorf("applying %s %s: %w", kind, ref, err)
	}
	switch {
	case !exists:
		a.record("created %s %s", kind, ref)
	case got.GetResourceVersion() != have.GetResourceVersion() && !sameContent(have, got):
		a.record("updated %s %s", kind, ref)
	}
	return got, nil
}

// upgradeOwnership moves the fields tricenter's updates own (objects
// created or updated before add-ons were applied server-side) to its apply
// entry, as kubectl does when it switches an object to server-side apply:
// otherwise those fields would stay owned by the old entry, and a field
// tricenter stops applying (the applied-hash annotation) would never be
// removed. Nothing is written for an object already migrated.
func upgradeOwnership[T object, AC any](ctx context.Context, c applyClient[T, AC], have T) (T, error) {
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(have, sets.New(FieldManager), FieldManager)
	if err != nil || patch == nil {
		return have, err
	}
	return c.Patch(ctx, have.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
}

// sameContent reports whether two versions of an object differ in nothing
// but their status, resourceVersion, generation and field ownership.
func sameContent(x, y runtime.Object) bool {
	content := func(o runtime.Object) map[string]any {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil
		}
		delete(u, "status")
		if md, ok := u["metadata"].(map[string]any); ok {
			delete(md, "resourceVersion")
			delete(md, "generation")
			delete(md, "managedFields")
		}
		return u
	}
	cx, cy := content(x), content(y)
	return cx != nil && cy != nil && reflect.DeepEqual(cx, cy)
}
