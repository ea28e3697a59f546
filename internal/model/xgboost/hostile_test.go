package xgboost

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// edit reads a model file, lets change rewrite its decoded JSON, and returns
// the file again.
func edit(t *testing.T, path string, change func(learner, gbModel map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(quoteNonFinite(data), &f); err != nil {
		t.Fatal(err)
	}
	learner := f["learner"].(map[string]any)
	change(learner, learner["gradient_booster"].(map[string]any)["model"].(map[string]any))
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHostileFiles checks files that no XGBoost writes but an attacker can:
// each is refused with its reason, or served as XGBoost would, never a panic
// or an allocation out of proportion to the file.
func TestHostileFiles(t *testing.T) {
	t.Run("best_iteration past the last iteration with iteration_indptr", func(t *testing.T) {
		b := edit(t, "testdata/binary.json", func(l, m map[string]any) {
			l["attributes"] = map[string]any{"best_iteration": "9223372036854775807"}
			indptr := make([]int, len(m["trees"].([]any))+1)
			for i := range indptr {
				indptr[i] = i
			}
			m["iteration_indptr"] = indptr
		})
		m, err := Parse(b, model.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(m.trees), 40; got != want {
			t.Errorf("%d trees serve, want all %d", got, want)
		}
	})
	t.Run("category sets that overlap", func(t *testing.T) {
		// Every categorical node pointing at the same categories would make
		// Parse allocate nodes x categories; XGBoost writes them back to back.
		b := edit(t, "testdata/boosters/gbtree_categorical.model.json", func(_, m map[string]any) {
			tr := m["trees"].([]any)[0].(map[string]any)
			segs := tr["categories_segments"].([]any)
			for i := range segs {
				segs[i] = 0
			}
		})
		_, err := Parse(b, model.Metadata{})
		if err == nil || !strings.Contains(err.Error(), "tree 0: node 1: categories segment [0, 0+2) does not follow the previous node's, which ends at 3") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("numerical split on NaN", func(t *testing.T) {
		b := edit(t, "testdata/binary.json", func(_, m map[string]any) {
			m["trees"].([]any)[3].(map[string]any)["split_conditions"].([]any)[0] = "NaN"
		})
		_, err := Parse(b, model.Metadata{})
		if err == nil || !strings.Contains(err.Error(), "tree 3: node 0: numerical split on NaN") {
			t.Errorf("err = %v", err)
		}
	})
}
