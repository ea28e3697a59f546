package prometheustest

import (
	"slices"
	"testing"
)

// TestConfig turns a Prometheus 3 configuration into what each version
// runs; a comment on a key that goes, goes with it.
func TestConfig(t *testing.T) {
	cfg := `scrape_configs:
  - job_name: modelwatch
    # both forms
    scrape_native_histograms: true
    always_scrape_classic_histograms: true
    static_configs:
      - targets: ["a:8000"]
  - scrape_native_histograms: true
    job_name: other
`
	for _, tc := range []struct {
		v        Version
		want     string
		features []string
	}{
		{Version{Major: 3, Minor: 16}, cfg, nil},
		{Version{Major: 2, Minor: 53}, `scrape_configs:
  - job_name: modelwatch
    scrape_classic_histograms: true
    static_configs:
      - targets: ["a:8000"]
  - job_name: other
`, []string{"native-histograms"}},
		{Version{Major: 2, Minor: 42}, `scrape_configs:
  - job_name: modelwatch
    static_configs:
      - targets: ["a:8000"]
  - job_name: other
`, nil},
	} {
		got, features := tc.v.Config(cfg)
		if got != tc.want || !slices.Equal(features, tc.features) {
			t.Errorf("%d.%d: got features %v and\n%s\nwant %v and\n%s", tc.v.Major, tc.v.Minor, features, got, tc.features, tc.want)
		}
	}
}
