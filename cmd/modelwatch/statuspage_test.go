package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium; under CI=true a missing one fails the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (Debian package chromium); CI must have it")
	}
	t.Skip("chromium not installed (Debian package chromium)")
	return ""
}

// TestStatusPage loads the status page in headless Chromium after known
// traffic, and checks that the charts are drawn and the numbers shown are
// the metrics'. The screenshot is kept in $MODELWATCH_TEST_ARTIFACTS (or the
// system's temporary directory).
func TestStatusPage(t *testing.T) {
	browser := chromium(t)
	p := start(t, 1)
	for i := range 40 {
		row := safeRow
		if i%4 == 0 {
			row = fraudRow
		}
		if code, _ := post(t, p.url("/predict"), `{"inputs": [`+row+`]}`); code != 200 {
			t.Fatal(code)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	step := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := chromedp.Run(ctx, a); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return v
	}
	step("open", chromedp.Navigate(p.url("/")))
	step("models table", chromedp.WaitVisible(`#models tbody tr[data-model="fraud_model v1"]`))
	// The page polls every 2 seconds; wait for a poll that saw all 40.
	for _, cond := range []string{
		`document.getElementById("total-requests").textContent === "40"`,
		`document.querySelectorAll("#chart-rps canvas, #chart-p99 canvas").length >= 2`,
	} {
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("browser: waiting for %s: %v", cond, err)
		}
	}
	total := text(`#total-requests`)
	share := text(`.model-classes[data-model="fraud_model v1"] tr:nth-child(1) .share`)
	rps := text(`#models tr[data-model="fraud_model v1"] .rps`)
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#chart-rps canvas, #chart-p99 canvas").length`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	_, exposition, _ := get(t, http.DefaultClient, p.url("/metrics"))
	s := scrape(t, exposition)
	served := s[`model_requests_total{model_name="fraud_model",model_version="v1",status="success"}`]
	if total != strconv.Itoa(int(served)) {
		t.Errorf("page shows %s requests, /metrics %v", total, served)
	}
	fraud := s[`model_predicted_class_total{class="fraud",model_name="fraud_model",model_version="v1"}`]
	if want := fmt.Sprintf("%.1f%%", 100*fraud/served); share != want { // the first row is class "fraud"
		t.Errorf("page shows %s fraud, /metrics %s", share, want)
	}
	if charts < 2 {
		t.Errorf("%d charts drawn", charts)
	}
	if v, err := strconv.ParseFloat(strings.TrimSpace(rps), 64); err != nil || v <= 0 {
		t.Errorf("requests/s shown: %q", rps)
	}
	dir := os.Getenv("MODELWATCH_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "modelwatch-artifacts")
	}
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}
