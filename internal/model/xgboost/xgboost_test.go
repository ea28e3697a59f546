package xgboost

import (
	"context"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// fixture reads a CSV written by testdata/generate.py or
// models/train_fraud_model.py: nFeatures input columns (empty means missing)
// followed by XGBoost's predictions.
func fixture(t testing.TB, path string, nFeatures int) (model.Batch, [][]float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	recs = recs[1:]
	in := model.Batch{Rows: len(recs), Cols: nFeatures}
	want := make([][]float64, len(recs))
	for i, rec := range recs {
		for j, s := range rec {
			v := math.NaN()
			if s != "" {
				if v, err = strconv.ParseFloat(s, 64); err != nil {
					t.Fatal(err)
				}
			}
			if j < nFeatures {
				in.Values = append(in.Values, v)
			} else {
				want[i] = append(want[i], v)
			}
		}
	}
	return in, want
}

func load(t testing.TB, path string, meta model.Metadata) *Model {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data, meta)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAgainstXGBoost compares predictions with those XGBoost itself made for
// the same rows, missing values included.
func TestAgainstXGBoost(t *testing.T) {
	const tolerance = 1e-5
	for _, tc := range []struct {
		name, model, rows string
		features          int
		// pick maps our outputs to XGBoost's columns: a binary model's
		// predict() returns only the probability of class 1.
		pick       func(out []float64) []float64
		wantOutput int
	}{
		{name: "binary", model: "testdata/binary.json", rows: "testdata/binary.csv", features: 5, wantOutput: 2,
			pick: func(o []float64) []float64 { return o[1:] }},
		{name: "multiclass", model: "testdata/multiclass.json", rows: "testdata/multiclass.csv", features: 5, wantOutput: 3,
			pick: func(o []float64) []float64 { return o }},
		{name: "regression", model: "testdata/regression.json", rows: "testdata/regression.csv", features: 5, wantOutput: 1,
			pick: func(o []float64) []float64 { return o }},
		{name: "dart", model: "testdata/dart.json", rows: "testdata/dart.csv", features: 5, wantOutput: 2,
			pick: func(o []float64) []float64 { return o[1:] }},
		{name: "fraud_model", model: "../../../models/fraud_model/v1/model.json", rows: "../../../models/fraud_model/testdata/heldout.csv", features: 6, wantOutput: 2,
			pick: func(o []float64) []float64 { return o[1:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := load(t, tc.model, model.Metadata{Name: tc.name, Version: "1"})
			if got := m.Metadata().Outputs; got != tc.wantOutput {
				t.Fatalf("Outputs = %d, want %d", got, tc.wantOutput)
			}
			in, want := fixture(t, tc.rows, tc.features)
			missing := 0
			for _, v := range in.Values {
				if math.IsNaN(v) {
					missing++
				}
			}
			if missing == 0 {
				t.Fatal("fixture has no missing values; the default-branch path would go untested")
			}
			res, err := m.Predict(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			maxDiff := 0.0
			for i := range want {
				got := tc.pick(res.Row(i))
				if len(got) != len(want[i]) {
					t.Fatalf("row %d: %d outputs, XGBoost has %d", i, len(got), len(want[i]))
				}
				for j := range got {
					maxDiff = max(maxDiff, math.Abs(got[j]-want[i][j]))
				}
				if m.Metadata().IsClassifier() {
					sum := 0.0
					for _, p := range res.Row(i) {
						sum += p
					}
					if math.Abs(sum-1) > 1e-6 {
						t.Errorf("row %d: probabilities sum to %v", i, sum)
					}
				}
			}
			if maxDiff > tolerance {
				t.Fatalf("max absolute difference from XGBoost %g > %g", maxDiff, tolerance)
			}
			t.Logf("%d rows, %d missing values, max absolute difference %.3g", in.Rows, missing, maxDiff)
		})
	}
}

func TestMetadata(t *testing.T) {
	m := load(t, "../../../models/fraud_model/v1/model.json", model.Metadata{Name: "fraud_model", Version: "v1", Classes: []string{"safe", "fraud"}})
	got := m.Metadata()
	want := "amount,hour_of_day,merchant_category,distance_from_home_km,transactions_last_24h,card_age_days"
	if strings.Join(got.Features, ",") != want {
		t.Errorf("Features = %v, want %s (from the file's feature_names)", got.Features, want)
	}
	if got.Type != "xgboost" || got.Outputs != 2 || !got.AcceptsMissing || strings.Join(got.Classes, ",") != "safe,fraud" {
		t.Errorf("Metadata = %+v", got)
	}
	mc := load(t, "testdata/multiclass.json", model.Metadata{})
	if g := mc.Metadata(); strings.Join(g.Classes, ",") != "0,1,2" || strings.Join(g.Features, ",") != "f0,f1,f2,f3,f4" {
		t.Errorf("default names: classes %v features %v", g.Classes, g.Features)
	}
}

func TestParseErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/binary.json")
	if err != nil {
		t.Fatal(err)
	}
	regression, err := os.ReadFile("testdata/regression.json")
	if err != nil {
		t.Fatal(err)
	}
	replace := func(b []byte, old, new string) []byte {
		s := string(b)
		if !strings.Contains(s, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return []byte(strings.Replace(s, old, new, 1))
	}
	for _, tc := range []struct {
		name string
		data []byte
		meta model.Metadata
		want string
	}{
		{"not json", []byte("\x00\x01"), model.Metadata{}, "not an XGBoost JSON model"},
		{"other json", []byte(`{"a": 1}`), model.Metadata{}, "no learner.gradient_booster"},
		{"objective", replace(good, `"binary:logistic"`, `"rank:pairwise"`), model.Metadata{}, `objective "rank:pairwise" is not supported`},
		{"booster", replace(good, `"name":"gbtree"`, `"name":"gblinear"`), model.Metadata{}, `booster "gblinear" is not supported`},
		{"categorical", replace(good, `"split_type":[0`, `"split_type":[1`), model.Metadata{}, "categorical splits are not supported"},
		{"feature out of range", replace(good, `"split_indices":[`, `"split_indices":[99`), model.Metadata{}, "split on feature"},
		{"cycle", replace(good, `"left_children":[1,`, `"left_children":[0,`), model.Metadata{}, "out of order"},
		{"class count", good, model.Metadata{Classes: []string{"a", "b", "c"}}, "configuration names 3 classes, the model has 2"},
		{"feature count", good, model.Metadata{Features: []string{"a"}}, "configuration names 1 features, the model has 5"},
		{"classes for a regressor", regression, model.Metadata{Classes: []string{"a", "b"}}, "classes for a regression model"},
		{"base score", replace(good, `"base_score":"5E-1"`, `"base_score":"2"`), model.Metadata{}, "base_score 2 is not a probability"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, tc.meta)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !errors.Is(err, model.ErrInvalidModel) {
				t.Errorf("error %v does not wrap ErrInvalidModel", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestPredictHonoursContext(t *testing.T) {
	m := load(t, "testdata/binary.json", model.Metadata{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := model.Batch{Rows: 1000, Cols: 5, Values: make([]float64, 5000)}
	if _, err := m.Predict(ctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("Predict on a cancelled context: %v, want context.Canceled", err)
	}
}

func BenchmarkPredict(b *testing.B) {
	m := load(b, "../../../models/fraud_model/v1/model.json", model.Metadata{})
	in, _ := fixture(b, "../../../models/fraud_model/testdata/heldout.csv", 6)
	for _, rows := range []int{1, 64} {
		batch := model.Batch{Rows: rows, Cols: 6, Values: in.Values[:rows*6]}
		b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Predict(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
