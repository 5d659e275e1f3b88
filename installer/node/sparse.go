package node

import (
	"encoding/json"
	"reflect"

	"sigs.k8s.io/yaml"
)

// marshalSparse renders a typed Kubernetes config object as YAML without
// the fields that hold their type's zero value — which the component reads
// exactly as if they were absent — so the files show only what tricenter
// sets. Pointer fields set to a zero value (failSwapOn: false,
// resolvConf: "", oomScoreAdj: 0) are kept: there zero is a choice.
func marshalSparse(obj, zero any) ([]byte, error) {
	have, err := toMap(obj)
	if err != nil {
		return nil, err
	}
	z, err := toMap(zero)
	if err != nil {
		return nil, err
	}
	prune(have, z)
	return yaml.Marshal(have)
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func prune(have, zero map[string]any) {
	for k, v := range have {
		zv, ok := zero[k]
		if !ok {
			continue // only present when set: keep
		}
		if hm, isMap := v.(map[string]any); isMap {
			if zm, zIsMap := zv.(map[string]any); zIsMap {
				prune(hm, zm)
				if len(hm) == 0 {
					delete(have, k)
				}
				continue
			}
		}
		if reflect.DeepEqual(v, zv) {
			delete(have, k)
		}
	}
}
