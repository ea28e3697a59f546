package xgboost

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/model"
)

// tolerance is how far a prediction may be from XGBoost's, relative to the
// larger of 1 and the prediction: a few float32 roundings (float32's epsilon
// is 1.2e-7), as the links are computed with Go's math rather than C's.
const tolerance = 1e-6

func near(got, want float64) bool {
	return math.Abs(got-want) <= tolerance*max(1, math.Abs(want)) || (math.IsNaN(got) && math.IsNaN(want))
}

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

func predict(t testing.TB, m *Model, in model.Batch) model.Result {
	t.Helper()
	res, err := model.SafePredict(context.Background(), m, in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Ways to compare a row of our outputs with XGBoost's predictions.
type compare int

const (
	sameValues compare = iota // every output, as predict answers them
	classOne                  // a binary classifier: predict answers the probability of class 1
	likeliest                 // multi:softmax: predict answers the index of the likeliest class
)

func check(t *testing.T, how compare, res model.Result, want [][]float64) {
	t.Helper()
	if res.Rows != len(want) {
		t.Fatalf("%d rows, XGBoost has %d", res.Rows, len(want))
	}
	worst := 0.0
	for i := range want {
		row := res.Row(i)
		var got []float64
		switch how {
		case sameValues:
			got = row
		case classOne:
			got = row[1:]
			if s := row[0] + row[1]; math.Abs(s-1) > 1e-6 {
				t.Errorf("row %d: probabilities sum to %v", i, s)
			}
		case likeliest:
			got = []float64{float64(slices.Index(row, slices.Max(row)))}
		}
		if len(got) != len(want[i]) {
			t.Fatalf("row %d: %d outputs, XGBoost has %d", i, len(got), len(want[i]))
		}
		for j := range got {
			if !near(got[j], want[i][j]) {
				t.Errorf("row %d output %d: %v, XGBoost predicts %v", i, j, got[j], want[i][j])
			}
			worst = max(worst, math.Abs(got[j]-want[i][j])/max(1, math.Abs(want[i][j])))
		}
	}
	t.Logf("%d rows, largest relative difference from XGBoost %.3g", len(want), worst)
}

func countMissing(in model.Batch) int {
	n := 0
	for _, v := range in.Values {
		if math.IsNaN(v) {
			n++
		}
	}
	return n
}

// TestAgainstXGBoost compares predictions with those XGBoost 1.7.4 made for
// the same rows (testdata/generate.py), missing values included.
func TestAgainstXGBoost(t *testing.T) {
	for _, tc := range []struct {
		name, model, rows string
		features          int
		how               compare
		outputs           int
	}{
		{name: "binary", model: "binary.json", features: 5, how: classOne, outputs: 2},
		{name: "multiclass", model: "multiclass.json", features: 5, outputs: 3},
		{name: "regression", model: "regression.json", features: 5, outputs: 1},
		{name: "dart", model: "dart.json", features: 5, how: classOne, outputs: 2},
		{name: "binary:logitraw", model: "binary_logitraw.json", features: 5, outputs: 1},
		{name: "binary:hinge", model: "binary_hinge.json", features: 5, how: classOne, outputs: 2},
		{name: "reg:logistic", model: "reg_logistic.json", features: 5, outputs: 1},
		{name: "multi:softmax", model: "multi_softmax.json", features: 5, how: likeliest, outputs: 4},
		{name: "reg:linear", model: "reg_linear.json", features: 5, outputs: 1},
		{name: "reg:squaredlogerror", model: "reg_squaredlogerror.json", features: 5, outputs: 1},
		{name: "reg:pseudohubererror", model: "reg_pseudohubererror.json", features: 5, outputs: 1},
		{name: "reg:absoluteerror", model: "reg_absoluteerror.json", features: 5, outputs: 1},
		{name: "count:poisson", model: "count_poisson.json", features: 5, outputs: 1},
		{name: "reg:gamma", model: "reg_gamma.json", features: 5, outputs: 1},
		{name: "reg:tweedie", model: "reg_tweedie.json", features: 5, outputs: 1},
		{name: "survival:aft", model: "survival_aft.json", features: 5, outputs: 1},
		{name: "survival:cox", model: "survival_cox.json", features: 5, outputs: 1},
		{name: "rank:pairwise", model: "rank_pairwise.json", features: 5, outputs: 1},
		{name: "rank:ndcg", model: "rank_ndcg.json", features: 5, outputs: 1},
		{name: "rank:map", model: "rank_map.json", features: 5, outputs: 1},
		{name: "gblinear binary", model: "linear_binary.json", features: 5, how: classOne, outputs: 2},
		{name: "gblinear multiclass", model: "linear_multiclass.json", features: 5, outputs: 3},
		{name: "gblinear multiclass ubj", model: "linear_multiclass.ubj", rows: "linear_multiclass.csv", features: 5, outputs: 3},
		{name: "gblinear poisson", model: "linear_poisson.json", features: 5, outputs: 1},
		{name: "categorical", model: "categorical.json", features: 3, outputs: 1},
		{name: "categorical ubj", model: "categorical.ubj", rows: "categorical.csv", features: 3, outputs: 1},
		{name: "categorical binary", model: "categorical_binary.json", features: 3, how: classOne, outputs: 2},
		{name: "categorical one-hot", model: "categorical_onehot.json", features: 3, outputs: 1},
		{name: "categorical one-hot binary", model: "categorical_onehot_binary.json", features: 3, how: classOne, outputs: 2},
		{name: "categorical small", model: "categorical_small.json", features: 3, how: classOne, outputs: 2},
		{name: "categorical small ubj", model: "categorical_small.ubj", rows: "categorical_small.csv", features: 3, how: classOne, outputs: 2},
		{name: "best_iteration", model: "early_stopping.json", features: 5, how: classOne, outputs: 2},
		{name: "fraud_model", model: "../../../models/fraud_model/v1/model.json", rows: "../../../models/fraud_model/testdata/heldout.csv", features: 6, how: classOne, outputs: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, rows := filepath.Join("testdata", tc.model), filepath.Join("testdata", tc.rows)
			if strings.HasPrefix(tc.model, "../") {
				path, rows = tc.model, tc.rows
			}
			if tc.rows == "" {
				rows = strings.TrimSuffix(path, filepath.Ext(path)) + ".csv"
			}
			m := load(t, path, model.Metadata{Name: tc.name, Version: "1"})
			if got := m.Metadata().Outputs; got != tc.outputs {
				t.Fatalf("Outputs = %d, want %d", got, tc.outputs)
			}
			in, want := fixture(t, rows, tc.features)
			if countMissing(in) == 0 {
				t.Fatal("fixture has no missing values; the default-branch path would go untested")
			}
			check(t, tc.how, predict(t, m, in), want)
		})
	}
}

// boostersCase reads one case of testdata/boosters, written by XGBoost
// 3.1.1: its rows and what Booster.predict answered for them.
func boostersCase(t *testing.T, name string) (model.Batch, [][]float64) {
	t.Helper()
	var input struct {
		Features [][]*float64 `json:"features"`
	}
	var expected struct {
		Transformed json.RawMessage `json:"predictions_transformed"`
	}
	for path, v := range map[string]any{name + ".input.json": &input, name + ".expected.json": &expected} {
		data, err := os.ReadFile(filepath.Join("testdata/boosters", path))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	in := model.Batch{Rows: len(input.Features), Cols: len(input.Features[0])}
	for _, row := range input.Features {
		for _, v := range row {
			if v == nil {
				in.Values = append(in.Values, math.NaN())
			} else {
				in.Values = append(in.Values, *v)
			}
		}
	}
	var want [][]float64
	if err := json.Unmarshal(expected.Transformed, &want); err != nil {
		want = nil
		var flat []float64
		if err := json.Unmarshal(expected.Transformed, &flat); err != nil {
			t.Fatal(err)
		}
		for _, v := range flat {
			want = append(want, []float64{v})
		}
	}
	return in, want
}

// TestAgainstXGBoost3 compares predictions with those XGBoost 3.1.1 made for
// the model files it wrote (testdata/boosters): per-class intercepts,
// categorical splits, DART, gblinear, deep, many and wide trees.
func TestAgainstXGBoost3(t *testing.T) {
	cases, err := filepath.Glob("testdata/boosters/*.model.json")
	if err != nil || len(cases) < 16 {
		t.Fatalf("%d cases in testdata/boosters (%v)", len(cases), err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".model.json")
		t.Run(name, func(t *testing.T) {
			m := load(t, path, model.Metadata{})
			in, want := boostersCase(t, name)
			how := sameValues
			if len(m.Metadata().Classes) == 2 {
				how = classOne
			}
			check(t, how, predict(t, m, in), want)
		})
	}
}

// dartLayouts rewrites a dart model file in the layouts of XGBoost 3.3 and
// 3.4, as their gbtree_model.cc saves it: the booster named "gbtree", with
// weight_drop beside the model (3.3) or inside it (3.4).
func dartLayouts(t testing.TB, data []byte) map[string][]byte {
	t.Helper()
	var f map[string]any
	if err := json.Unmarshal(quoteNonFinite(data), &f); err != nil {
		t.Fatal(err)
	}
	learner := f["learner"].(map[string]any)
	booster := learner["gradient_booster"].(map[string]any)
	if booster["name"] != "dart" {
		t.Fatalf("booster %v, want dart", booster["name"])
	}
	trees := booster["gbtree"].(map[string]any)["model"].(map[string]any)
	weights := booster["weight_drop"]
	out := make(map[string][]byte)
	for layout, gb := range map[string]map[string]any{
		"3.3": {"name": "gbtree", "model": trees, "weight_drop": weights},
		"3.4": {"name": "gbtree", "model": mergeMaps(trees, map[string]any{"weight_drop": weights})},
	} {
		learner["gradient_booster"] = gb
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		out[layout] = b
	}
	return out
}

func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestDARTLayouts checks that a dart model written in the layouts of XGBoost
// 3.3 and 3.4 predicts what XGBoost predicted for the original file.
func TestDARTLayouts(t *testing.T) {
	t.Run("1.7.4", func(t *testing.T) {
		data, err := os.ReadFile("testdata/dart.json")
		if err != nil {
			t.Fatal(err)
		}
		in, want := fixture(t, "testdata/dart.csv", 5)
		for layout, b := range dartLayouts(t, data) {
			m, err := Parse(b, model.Metadata{})
			if err != nil {
				t.Fatalf("%s layout: %v", layout, err)
			}
			check(t, classOne, predict(t, m, in), want)
		}
	})
	t.Run("3.1.1", func(t *testing.T) {
		data, err := os.ReadFile("testdata/boosters/dart_regression.model.json")
		if err != nil {
			t.Fatal(err)
		}
		in, want := boostersCase(t, "dart_regression")
		for layout, b := range dartLayouts(t, data) {
			m, err := Parse(b, model.Metadata{})
			if err != nil {
				t.Fatalf("%s layout: %v", layout, err)
			}
			check(t, sameValues, predict(t, m, in), want)
		}
	})
	t.Run("weights matter", func(t *testing.T) {
		// A dart model read as a plain gbtree (what 3.3+ files gave before) predicts
		// something else: the weights are not all 1.
		data, err := os.ReadFile("testdata/dart.json")
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		learner := f["learner"].(map[string]any)
		gb := learner["gradient_booster"].(map[string]any)
		learner["gradient_booster"] = map[string]any{"name": "gbtree", "model": gb["gbtree"].(map[string]any)["model"]}
		b, _ := json.Marshal(f)
		m, err := Parse(b, model.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		in, want := fixture(t, "testdata/dart.csv", 5)
		res := predict(t, m, in)
		differ := 0
		for i := range want {
			if !near(res.Row(i)[1], want[i][0]) {
				differ++
			}
		}
		if differ == 0 {
			t.Fatal("ignoring weight_drop changes no prediction; the fixture cannot tell the layouts apart")
		}
	})
}

// TestFileNames checks that each runtime loads either format, whatever the
// file is called.
func TestFileNames(t *testing.T) {
	if len(Runtimes) != 2 || Runtimes[0].File != "model.json" || Runtimes[1].File != "model.ubj" || Runtime.File != "model.json" {
		t.Fatalf("Runtimes = %+v", Runtimes)
	}
	in, want := fixture(t, "testdata/linear_multiclass.csv", 5)
	for _, file := range []string{"linear_multiclass.json", "linear_multiclass.ubj", "categorical.ubj"} {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, rt := range Runtimes {
			m, err := rt.Load(data, model.Metadata{})
			if err != nil {
				t.Fatalf("%s as %s: %v", file, rt.File, err)
			}
			if file == "categorical.ubj" {
				continue
			}
			check(t, sameValues, predict(t, m.(*Model), in), want)
		}
	}
}

func TestMetadata(t *testing.T) {
	m := load(t, "../../../models/fraud_model/v1/model.json", model.Metadata{Name: "fraud_model", Version: "v1", Classes: []string{"safe", "fraud"}})
	got := m.Metadata()
	want := "amount,hour_of_day,merchant_category,distance_from_home_km,transactions_last_24h,card_age_days"
	if strings.Join(got.Features, ",") != want {
		t.Errorf("Features = %v, want %s (from the file's feature_names)", got.Features, want)
	}
	if got.Type != "xgboost" || got.Outputs != 2 || !got.AcceptsMissing || strings.Join(got.Classes, ",") != "safe,fraud" || got.Categorical != nil {
		t.Errorf("Metadata = %+v", got)
	}
	mc := load(t, "testdata/multiclass.json", model.Metadata{})
	if g := mc.Metadata(); strings.Join(g.Classes, ",") != "0,1,2" || strings.Join(g.Features, ",") != "f0,f1,f2,f3,f4" {
		t.Errorf("default names: classes %v features %v", g.Classes, g.Features)
	}
	for file, want := range map[string]string{
		"binary_logitraw.json": "regressor", "reg_logistic.json": "regressor", "rank_ndcg.json": "regressor",
		"binary_hinge.json": "0,1", "multi_softmax.json": "0,1,2,3", "linear_binary.json": "0,1",
	} {
		classes := strings.Join(load(t, "testdata/"+file, model.Metadata{}).Metadata().Classes, ",")
		if classes == "" {
			classes = "regressor"
		}
		if classes != want {
			t.Errorf("%s: classes %q, want %q", file, classes, want)
		}
	}
	cat := load(t, "testdata/categorical.json", model.Metadata{}).Metadata()
	if wantCat := []model.CategoricalFeature{{Index: 1}, {Index: 2}}; !equalCategorical(cat.Categorical, wantCat) {
		t.Errorf("Categorical = %+v, want %+v", cat.Categorical, wantCat)
	}
	if strings.Join(cat.Features, ",") != "num,colour,size" {
		t.Errorf("Features = %v", cat.Features)
	}
}

func equalCategorical(a, b []model.CategoricalFeature) bool {
	return slices.EqualFunc(a, b, func(x, y model.CategoricalFeature) bool {
		return x.Index == y.Index && slices.Equal(x.Categories, y.Categories) && (x.Categories == nil) == (y.Categories == nil)
	})
}

// withCats adds a category container, as XGBoost 3.1+ saves the categories
// of a training DataFrame (CatContainer::Save), to a model file with
// categorical features.
func withCats(t testing.TB, data []byte, enc []any, segments []int) []byte {
	t.Helper()
	var f map[string]any
	if err := json.Unmarshal(quoteNonFinite(data), &f); err != nil {
		t.Fatal(err)
	}
	gb := f["learner"].(map[string]any)["gradient_booster"].(map[string]any)
	gb["model"].(map[string]any)["cats"] = map[string]any{
		"enc": enc, "feature_segments": segments, "sorted_idx": []int{}, "is_ref": false, "sorted": false,
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// arrowStrings is a string column in Arrow's layout, as CatContainer::Save
// writes one: offsets into the bytes (int8) of the names.
func arrowStrings(names ...string) map[string]any {
	offsets := []int{0}
	var values []int
	for _, n := range names {
		for _, b := range []byte(n) {
			values = append(values, int(int8(b)))
		}
		offsets = append(offsets, len(values))
	}
	return map[string]any{"offsets": offsets, "values": values}
}

// TestCategoryNames checks that the category names XGBoost 3.1+ keeps in the
// model reach the metadata in code order, for both column layouts, and leave
// predictions alone.
func TestCategoryNames(t *testing.T) {
	data, err := os.ReadFile("testdata/boosters/gbtree_categorical.model.json")
	if err != nil {
		t.Fatal(err)
	}
	empty := map[string]any{"offsets": []int{}, "values": []int{}}
	colour := arrowStrings("red", "grün", "blue")
	sizes := map[string]any{"type": 6, "values": []int{10, 20, 30, 40}}
	want := []model.CategoricalFeature{{Index: 3, Categories: []string{"red", "grün", "blue"}}, {Index: 4, Categories: []string{"10", "20", "30", "40"}}}
	in, wantPred := boostersCase(t, "gbtree_categorical")
	for name, b := range map[string][]byte{
		"every column":             withCats(t, data, []any{empty, empty, empty, colour, sizes}, []int{0, 0, 0, 0, 3, 7}),
		"categorical columns only": withCats(t, data, []any{colour, sizes}, []int{0, 3, 7}),
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Parse(b, model.Metadata{})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Metadata().Categorical; !equalCategorical(got, want) {
				t.Errorf("Categorical = %+v, want %+v", got, want)
			}
			if code, ok := m.Metadata().Categorical[0].Code("grün"); !ok || code != 1 {
				t.Errorf("Code(grün) = %d, %v", code, ok)
			}
			check(t, sameValues, predict(t, m, in), wantPred)
		})
	}
	t.Run("no names", func(t *testing.T) {
		m := load(t, "testdata/boosters/gbtree_categorical.model.json", model.Metadata{})
		if got, want := m.Metadata().Categorical, []model.CategoricalFeature{{Index: 3}, {Index: 4}}; !equalCategorical(got, want) {
			t.Errorf("Categorical = %+v, want %+v", got, want)
		}
	})
	for name, tc := range map[string]struct {
		enc      []any
		segments []int
		want     string
	}{
		"segments disagree": {[]any{colour, sizes}, []int{0, 2, 7}, "cats: column 0 has 4 offsets for 2 categories"},
		"not a byte":        {[]any{map[string]any{"offsets": []int{0, 1}, "values": []int{200}}, sizes}, []int{0, 1, 5}, "cats: column 0: json: cannot unmarshal number 200"},
		"offsets past the bytes": {[]any{map[string]any{"offsets": []int{0, 9}, "values": []int{65}}, sizes}, []int{0, 1, 5},
			"cats: column 0: offsets out of order or range"},
		"column count": {[]any{colour, sizes, sizes}, []int{0, 3, 7, 11}, "cats lists 3 columns for 5 features, 2 of them categorical"},
		"segments":     {[]any{colour, sizes}, []int{0, 3}, "cats: feature_segments does not delimit 2 columns"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(withCats(t, data, tc.enc, tc.segments), model.Metadata{})
			if err == nil || !errors.Is(err, model.ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestNonFiniteTokens checks that bare NaN and Infinity tokens, which
// XGBoost writes for non-finite floats (split_conditions of categorical
// splits up to 3.0.0), are read as such outside strings and left alone
// inside them.
func TestNonFiniteTokens(t *testing.T) {
	for in, want := range map[string]string{
		`[NaN,1,-Infinity,Infinity]`:  `["NaN",1,"-Infinity","Infinity"]`,
		`{"a":"NaN \"NaN\"","b":NaN}`: `{"a":"NaN \"NaN\"","b":"NaN"}`,
		`[-1.5,-2E-1]`:                `[-1.5,-2E-1]`,
		`[Nope]`:                      `[Nope]`,
		`[NaN`:                        `["NaN"`,
	} {
		if got := string(quoteNonFinite([]byte(in))); got != want {
			t.Errorf("quoteNonFinite(%s) = %s, want %s", in, got, want)
		}
	}
	data, err := os.ReadFile("testdata/boosters/gbtree_categorical.model.json")
	if err != nil {
		t.Fatal(err)
	}
	// XGBoost 3.1 writes 1E-45 where 2.0 to 3.0.0 wrote NaN.
	nan := strings.ReplaceAll(string(data), "1E-45", "NaN")
	m, err := Parse([]byte(nan), model.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	in, want := boostersCase(t, "gbtree_categorical")
	check(t, sameValues, predict(t, m, in), want)
}

// TestQuantile checks reg:quantileerror with one quantile: its link and
// intercept are the identity (src/objective/quantile_obj.cu), so a
// squared-error model relabelled as a quantile model predicts what XGBoost
// predicted for the original. XGBoost 1.7 cannot train one.
func TestQuantile(t *testing.T) {
	data, err := os.ReadFile("testdata/regression.json")
	if err != nil {
		t.Fatal(err)
	}
	one := strings.Replace(string(data), `"name":"reg:squarederror"`, `"name":"reg:quantileerror","quantile_loss_param":{"quantile_alpha":"[0.5]"}`, 1)
	m, err := Parse([]byte(one), model.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	in, want := fixture(t, "testdata/regression.csv", 5)
	check(t, sameValues, predict(t, m, in), want)
}

func TestParseErrors(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	binaryJSON, regression, multiclass, dart, categorical := read("binary.json"), read("regression.json"), read("multiclass.json"), read("dart.json"), read("categorical.json")
	ubj := read("linear_multiclass.ubj")
	early := read("early_stopping.json")
	replace := func(s, old, new string) []byte {
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
		{"not json", []byte("\x00\x01"), model.Metadata{}, "not an XGBoost model"},
		{"other json", []byte(`{"a": 1}`), model.Metadata{}, "no learner.gradient_booster"},
		{"truncated ubjson", []byte(ubj[:len(ubj)/2]), model.Metadata{}, "not an XGBoost UBJSON model"},
		{"objective", replace(binaryJSON, `"binary:logistic"`, `"reg:expectileerror"`), model.Metadata{}, `objective "reg:expectileerror" is not supported (supported: binary:hinge,`},
		{"several quantiles", replace(regression, `"name":"reg:squarederror"`, `"name":"reg:quantileerror","quantile_loss_param":{"quantile_alpha":"[0.1,0.5,0.9]"}`), model.Metadata{},
			"reg:quantileerror with 3 quantiles (quantile_alpha [0.1,0.5,0.9]) is not supported"},
		{"booster", replace(binaryJSON, `"name":"gbtree"`, `"name":"gbforest"`), model.Metadata{}, `booster "gbforest" is not supported (supported: gbtree, dart, gblinear)`},
		{"vector leaves", replace(binaryJSON, `"num_nodes":"55","size_leaf_vector":"0"`, `"num_nodes":"55","size_leaf_vector":"3"`), model.Metadata{}, "tree 0: vector leaves (size_leaf_vector 3, multi_strategy multi_output_tree) are not supported"},
		{"multi-target", replace(regression, `"num_target":"1"`, `"num_target":"2"`), model.Metadata{}, "multi-target models (num_target 2) are not supported"},
		{"split type", replace(binaryJSON, `"split_type":[0`, `"split_type":[2`), model.Metadata{}, "tree 0: node 0: split_type 2 is not supported"},
		{"feature out of range", replace(binaryJSON, `"split_indices":[`, `"split_indices":[99`), model.Metadata{}, "split on feature"},
		{"cycle", replace(binaryJSON, `"left_children":[1,`, `"left_children":[0,`), model.Metadata{}, "out of order"},
		{"class count", []byte(binaryJSON), model.Metadata{Classes: []string{"a", "b", "c"}}, "configuration names 3 classes, the model has 2"},
		{"feature count", []byte(binaryJSON), model.Metadata{Features: []string{"a"}}, "configuration names 1 features, the model has 5"},
		{"classes for a regressor", []byte(regression), model.Metadata{Classes: []string{"a", "b"}}, "classes for a regression model"},
		{"base score", replace(binaryJSON, `"base_score":"5E-1"`, `"base_score":"2"`), model.Metadata{}, "base_score 2 is not a probability"},
		{"base score count", replace(multiclass, `"base_score":"5E-1"`, `"base_score":"[1,2]"`), model.Metadata{}, "base_score [1,2] has 2 values for 3 output groups"},
		{"base score NaN", replace(regression, `"base_score":"5E1"`, `"base_score":"[NaN]"`), model.Metadata{}, `base_score "[NaN]" is not a number`},
		{"too many features", replace(binaryJSON, `"num_class":"0","num_feature":"5"`, `"num_class":"0","num_feature":"100001"`), model.Metadata{}, "num_feature 100001 is more than the 100000 supported"},
		{"too many trees", []byte(`{"learner":{"gradient_booster":{"name":"gbtree","model":{"trees":[` + strings.Repeat("{},", MaxTrees) +
			`{}],"tree_info":[]}},"learner_model_param":{"num_feature":"1"},"objective":{"name":"reg:squarederror"}}}`), model.Metadata{}, "1000001 trees, more than the 1000000 supported"},
		{"no features", replace(binaryJSON, `"num_class":"0","num_feature":"5"`, `"num_class":"0","num_feature":"0"`), model.Metadata{}, "num_feature is 0: the model takes no features"},
		{"too many classes", replace(multiclass, `"num_class":"3"`, `"num_class":"10001"`), model.Metadata{}, "num_class 10001 is more than the 10000 supported"},
		{"classes for one output", replace(binaryJSON, `"num_class":"0"`, `"num_class":"3"`), model.Metadata{}, "num_class 3 with objective binary:logistic, which predicts one value"},
		{"dart without weights", replace(dart, `"weight_drop":[`, `"weight_dropped":[`), model.Metadata{}, "dart booster without weight_drop"},
		{"dart weight count", replace(dart, `"weight_drop":[`, `"weight_drop":[1,`), model.Metadata{}, "dart weight_drop lists 31 weights for 30 trees"},
		{"best iteration", replace(early, `"best_iteration":"5"`, `"best_iteration":"-1"`), model.Metadata{}, `learner attribute best_iteration "-1" is not an iteration`},
		{"category range", replace(categorical, `"categories":[`, `"categories":[16777216,`), model.Metadata{}, "category 16777216 is out of range"},
		{"categories of a numerical split", replace(categorical, `"categories_nodes":[0,2,`, `"categories_nodes":[0,1,`), model.Metadata{}, "tree 0: node 1 lists categories but is not a categorical split"},
		{"categories out of order", replace(categorical, `"categories_nodes":[0,2,`, `"categories_nodes":[2,0,`), model.Metadata{}, "tree 0: categories_nodes[1] = 0 is out of order or range"},
		{"categories segment", replace(categorical, `"categories_sizes":[4,`, `"categories_sizes":[400,`), model.Metadata{}, "tree 0: node 0: categories segment [0, 0+400) outside the 41 categories"},
		{"feature types", replace(categorical, `"feature_types":["float","c","c"]`, `"feature_types":["c"]`), model.Metadata{}, "feature_types lists 1 features, num_feature is 3"},
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

// TestBestIteration checks that the trees past best_iteration are left out,
// and that without the attribute all of them count.
func TestBestIteration(t *testing.T) {
	m := load(t, "testdata/early_stopping.json", model.Metadata{})
	if len(m.trees) != 6 {
		t.Errorf("%d trees, want the 6 of iterations 0 to best_iteration 5", len(m.trees))
	}
	data, err := os.ReadFile("testdata/early_stopping.json")
	if err != nil {
		t.Fatal(err)
	}
	all, err := Parse([]byte(strings.Replace(string(data), `"best_iteration"`, `"not_best_iteration"`, 1)), model.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.trees) <= 6 {
		t.Errorf("%d trees without best_iteration; the fixture stopped no trees early", len(all.trees))
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

// FuzzParse feeds Parse model files, JSON and UBJSON: it must not panic, and
// what it builds from a small input must be small.
func FuzzParse(f *testing.F) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	for _, name := range []string{"categorical_small.json", "categorical_small.ubj", "linear_multiclass.json", "linear_multiclass.ubj",
		"boosters/gbtree_single_tree.model.json", "boosters/gbtree_multiclass.model.json"} {
		f.Add(read(name))
	}
	for _, layout := range dartLayouts(f, read("boosters/dart_regression.model.json")) {
		f.Add(layout)
	}
	f.Add(withCats(f, read("boosters/gbtree_categorical_binary.model.json"), []any{arrowStrings("a", "b", "c", "d")}, []int{0, 4}))
	f.Add([]byte(`{"learner":{"gradient_booster":{"name":"gbtree","model":{"trees":[{}],"tree_info":[0]}},"objective":{"name":"reg:squarederror"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, model.Metadata{})
		if err != nil {
			if !errors.Is(err, model.ErrInvalidModel) {
				t.Fatalf("error %v does not wrap ErrInvalidModel", err)
			}
			return
		}
		nodes := 0
		for _, tr := range m.trees {
			nodes += len(tr.nodes)
		}
		meta := m.Metadata()
		if len(m.trees) > len(data) || nodes > len(data) || len(meta.Features) > MaxFeatures || meta.Outputs > MaxClasses {
			t.Fatalf("%d bytes made %d trees, %d nodes, %d features, %d outputs", len(data), len(m.trees), nodes, len(meta.Features), meta.Outputs)
		}
		if len(meta.Features) > 1000 {
			return // a wide model from a small file: predicting would only fill memory
		}
		in := model.Batch{Rows: 2, Cols: len(meta.Features), Values: make([]float64, 2*len(meta.Features))}
		in.Values[0] = math.NaN()
		if _, err := model.SafePredict(context.Background(), m, in); err != nil {
			t.Fatal(err)
		}
	})
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
