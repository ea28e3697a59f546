package lightgbm

import (
	"bufio"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// readTable reads whitespace-separated numbers, one row a line.
func readTable(t *testing.T, path string) [][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]float64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row []float64
		for _, s := range strings.Fields(sc.Text()) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			row = append(row, v)
		}
		if row != nil {
			rows = append(rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// readLibSVM reads "label index:value ..." lines into dense rows of n
// features; an absent index is 0.
func readLibSVM(t *testing.T, path string, n int) [][]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		row := make([]float64, n)
		for _, f := range strings.Fields(line)[1:] {
			i, v, _ := strings.Cut(f, ":")
			j, err1 := strconv.Atoi(i)
			x, err2 := strconv.ParseFloat(v, 64)
			if err1 != nil || err2 != nil || j >= n {
				t.Fatalf("%s: bad pair %q", path, f)
			}
			row[j] = x
		}
		rows = append(rows, row)
	}
	return rows
}

// TestLeavesV2Multiclass: a version=v2 file (LightGBM 2.x) with 13 classes
// and categorical splits on 14 features, against LightGBM's raw scores; the
// probabilities are the softmax of LightGBM's raw scores, worked out here.
func TestLeavesV2Multiclass(t *testing.T) {
	m := load(t, "testdata/leaves/lg_kddcup99.model")
	rows := readTable(t, "testdata/leaves/kddcup99_test.tsv")
	raw := readTable(t, "testdata/leaves/lg_kddcup99_true_predictions.txt")
	assertRows(t, "raw score", rawOf(m, rows), raw, exact)
	var want [][]float64
	for _, r := range raw {
		mx := math.Inf(-1)
		for _, v := range r {
			mx = math.Max(mx, v)
		}
		var sum float64
		p := make([]float64, len(r))
		for k, v := range r {
			p[k] = math.Exp(v - mx)
			sum += p[k]
		}
		for k := range p {
			p[k] /= sum
		}
		want = append(want, p)
	}
	assertRows(t, "probabilities", predictRows(t, m, rows), want, probUlps)
	md := m.Metadata()
	if md.Outputs != 13 || len(md.Classes) != 13 || md.Classes[12] != "12" {
		t.Errorf("classes %q outputs %d", md.Classes, md.Outputs)
	}
	// feature_infos lists categories for these; 6, 7, 8 and 20 were
	// declared categorical but are constant ("none") and split nowhere.
	var idx []int
	for _, c := range md.Categorical {
		idx = append(idx, c.Index)
		if c.Categories != nil {
			t.Errorf("feature %d has category names %q; the file has none", c.Index, c.Categories)
		}
	}
	if got := stringOf(idx); got != "1 2 3 9 10 11 13 21 22 23" {
		t.Errorf("categorical features %s, want 1 2 3 9 10 11 13 21 22 23", got)
	}
}

func stringOf(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " ")
}

// TestLeavesV2DartBinary: a version=v2 DART binary model against LightGBM's
// probabilities of class 1.
func TestLeavesV2DartBinary(t *testing.T) {
	m := load(t, "testdata/leaves/lg_dart_breast_cancer.model")
	rows := readTable(t, "testdata/leaves/breast_cancer_test.tsv")
	var want [][]float64
	for _, p := range readTable(t, "testdata/leaves/lg_dart_breast_cancer_true_predictions.txt") {
		want = append(want, []float64{1 - p[0], p[0]})
	}
	assertRows(t, "probabilities", predictRows(t, m, rows), want, probUlps)
}

// TestLeavesV3GammaCategorical: a version=v3 file (LightGBM 3.x) with the
// gamma objective and categorical splits on integer-coded features, against
// LightGBM's predictions (exp of the raw score). poisson and tweedie share
// gamma's link, so the same file with its objective line changed must give the
// same predictions.
func TestLeavesV3GammaCategorical(t *testing.T) {
	b, err := os.ReadFile("testdata/leaves/genlin_fmtp_gamma_AvgClaimAmount.model")
	if err != nil {
		t.Fatal(err)
	}
	rows := readTable(t, "testdata/leaves/genlin_fmtp_gamma_AvgClaimAmount_features.tsv")
	want := readTable(t, "testdata/leaves/genlin_fmtp_gamma_AvgClaimAmount_true_predictions.txt")
	// Files of LightGBM 2.3 to 3.0 are v3 without is_linear; a file
	// without tree_sizes is read tree after tree (LightGBM does both).
	variants := map[string]string{
		"gamma":                    string(b),
		"poisson":                  strings.Replace(string(b), "\nobjective=gamma\n", "\nobjective=poisson\n", 1),
		"tweedie":                  strings.Replace(string(b), "\nobjective=gamma\n", "\nobjective=tweedie\n", 1),
		"gamma without is_linear":  strings.ReplaceAll(string(b), "\nis_linear=0\n", "\n"),
		"gamma without tree_sizes": regexp.MustCompile(`\ntree_sizes=[0-9 ]*\n`).ReplaceAllString(string(b), "\n"),
	}
	for name, src := range variants {
		t.Run(name, func(t *testing.T) {
			if name != "gamma" && src == string(b) {
				t.Fatal("the variant is the original file")
			}
			m := parseString(t, src)
			assertRows(t, "prediction", predictRows(t, m, rows), want, ulps)
			md := m.Metadata()
			if md.IsClassifier() || md.Outputs != 1 || md.Features[0] != "VehBrand" {
				t.Errorf("metadata %+v", md)
			}
			// pandas_categorical:[] names no categories for the five
			// categorical features (integer codes, declared by index).
			if len(md.Categorical) != 5 || md.Categorical[4].Index != 4 || md.Categorical[0].Categories != nil {
				t.Errorf("categorical %+v", md.Categorical)
			}
		})
	}
}

// TestLeavesV2RandomForest: a version=v2 random forest (average_output). The
// LightGBM 2.x that wrote it predicted the average of the leaf values without
// the objective's link (LightGBM issue 1843); LightGBM 3.x and 4.x, which this
// package follows, apply the link after averaging (GBDT::Predict). The
// averaged raw score must equal the 2.x prediction, and the probability is
// its sigmoid.
func TestLeavesV2RandomForest(t *testing.T) {
	m := load(t, "testdata/leaves/lg_rf_iris.model")
	rows := readLibSVM(t, "testdata/leaves/iris_test.libsvm", 4)
	old := readTable(t, "testdata/leaves/lg_rf_iris_true_predictions.txt")
	assertRows(t, "averaged raw score", rawOf(m, rows), old, exact)
	var want [][]float64
	for _, r := range old {
		p := 1 / (1 + math.Exp(-r[0]))
		want = append(want, []float64{1 - p, p})
	}
	assertRows(t, "probabilities", predictRows(t, m, rows), want, probUlps)
}
