//go:build cgo

package gpu

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelwatch/modelwatch/internal/gpu/gputest"
	"github.com/modelwatch/modelwatch/internal/metrics"
)

const ourPID = 4242

func fakeGPUs(n int) *server.Server { return gputest.NewServer(n, ourPID) }

func TestCollectorExposition(t *testing.T) {
	c, err := NewCollector(fakeGPUs(1), ourPID, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP gpu_clock_throttle_active 1 while the named reason holds the clocks down, else 0.
# TYPE gpu_clock_throttle_active gauge
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="applications_clocks_setting",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="display_clock_setting",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="gpu_idle",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="hw_power_brake_slowdown",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="hw_slowdown",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="hw_thermal_slowdown",uuid="GPU-00000000"} 1
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="sw_power_cap",uuid="GPU-00000000"} 1
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="sw_thermal_slowdown",uuid="GPU-00000000"} 0
gpu_clock_throttle_active{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",reason="sync_boost",uuid="GPU-00000000"} 0
# HELP gpu_driver_info NVIDIA driver and CUDA driver versions; always 1.
# TYPE gpu_driver_info gauge
gpu_driver_info{cuda_driver_version="12.4",driver_version="550.54.15"} 1
# HELP gpu_energy_joules_total Energy consumed by the GPU since the driver was loaded.
# TYPE gpu_energy_joules_total counter
gpu_energy_joules_total{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 123456.789
# HELP gpu_last_xid_error Code of the last XID critical error since modelwatch started; 0 for none.
# TYPE gpu_last_xid_error gauge
gpu_last_xid_error{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 0
# HELP gpu_memory_clock_hertz Current memory clock.
# TYPE gpu_memory_clock_hertz gauge
gpu_memory_clock_hertz{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 2.619e+09
# HELP gpu_memory_total_bytes Total device memory.
# TYPE gpu_memory_total_bytes gauge
gpu_memory_total_bytes{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 8.5520809984e+10
# HELP gpu_memory_used_bytes Device memory in use, as nvidia-smi reports it (reserved memory excluded where the driver says).
# TYPE gpu_memory_used_bytes gauge
gpu_memory_used_bytes{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 2.147483648e+10
# HELP gpu_memory_utilization_percent Percent of time over the last sample period during which device memory was read or written.
# TYPE gpu_memory_utilization_percent gauge
gpu_memory_utilization_percent{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 5
# HELP gpu_power_limit_watts Power limit the driver enforces.
# TYPE gpu_power_limit_watts gauge
gpu_power_limit_watts{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 700
# HELP gpu_power_watts Power drawn by the GPU board.
# TYPE gpu_power_watts gauge
gpu_power_watts{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 300.5
# HELP gpu_sm_clock_hertz Current clock of the streaming multiprocessors.
# TYPE gpu_sm_clock_hertz gauge
gpu_sm_clock_hertz{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 1.98e+09
# HELP gpu_temperature_celsius GPU core temperature.
# TYPE gpu_temperature_celsius gauge
gpu_temperature_celsius{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 40
# HELP gpu_utilization_percent Percent of time over the last sample period during which a kernel ran on the GPU.
# TYPE gpu_utilization_percent gauge
gpu_utilization_percent{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 10
# HELP gpu_xid_errors_total XID critical errors reported by the driver since modelwatch started.
# TYPE gpu_xid_errors_total counter
gpu_xid_errors_total{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 0
# HELP process_gpu_memory_used_bytes Device memory used by this modelwatch process.
# TYPE process_gpu_memory_used_bytes gauge
process_gpu_memory_used_bytes{gpu_id="0"} 1.048576e+06
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestCollectorEveryGPU(t *testing.T) {
	c, err := NewCollector(fakeGPUs(8), ourPID, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(c, "gpu_temperature_celsius"); got != 8 {
		t.Errorf("%d temperature series, want 8", got)
	}
	if got := testutil.CollectAndCount(c, "gpu_clock_throttle_active"); got != 8*len(throttleReasons) {
		t.Errorf("%d throttle series", got)
	}
	want := `
# HELP process_gpu_memory_used_bytes Device memory used by this modelwatch process.
# TYPE process_gpu_memory_used_bytes gauge
process_gpu_memory_used_bytes{gpu_id="0"} 1.048576e+06
process_gpu_memory_used_bytes{gpu_id="1"} 2.097152e+06
process_gpu_memory_used_bytes{gpu_id="2"} 3.145728e+06
process_gpu_memory_used_bytes{gpu_id="3"} 4.194304e+06
process_gpu_memory_used_bytes{gpu_id="4"} 5.24288e+06
process_gpu_memory_used_bytes{gpu_id="5"} 6.291456e+06
process_gpu_memory_used_bytes{gpu_id="6"} 7.340032e+06
process_gpu_memory_used_bytes{gpu_id="7"} 8.388608e+06
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "process_gpu_memory_used_bytes"); err != nil {
		t.Error(err)
	}
}

func TestXIDErrors(t *testing.T) {
	s := fakeGPUs(2)
	queue := []nvml.EventData{
		{Device: s.Devices[1], EventType: nvml.EventTypeXidCriticalError, EventData: 48},
		{Device: s.Devices[1], EventType: nvml.EventTypeXidCriticalError, EventData: 79},
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{WaitFunc: func(timeout uint32) (nvml.EventData, nvml.Return) {
			if timeout != 0 {
				t.Errorf("Wait(%d): a scrape must not wait for events", timeout)
			}
			if len(queue) == 0 {
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
			e := queue[0]
			queue = queue[1:]
			return e, nvml.SUCCESS
		}, FreeFunc: func() nvml.Return { return nvml.SUCCESS }}, nvml.SUCCESS
	}
	c, err := NewCollector(s, ourPID, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP gpu_xid_errors_total XID critical errors reported by the driver since modelwatch started.
# TYPE gpu_xid_errors_total counter
gpu_xid_errors_total{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 0
gpu_xid_errors_total{gpu_id="1",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000001"} 2
# HELP gpu_last_xid_error Code of the last XID critical error since modelwatch started; 0 for none.
# TYPE gpu_last_xid_error gauge
gpu_last_xid_error{gpu_id="0",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000000"} 0
gpu_last_xid_error{gpu_id="1",gpu_name="NVIDIA H100 80GB HBM3",uuid="GPU-00000001"} 79
`
	for range 2 { // counts persist across scrapes
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "gpu_xid_errors_total", "gpu_last_xid_error"); err != nil {
			t.Error(err)
		}
	}

	// A driver that refuses event registration: no XID series, the rest stays.
	s = fakeGPUs(1)
	s.Devices[0].(*server.Device).RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.ERROR_NO_PERMISSION }
	c, err = NewCollector(s, ourPID, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "gpu_xid_errors_total"); n != 0 {
		t.Errorf("%d XID series without event registration", n)
	}
	if n := testutil.CollectAndCount(c, "gpu_temperature_celsius"); n != 1 {
		t.Errorf("%d temperature series", n)
	}
}

func TestFailingReadings(t *testing.T) {
	s := fakeGPUs(1)
	dev := s.Devices[0].(*server.Device)
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
	dev.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_FUNCTION_NOT_FOUND }
	var logs bytes.Buffer
	c, err := NewCollector(s, ourPID, time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n := testutil.CollectAndCount(c, "gpu_power_watts", "gpu_temperature_celsius"); n != 0 {
			t.Errorf("%d series for failing readings", n)
		}
	}
	// An older driver without the v2 memory call falls back to v1.
	if n := testutil.CollectAndCount(c, "gpu_memory_total_bytes"); n != 1 {
		t.Errorf("memory without GetMemoryInfo_v2: %d series", n)
	}
	if got := strings.Count(logs.String(), "GPU reading failed"); got != 1 || !strings.Contains(logs.String(), "reading=temperature") {
		t.Errorf("want one log line for the lost GPU's temperature, none for unsupported power:\n%s", logs.String())
	}
}

func TestCollectIsBoundedInTime(t *testing.T) {
	s := fakeGPUs(1)
	release := make(chan struct{})
	s.Devices[0].(*server.Device).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		<-release
		return nvml.Utilization{Gpu: 1}, nvml.SUCCESS
	}
	c, err := NewCollector(s, ourPID, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// As the server registers it: reporting on itself.
	reporting := metrics.SelfReporting("gpu", c, nil)
	success := func() float64 {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(reporting)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "modelwatch_collector_success" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no modelwatch_collector_success")
		return -1
	}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("a hung NVML call gave %d series", n)
	}
	// While the hung reading is outstanding, scrapes skip NVML at once, and
	// say so: the GPU is not gone, its collector failed.
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d series while NVML hangs", n)
	}
	if got := success(); got != 0 {
		t.Errorf("modelwatch_collector_success{collector=\"gpu\"} = %v while NVML hangs, want 0", got)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for c.busy() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := testutil.CollectAndCount(c, "gpu_utilization_percent"); n != 1 {
		t.Errorf("after NVML recovered: %d series", n)
	}
	if got := success(); got != 1 {
		t.Errorf("modelwatch_collector_success{collector=\"gpu\"} = %v after NVML recovered, want 1", got)
	}
}

// busy reports whether a reading is in progress.
func (c *Collector) busy() bool {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	return c.inflight != nil
}

// TestConcurrentScrapesShareAReading: scrapes that arrive while NVML is being
// read wait for that reading instead of skipping or reading again, and a
// scrape right after another gets every series.
func TestConcurrentScrapesShareAReading(t *testing.T) {
	s := fakeGPUs(2)
	release := make(chan struct{})
	var calls atomic.Int32
	s.Devices[0].(*server.Device).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		if calls.Add(1) == 1 {
			<-release
		}
		return nvml.Utilization{Gpu: 7}, nvml.SUCCESS
	}
	c, err := NewCollector(s, ourPID, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := testutil.CollectAndCount(fakeCollector(t, 2))
	counts := make(chan int, 4)
	for range 4 {
		go func() { counts <- testutil.CollectAndCount(c) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// NVML is held inside the first reading: whoever comes now joins it.
	first, hung := c.join()
	if hung {
		t.Fatal("the reading is taken as hung")
	}
	if again, _ := c.join(); again != first {
		t.Error("a second scrape started its own reading while one was running")
	}
	close(release)
	<-first.done
	for range 4 {
		if got := <-counts; got != want {
			t.Errorf("a concurrent scrape got %d series, want %d", got, want)
		}
	}
	for i := range 200 {
		if got := testutil.CollectAndCount(c); got != want {
			t.Fatalf("scrape %d right after another got %d series, want %d", i, got, want)
		}
	}
}

func fakeCollector(t *testing.T, n int) *Collector {
	t.Helper()
	c, err := NewCollector(fakeGPUs(n), ourPID, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOpenCallsNothingAfterAFailedInit uses a mock whose only function is
// Init: any other NVML call panics, as the real library can kill the process.
func TestOpenCallsNothingAfterAFailedInit(t *testing.T) {
	for _, ret := range []nvml.Return{nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED} {
		lib := &mock.Interface{InitFunc: func() nvml.Return { return ret }}
		c, release, reason, err := open(lib, ModeAuto, time.Second, slog.New(slog.DiscardHandler))
		if err != nil || c != nil || release == nil || reason == "" {
			t.Errorf("auto with %v: collector %v, err %v, reason %q", ret, c, err, reason)
		}
		release()
		_, _, _, err = open(lib, ModeOn, time.Second, slog.New(slog.DiscardHandler))
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("on with %v: %v, want ErrUnavailable", ret, err)
		}
		if len(lib.InitCalls()) != 2 {
			t.Errorf("Init called %d times", len(lib.InitCalls()))
		}
	}
	// Off never touches NVML: a nil InitFunc would panic.
	c, _, reason, err := open(&mock.Interface{}, ModeOff, time.Second, nil)
	if c != nil || err != nil || !strings.Contains(reason, "off") {
		t.Errorf("off: %v %v %q", c, err, reason)
	}
}

func TestOpenAndRelease(t *testing.T) {
	s := fakeGPUs(2)
	shutdowns := 0
	s.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }
	c, release, reason, err := open(s, ModeOn, time.Second, slog.New(slog.DiscardHandler))
	if err != nil || c == nil || reason != "2 GPUs, driver 550.54.15" {
		t.Fatalf("open: %v %v %q", c, err, reason)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("gather: %v", err)
	}
	release()
	if shutdowns != 1 {
		t.Errorf("Shutdown called %d times", shutdowns)
	}
}

// TestOpenWithoutNVML runs against this machine's real NVML: where there is
// no driver, auto goes on without GPU metrics and on refuses to start.
func TestOpenWithoutNVML(t *testing.T) {
	c, release, reason, err := Open(ModeAuto, time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if c != nil {
		t.Skipf("this machine has NVML (%s); the no-driver path is covered by the mock tests", reason)
	}
	if !strings.Contains(reason, "NVML") {
		t.Errorf("reason %q", reason)
	}
	if _, _, _, err := Open(ModeOn, time.Second, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("on without NVML: %v", err)
	}
}

func BenchmarkCollect(b *testing.B) {
	c, err := NewCollector(fakeGPUs(8), ourPID, time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8/1e3, "µs/gpu")
}

// BenchmarkCollectNVML measures a scrape of the real GPUs of this machine;
// it is skipped where there is no NVML.
func BenchmarkCollectNVML(b *testing.B) {
	c, release, reason, err := Open(ModeAuto, 5*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	if c == nil {
		b.Skip(reason)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	gpus := c.(*Collector).Devices()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(gpus)/1e6, "ms/gpu")
}

// BenchmarkNVMLCalls times each NVML reading of GPU 0 on this machine, to
// show where a scrape's time goes; it is skipped where there is no NVML.
func BenchmarkNVMLCalls(b *testing.B) {
	lib := nvml.New()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		b.Skip(nvml.ErrorString(ret))
	}
	defer lib.Shutdown()
	h, ret := lib.DeviceGetHandleByIndex(0)
	if ret != nvml.SUCCESS {
		b.Skip(nvml.ErrorString(ret))
	}
	for _, call := range []struct {
		name string
		f    func() nvml.Return
	}{
		{"utilization", func() nvml.Return { _, r := h.GetUtilizationRates(); return r }},
		{"memory_v2", func() nvml.Return { _, r := h.GetMemoryInfo_v2(); return r }},
		{"temperature", func() nvml.Return { _, r := h.GetTemperature(nvml.TEMPERATURE_GPU); return r }},
		{"power", func() nvml.Return { _, r := h.GetPowerUsage(); return r }},
		{"power_limit", func() nvml.Return { _, r := h.GetEnforcedPowerLimit(); return r }},
		{"energy", func() nvml.Return { _, r := h.GetTotalEnergyConsumption(); return r }},
		{"sm_clock", func() nvml.Return { _, r := h.GetClockInfo(nvml.CLOCK_SM); return r }},
		{"clock_event_reasons", func() nvml.Return { _, r := h.GetCurrentClocksEventReasons(); return r }},
		{"compute_processes", func() nvml.Return { _, r := h.GetComputeRunningProcesses(); return r }},
		{"graphics_processes", func() nvml.Return { _, r := h.GetGraphicsRunningProcesses(); return r }},
	} {
		b.Run(call.name, func(b *testing.B) {
			for b.Loop() {
				if r := call.f(); r != nvml.SUCCESS && r != nvml.ERROR_NOT_SUPPORTED {
					b.Fatal(nvml.ErrorString(r))
				}
			}
		})
	}
}
