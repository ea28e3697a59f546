package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestDriftFromLoadgen shifts one feature with loadgen's drift mode and
// checks, on the real binary's /metrics, that its PSI rises above 0.2 while
// the features left alone stay below 0.1.
func TestDriftFromLoadgen(t *testing.T) {
	p := start(t, 1)
	cmd := exec.Command(binary, "loadgen", "--url", "http://"+p.addrs["api"], "--requests", "600", "--batch", "5",
		"--drift", "distance_from_home_km=+60", "--seed", "11", "--json")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out)
	}
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	if rows := s[`model_drift_window_rows{model_name="fraud_model",model_version="v1"}`]; rows != 3000 {
		t.Errorf("drift window holds %v rows, want 3000", rows)
	}
	for _, f := range []string{"amount", "hour_of_day", "merchant_category", "distance_from_home_km", "transactions_last_24h", "card_age_days"} {
		psi, ok := s[fmt.Sprintf(`model_feature_drift_psi{feature=%q,model_name="fraud_model",model_version="v1"}`, f)]
		switch {
		case !ok:
			t.Errorf("no PSI for %s", f)
		case f == "distance_from_home_km" && psi <= 0.2:
			t.Errorf("shifted feature %s: PSI %v, want over 0.2", f, psi)
		case f != "distance_from_home_km" && psi >= 0.1:
			t.Errorf("feature %s was not shifted: PSI %v, want under 0.1", f, psi)
		}
		t.Logf("PSI %s = %.4f", f, psi)
	}
	if _, ok := s[`model_prediction_drift_psi{model_name="fraud_model",model_version="v1"}`]; !ok {
		t.Error("no prediction drift")
	}
}

// TestFeedbackAccuracy labels predictions through POST /feedback and reads
// the accuracy back from /metrics.
func TestFeedbackAccuracy(t *testing.T) {
	p := start(t, 1)
	correct := 0
	for i := 0; i < 12; i++ {
		row := safeRow
		if i%3 == 0 {
			row = fraudRow
		}
		code, r := post(t, p.url("/predict"), `{"inputs": [`+row+`]}`)
		if code != 200 {
			t.Fatal(code)
		}
		label := "safe"
		if i%4 == 0 { // 3 of the 12 labelled fraud: rows 0, 4 and 8
			label = "fraud"
		}
		if r["prediction"] == label {
			correct++
		}
		code, fb := post(t, p.url("/feedback"), fmt.Sprintf(`{"request_id": %q, "label": %q}`, r["request_id"], label))
		if code != 200 || fb["model_name"] != "fraud_model" {
			t.Fatalf("feedback: %d %v", code, fb)
		}
	}
	code, fb := post(t, p.url("/feedback"), `{"request_id": "never-seen", "label": "safe"}`)
	if code != 404 || fb["error_type"] != "unknown_request" {
		t.Errorf("unknown request: %d %v", code, fb)
	}
	_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, text)
	want := float64(correct) / 12
	if got := s[`model_accuracy_ratio{model_name="fraud_model",model_version="v1"}`]; got != want {
		t.Errorf("model_accuracy_ratio %v, want %v", got, want)
	}
	for k, v := range map[string]float64{
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`:   float64(correct),
		`model_feedback_total{model_name="fraud_model",model_version="v1",result="incorrect"}`: float64(12 - correct),
		`model_feedback_total{model_name="",model_version="",result="unknown_request"}`:        1,
		`modelwatch_collector_success{collector="feedback"}`:                                   1,
		`modelwatch_collector_success{collector="drift"}`:                                      1,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	if strings.Contains(text, "never-seen") {
		t.Error("a client's request id reached /metrics")
	}
}
