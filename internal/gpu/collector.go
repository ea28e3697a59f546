//go:build cgo

package gpu

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector reads every GPU through NVML when it is collected. NVML must be
// initialised before NewCollector and stay so while the collector is in use.
type Collector struct {
	lib     nvml.Interface
	log     *slog.Logger
	pid     uint32
	timeout time.Duration
	devices []device
	driver  string
	cuda    string

	// events receives XID errors; nil when NVML refused to register them.
	events nvml.EventSet
	// xids counts XID errors per device index, last the last XID code.
	xidMu sync.Mutex
	xids  []uint64
	last  []uint64

	// inflight is the reading in progress, shared by concurrent scrapes;
	// nil when none runs.
	inflightMu sync.Mutex
	inflight   *reading
	warned     sync.Map // string -> struct{}: readings already logged as failing
}

// reading is one pass over every GPU; done closes when metrics is set.
type reading struct {
	started time.Time
	done    chan struct{}
	metrics []prometheus.Metric
}

type device struct {
	handle nvml.Device
	labels []string // gpu_id, gpu_name, uuid
}

var _ prometheus.Collector = (*Collector)(nil)

var deviceLabels = []string{"gpu_id", "gpu_name", "uuid"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, deviceLabels...), extra...), nil)
}

var (
	descUtil        = desc("gpu_utilization_percent", "Percent of time over the last sample period during which a kernel ran on the GPU.")
	descMemUtil     = desc("gpu_memory_utilization_percent", "Percent of time over the last sample period during which device memory was read or written.")
	descMemUsed     = desc("gpu_memory_used_bytes", "Device memory in use, as nvidia-smi reports it (reserved memory excluded where the driver says).")
	descMemTotal    = desc("gpu_memory_total_bytes", "Total device memory.")
	descTemp        = desc("gpu_temperature_celsius", "GPU core temperature.")
	descPower       = desc("gpu_power_watts", "Power drawn by the GPU board.")
	descPowerLimit  = desc("gpu_power_limit_watts", "Power limit the driver enforces.")
	descEnergy      = desc("gpu_energy_joules_total", "Energy consumed by the GPU since the driver was loaded.")
	descSMClock     = desc("gpu_sm_clock_hertz", "Current clock of the streaming multiprocessors.")
	descMemClock    = desc("gpu_memory_clock_hertz", "Current memory clock.")
	descThrottle    = desc("gpu_clock_throttle_active", "1 while the named reason holds the clocks down, else 0.", "reason")
	descXID         = desc("gpu_xid_errors_total", "XID critical errors reported by the driver since modelwatch started.")
	descLastXID     = desc("gpu_last_xid_error", "Code of the last XID critical error since modelwatch started; 0 for none.")
	descProcMem     = prometheus.NewDesc("process_gpu_memory_used_bytes", "Device memory used by this modelwatch process.", []string{"gpu_id"}, nil)
	descDriver      = prometheus.NewDesc("gpu_driver_info", "NVIDIA driver and CUDA driver versions; always 1.", []string{"driver_version", "cuda_driver_version"}, nil)
	allDescs        = []*prometheus.Desc{descUtil, descMemUtil, descMemUsed, descMemTotal, descTemp, descPower, descPowerLimit, descEnergy, descSMClock, descMemClock, descThrottle, descXID, descLastXID, descProcMem, descDriver}
	throttleReasons = []struct {
		bit  uint64
		name string
	}{
		{nvml.ClocksEventReasonGpuIdle, "gpu_idle"},
		{nvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"},
		{nvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
		{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
		{nvml.ClocksEventReasonSyncBoost, "sync_boost"},
		{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
		{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
		{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
		{nvml.ClocksEventReasonDisplayClockSetting, "display_clock_setting"},
	}
)

// Error is a failed NVML call.
type Error struct {
	Op  string
	Ret nvml.Return
}

func (e *Error) Error() string { return e.Op + ": " + nvml.ErrorString(e.Ret) }

// check turns an nvml.Return into an error.
func check(op string, ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return &Error{Op: op, Ret: ret}
}

// NewCollector enumerates the GPUs of an initialised NVML. pid is the
// process whose GPU memory process_gpu_memory_used_bytes reports; timeout
// bounds one collection.
func NewCollector(lib nvml.Interface, pid int, timeout time.Duration, log *slog.Logger) (*Collector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Collector{lib: lib, log: log, pid: uint32(pid), timeout: timeout}
	n, ret := lib.DeviceGetCount()
	if err := check("count devices", ret); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		h, ret := lib.DeviceGetHandleByIndex(i)
		if err := check("device handle "+strconv.Itoa(i), ret); err != nil {
			return nil, err
		}
		name, ret := h.GetName()
		if err := check("device name", ret); err != nil {
			return nil, err
		}
		uuid, ret := h.GetUUID()
		if err := check("device uuid", ret); err != nil {
			return nil, err
		}
		c.devices = append(c.devices, device{handle: h, labels: []string{strconv.Itoa(i), name, uuid}})
	}
	c.xids, c.last = make([]uint64, n), make([]uint64, n)
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		c.driver = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		c.cuda = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	c.registerXID()
	return c, nil
}

// registerXID asks NVML for XID critical error events. Some drivers and
// containers refuse; XID metrics are then left out.
func (c *Collector) registerXID() {
	set, ret := c.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		c.log.Info("XID errors will not be reported", "reason", nvml.ErrorString(ret))
		return
	}
	for _, d := range c.devices {
		if ret := d.handle.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
			c.log.Info("XID errors will not be reported", "gpu", d.labels[0], "reason", nvml.ErrorString(ret))
			set.Free()
			return
		}
	}
	c.events = set
}

// Devices returns the number of GPUs the collector reads.
func (c *Collector) Devices() int { return len(c.devices) }

// Close frees what the collector registered with NVML.
func (c *Collector) Close() {
	if c.events != nil {
		c.events.Free()
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads every GPU, giving up
// after the collector's timeout: a GPU that has fallen off the bus can make
// NVML calls hang, and a scrape must not. Scrapes that arrive while a reading
// runs share it (two Prometheus servers scraping at once read NVML once);
// while a reading older than the timeout is still running, further scrapes
// export no GPU metrics and return at once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if err := c.CollectErr(ch); err != nil {
		c.log.Warn("GPU metrics skipped", "err", err)
	}
}

// CollectErr is Collect that says why it exported no GPU metrics: NVML did
// not answer within the timeout, or an earlier reading still has not
// returned. metrics.SelfReporting turns it into
// modelwatch_collector_success{collector="gpu"} 0.
func (c *Collector) CollectErr(ch chan<- prometheus.Metric) error {
	r, hung := c.join()
	if hung {
		return fmt.Errorf("an NVML reading started %s ago has not returned", time.Since(r.started).Round(time.Millisecond))
	}
	wait := time.NewTimer(c.timeout - time.Since(r.started))
	defer wait.Stop()
	select {
	case <-r.done:
		for _, m := range r.metrics {
			ch <- m
		}
		return nil
	case <-wait.C:
		return fmt.Errorf("NVML did not answer within %s", c.timeout)
	}
}

// join returns the reading in progress, starting one if none runs; hung
// reports that the reading in progress has outlived the timeout.
func (c *Collector) join() (r *reading, hung bool) {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	if r := c.inflight; r != nil {
		return r, time.Since(r.started) >= c.timeout
	}
	r = &reading{started: time.Now(), done: make(chan struct{})}
	c.inflight = r
	go func() {
		ms := c.read()
		c.inflightMu.Lock()
		c.inflight = nil
		c.inflightMu.Unlock()
		r.metrics = ms
		close(r.done)
	}()
	return r, false
}

// read takes every reading of every GPU. GPUs are read in parallel: one
// reading (the energy counter) takes milliseconds on some drivers, and a
// scrape of eight GPUs should not take eight times as long.
func (c *Collector) read() []prometheus.Metric {
	var out []prometheus.Metric
	if c.driver != "" || c.cuda != "" {
		out = append(out, prometheus.MustNewConstMetric(descDriver, prometheus.GaugeValue, 1, c.driver, c.cuda))
	}
	c.drainXID()
	perGPU := make([][]prometheus.Metric, len(c.devices))
	var wg sync.WaitGroup
	for i := range c.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			perGPU[i] = c.readDevice(i)
		}()
	}
	wg.Wait()
	for _, ms := range perGPU {
		out = append(out, ms...)
	}
	return out
}

func (c *Collector) readDevice(i int) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels []string, extra ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(labels[:len(labels):len(labels)], extra...)...))
	}
	h, l := c.devices[i].handle, c.devices[i].labels
	if u, ret := h.GetUtilizationRates(); c.ok(i, "utilization", ret) {
		gauge(descUtil, float64(u.Gpu), l)
		gauge(descMemUtil, float64(u.Memory), l)
	}
	if m, ret := h.GetMemoryInfo_v2(); ret == nvml.SUCCESS {
		gauge(descMemUsed, float64(m.Used), l)
		gauge(descMemTotal, float64(m.Total), l)
	} else if m, ret := h.GetMemoryInfo(); c.ok(i, "memory", ret) {
		gauge(descMemUsed, float64(m.Used), l)
		gauge(descMemTotal, float64(m.Total), l)
	}
	if t, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); c.ok(i, "temperature", ret) {
		gauge(descTemp, float64(t), l)
	}
	if p, ret := h.GetPowerUsage(); c.ok(i, "power", ret) {
		gauge(descPower, float64(p)/1000, l)
	}
	if p, ret := h.GetEnforcedPowerLimit(); c.ok(i, "power limit", ret) {
		gauge(descPowerLimit, float64(p)/1000, l)
	}
	if e, ret := h.GetTotalEnergyConsumption(); c.ok(i, "energy", ret) {
		out = append(out, prometheus.MustNewConstMetric(descEnergy, prometheus.CounterValue, float64(e)/1000, l...))
	}
	if f, ret := h.GetClockInfo(nvml.CLOCK_SM); c.ok(i, "sm clock", ret) {
		gauge(descSMClock, float64(f)*1e6, l)
	}
	if f, ret := h.GetClockInfo(nvml.CLOCK_MEM); c.ok(i, "memory clock", ret) {
		gauge(descMemClock, float64(f)*1e6, l)
	}
	if r, ret := h.GetCurrentClocksEventReasons(); c.ok(i, "clock event reasons", ret) {
		for _, tr := range throttleReasons {
			v := 0.0
			if r&tr.bit != 0 {
				v = 1
			}
			gauge(descThrottle, v, l, tr.name)
		}
	}
	if c.events != nil {
		c.xidMu.Lock()
		n, last := c.xids[i], c.last[i]
		c.xidMu.Unlock()
		out = append(out, prometheus.MustNewConstMetric(descXID, prometheus.CounterValue, float64(n), l...))
		gauge(descLastXID, float64(last), l)
	}
	gauge(descProcMem, float64(c.processMemory(i, h)), l[:1])
	return out
}

// processMemory sums the device memory this process uses on a GPU.
func (c *Collector) processMemory(i int, h nvml.Device) uint64 {
	var used uint64
	for _, get := range []struct {
		what string
		f    func() ([]nvml.ProcessInfo, nvml.Return)
	}{{"compute processes", h.GetComputeRunningProcesses}, {"graphics processes", h.GetGraphicsRunningProcesses}} {
		ps, ret := get.f()
		if !c.ok(i, get.what, ret) {
			continue
		}
		for _, p := range ps {
			if p.Pid == c.pid {
				used += p.UsedGpuMemory
			}
		}
	}
	return used
}

// drainXID counts the XID events NVML has queued, without waiting.
func (c *Collector) drainXID() {
	if c.events == nil {
		return
	}
	for range 1000 {
		e, ret := c.events.Wait(0)
		if ret != nvml.SUCCESS {
			if ret != nvml.ERROR_TIMEOUT {
				c.ok(-1, "xid events", ret)
			}
			return
		}
		if e.EventType != nvml.EventTypeXidCriticalError {
			continue
		}
		for i, d := range c.devices {
			if e.Device != nil && sameDevice(e.Device, d.handle) {
				c.xidMu.Lock()
				c.xids[i]++
				c.last[i] = e.EventData
				c.xidMu.Unlock()
			}
		}
	}
}

func sameDevice(a, b nvml.Device) bool {
	ua, r1 := a.GetUUID()
	ub, r2 := b.GetUUID()
	return r1 == nvml.SUCCESS && r2 == nvml.SUCCESS && ua == ub
}

// ok reports whether ret is SUCCESS. A reading that the GPU does not support
// is left out quietly; other failures are logged once per GPU and reading.
func (c *Collector) ok(gpu int, what string, ret nvml.Return) bool {
	if ret == nvml.SUCCESS {
		return true
	}
	if ret != nvml.ERROR_NOT_SUPPORTED {
		key := strconv.Itoa(gpu) + "/" + what
		if _, seen := c.warned.LoadOrStore(key, struct{}{}); !seen {
			c.log.Warn("GPU reading failed; it is left out of /metrics", "gpu", gpu, "reading", what, "err", nvml.ErrorString(ret))
		}
	}
	return false
}
