package server

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestInfoEndpoints: GET / lists the API's endpoints from its route table,
// so that a route added is listed, and nothing else is.
func TestInfoEndpoints(t *testing.T) {
	for _, separate := range []bool{false, true} {
		h := newHarness(t, func(o *Options) { o.SeparateMetrics = separate })
		rec := h.do("GET", "/", "application/json", "", "Accept", "application/json")
		var info struct {
			Endpoints []string `json:"endpoints"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
			t.Fatalf("GET /: %d %s", rec.Code, rec.Body)
		}
		for _, want := range []string{"POST /predict", "POST /feedback", "GET /", "GET /status.json", "GET /v2/models/{model}/versions/{version}/infer",
			"POST /v2/models/{model}/versions/{version}/infer", "POST /v2/repository/models/{model}/unload"} {
			if want == "GET /v2/models/{model}/versions/{version}/infer" {
				if slices.Contains(info.Endpoints, want) {
					t.Errorf("endpoints list %s, which the route table does not serve", want)
				}
				continue
			}
			if !slices.Contains(info.Endpoints, want) {
				t.Errorf("endpoints %q lack %s", info.Endpoints, want)
			}
		}
		if got := slices.Contains(info.Endpoints, "GET /metrics"); got == separate {
			t.Errorf("with SeparateMetrics %v, GET /metrics listed: %v", separate, got)
		}
		for _, e := range info.Endpoints {
			if e == "HEAD /" || e == "GET /static/" {
				t.Errorf("endpoints list %s", e)
			}
		}
	}
}
