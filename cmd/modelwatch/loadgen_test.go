package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runLoadgen runs modelwatch loadgen with args and returns its exit code,
// stdout and stderr.
func runLoadgen(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"loadgen"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestLoadgenFeedback runs modelwatch loadgen with labels against modelwatch
// serve, both real binaries: the accuracy loadgen reports is the one the
// server counts in model_feedback_total, and concept drift lowers it.
func TestLoadgenFeedback(t *testing.T) {
	p := start(t, 1)
	feedbackTotals := func() (correct, incorrect float64) {
		_, text, _ := get(t, http.DefaultClient, p.url("/metrics"))
		s := scrape(t, text)
		return s[`model_feedback_total{model_name="fraud_model",model_version="v1",result="correct"}`],
			s[`model_feedback_total{model_name="fraud_model",model_version="v1",result="incorrect"}`]
	}
	args := []string{"--url", p.url(""), "--requests", "200", "--batch", "2", "--seed", "5",
		"--feedback-share", "0.5", "--feedback-delay", "100ms"}

	code, out, errOut := runLoadgen(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("loadgen: exit %d: %s", code, errOut)
	}
	var res struct {
		OK       int `json:"ok"`
		Feedback struct {
			Requests  int            `json:"requests"`
			Labels    int            `json:"labels"`
			OK        int            `json:"ok"`
			ByStatus  map[string]int `json:"by_status"`
			Dropped   int            `json:"dropped"`
			Unsent    int            `json:"unsent"`
			Correct   int            `json:"correct"`
			Incorrect int            `json:"incorrect"`
			Accuracy  float64        `json:"accuracy"`
		} `json:"feedback"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fb := res.Feedback
	correct, incorrect := feedbackTotals()
	if res.OK != 200 || fb.Requests < 70 || fb.Requests > 130 || fb.OK != fb.Requests || fb.ByStatus["200"] != fb.OK ||
		fb.Labels != 2*fb.Requests || fb.Dropped != 0 || fb.Unsent != 0 {
		t.Errorf("200 predictions, half of them labelled: %s", out)
	}
	if float64(fb.Correct) != correct || float64(fb.Incorrect) != incorrect || fb.Correct+fb.Incorrect != fb.Labels {
		t.Errorf("loadgen sent %d correct, %d incorrect labels; the server counted %v, %v", fb.Correct, fb.Incorrect, correct, incorrect)
	}

	// The same traffic with 40% of the labels flipped, in text.
	code, out, errOut = runLoadgen(t, append(args, "--concept-drift", "flip=0.4")...)
	if code != 0 {
		t.Fatalf("loadgen --concept-drift: exit %d: %s", code, errOut)
	}
	c2, i2 := feedbackTotals()
	dc, di := int(c2-correct), int(i2-incorrect)
	want := fmt.Sprintf("accuracy sent: %.4f (%d correct, %d incorrect)\n", float64(dc)/float64(dc+di), dc, di)
	if !strings.Contains(out, want) {
		t.Errorf("the server counted %d correct, %d incorrect; loadgen printed\n%s", dc, di, out)
	}
	if dc+di != fb.Labels || float64(dc)/float64(dc+di) > fb.Accuracy-0.1 {
		t.Errorf("with flip=0.4: %d correct, %d incorrect; without: accuracy %.4f", dc, di, fb.Accuracy)
	}
}

// TestLoadgenFeedbackFlags: invalid label flags exit 2 before any traffic.
func TestLoadgenFeedbackFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--feedback-share", "1.5"}, "feedback-share 1.5 is outside 0..1"},
		{[]string{"--feedback-share", "0.5", "--feedback-delay", "-1s"}, "feedback-delay -1s is negative"},
		{[]string{"--feedback-share", "0.5", "--feedback-max-pending", "0"}, "feedback-max-pending 0 is below 1"},
		{[]string{"--concept-drift", "flip=0.3"}, "it needs --feedback-share"},
		{[]string{"--feedback-share", "0.5", "--concept-drift", "flip=2"}, `concept drift "flip=2": the share is outside 0..1`},
		{[]string{"--feedback-share", "0.5", "--concept-drift", "rule=3"}, `concept drift "rule=3": want flip=share or logit=+delta`},
	} {
		code, _, errOut := runLoadgen(t, append([]string{"--url", "http://127.0.0.1:1"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("loadgen %v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
