package server

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"unsafe"
	"weak"

	"github.com/modelwatch/modelwatch/internal/model"
)

// A row may give a categorical feature as its category's name, a string,
// instead of its code. What a name the model does not know becomes follows
// the library that trained the model, as its Python package treats an
// unseen category in a pandas DataFrame:
//
//   - LightGBM sets the DataFrame's categories to the training ones
//     (pandas_categorical), so an unknown name becomes code -1 and then NaN:
//     a missing value, routed as the trees route missing values.
//   - XGBoost 3.1 and later re-code a DataFrame's categories to the training
//     ones and raise "Found a category not in the training set" for one it
//     does not know (its documented way around is a pd.Categorical with the
//     training categories, which makes the unknown one missing); the server
//     refuses it too (422 invalid_input), and takes null as missing.
//
// Each runtime says which rule is its library's in
// model.Metadata.UnknownCategoryIsMissing.

// categoryIndex is what the server needs to turn a model's category names
// into codes: for each column, whether it is categorical and the code of
// each name.
type categoryIndex struct {
	// cols has an entry per feature (none for a model without categorical
	// features); nil for a numeric feature.
	cols []*featureCodes
}

// featureCodes is one categorical feature's codes by name.
type featureCodes struct {
	// codes is nil when the model knows the feature's codes only.
	codes map[string]int
}

// newCategoryIndex builds the index of a model's metadata. Where a name is
// listed twice, the first code counts, as CategoricalFeature.Code says.
func newCategoryIndex(meta *model.Metadata) *categoryIndex {
	idx := &categoryIndex{cols: make([]*featureCodes, len(meta.Features))}
	for _, cf := range meta.Categorical {
		if cf.Index < 0 || cf.Index >= len(meta.Features) {
			continue
		}
		fc := &featureCodes{}
		if cf.Categories != nil {
			fc.codes = make(map[string]int, len(cf.Categories))
			for code, name := range cf.Categories {
				if _, dup := fc.codes[name]; !dup {
					fc.codes[name] = code
				}
			}
		}
		idx.cols[cf.Index] = fc
	}
	return idx
}

// categoryCache keeps one categoryIndex per model version, so that a
// request does not rebuild a map of thousands of names. It is keyed by a
// weak pointer to the model's Categorical list: an entry goes when the
// model's metadata is collected, after the model is unloaded.
type categoryCache struct {
	m sync.Map // weak.Pointer[model.CategoricalFeature] -> *categoryIndex
}

// noCategories is the index of a model without categorical features.
var noCategories = &categoryIndex{}

// get returns the index of meta, building it on first use.
func (c *categoryCache) get(meta *model.Metadata) *categoryIndex {
	if len(meta.Categorical) == 0 {
		return noCategories
	}
	first := unsafe.SliceData(meta.Categorical)
	key := weak.Make(first)
	if idx, ok := c.m.Load(key); ok {
		return idx.(*categoryIndex)
	}
	idx, loaded := c.m.LoadOrStore(key, newCategoryIndex(meta))
	if !loaded {
		runtime.AddCleanup(first, func(k weak.Pointer[model.CategoricalFeature]) { c.m.Delete(k) }, key)
	}
	return idx.(*categoryIndex)
}

// code returns the value a string stands for in column col: the code of a
// category name, NaN for an unknown name the model takes as missing, or,
// when the string cannot be taken, why not ("" otherwise). The reason
// quotes the name; it reaches the client, and the log at debug level only.
func (idx *categoryIndex) code(meta *model.Metadata, col int, name string) (float64, string) {
	feature := meta.Features[col]
	fc := idx.feature(col)
	switch {
	case fc == nil:
		return 0, fmt.Sprintf("is a string, but %s is a numeric feature: send a number", feature)
	case fc.codes == nil:
		return 0, fmt.Sprintf("is a string, but model %s %s knows the categories of %s by code only: send the code, a whole number",
			meta.Name, meta.Version, feature)
	}
	if c, ok := fc.codes[name]; ok {
		return float64(c), ""
	}
	switch {
	case !meta.UnknownCategoryIsMissing:
		return 0, fmt.Sprintf("%s is not a category of %s in model %s %s (GET /v2/models/%s/versions/%s lists them; null is a missing value)",
			quoteName(name), feature, meta.Name, meta.Version, meta.Name, meta.Version)
	case !meta.AcceptsMissing:
		return 0, fmt.Sprintf("%s is not a category of %s, which makes it a missing value, and model %s takes no missing values",
			quoteName(name), feature, meta.Name)
	}
	return math.NaN(), ""
}

// feature returns the codes of column col, nil for a numeric feature.
func (idx *categoryIndex) feature(col int) *featureCodes {
	if col < len(idx.cols) {
		return idx.cols[col]
	}
	return nil
}

// element returns the value an element of a BYTES tensor stands for in
// column col: for a categorical feature with names, the code of a name as
// code does; for any other feature, a decimal number in JSON's syntax (for
// a feature known by codes, the code).
func (idx *categoryIndex) element(meta *model.Metadata, col int, s string) (float64, string) {
	if fc := idx.feature(col); fc != nil && fc.codes != nil {
		return idx.code(meta, col, s)
	}
	if x, ok := parseDecimal(s); ok {
		return x, ""
	}
	return 0, fmt.Sprintf("%s is not a decimal number, which a BYTES element must be for feature %s", quoteName(s), meta.Features[col])
}

// parseDecimal parses a number written as JSON writes numbers; a number
// too large for a float64 is ±Inf, which validation refuses.
func parseDecimal(s string) (float64, bool) {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch n := digits(); {
	case n == 0, n > 1 && s[i-n] == '0':
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	x, err := strconv.ParseFloat(s, 64)
	return x, err == nil || errors.Is(err, strconv.ErrRange)
}

// quoteName quotes a client's string for an error message, cut to 64 bytes.
func quoteName(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

// resolveNames puts the code of each string of the rows into its place in
// values, which holds rows of cols values. On failure it returns the index
// of the first value it cannot take and why.
func (idx *categoryIndex) resolveNames(meta *model.Metadata, values []float64, cols int, names []cellName) (int, string) {
	for _, n := range names {
		v, why := idx.code(meta, n.at%cols, n.name)
		if why != "" {
			return n.at, why
		}
		values[n.at] = v
	}
	return 0, ""
}

// categoricalInfo lists each categorical feature of a model by name with its
// category names, in code order; null for a feature known by code only.
// It is nil for a model without categorical features.
func categoricalInfo(meta *model.Metadata) map[string][]string {
	if len(meta.Categorical) == 0 {
		return nil
	}
	out := make(map[string][]string, len(meta.Categorical))
	for _, cf := range meta.Categorical {
		if cf.Index >= 0 && cf.Index < len(meta.Features) {
			out[meta.Features[cf.Index]] = cf.Categories
		}
	}
	return out
}
