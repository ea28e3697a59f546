//go:build cgo

// Package gputest provides fake GPUs for tests: go-nvml's mock of a DGX H100
// with every reading the collector takes filled in.
package gputest

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// NewServer returns the go-nvml mock of a DGX H100 with n GPUs, whose
// readings depend on each GPU's index i: utilization 10+i %, memory
// utilization 5+i %, 20+i GiB of 81559 MiB used, 40+i °C, 300.5+i W of a
// 700 W limit, 123456.789+i/1000 J, SM clock 1980 MHz, memory clock 2619
// MHz, clocks held down by sw_power_cap and hw_thermal_slowdown. Every GPU
// runs a process pid using (i+1) MiB and process 1 using 1 GiB. UUIDs are
// GPU-0000000<i>. XID events are registered and none is pending.
func NewServer(n int, pid uint32) *server.Server {
	cfgs := make([]gpus.Config, n)
	for i := range cfgs {
		cfgs[i] = gpus.H100_SXM5_80GB
	}
	s := dgxh100.NewWithGPUs(cfgs...)
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.UUID = "GPU-0000000" + string(rune('0'+i))
		u := uint64(i)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 + u), Memory: uint32(5 + u)}, nvml.SUCCESS
		}
		dev.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
			total := uint64(81559) << 20
			used := (20 + u) << 30
			return nvml.Memory_v2{Total: total, Used: used, Reserved: 512 << 20, Free: total - used - 512<<20}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(40 + u), nvml.SUCCESS }
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return uint32(300000 + 1000*u + 500), nvml.SUCCESS }
		dev.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 700000, nvml.SUCCESS }
		dev.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 123456789 + u, nvml.SUCCESS }
		dev.GetClockInfoFunc = func(t nvml.ClockType) (uint32, nvml.Return) {
			if t == nvml.CLOCK_SM {
				return 1980, nvml.SUCCESS
			}
			return 2619, nvml.SUCCESS
		}
		dev.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
			return nvml.ClocksEventReasonSwPowerCap | nvml.ClocksThrottleReasonHwThermalSlowdown, nvml.SUCCESS
		}
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			return []nvml.ProcessInfo{{Pid: pid, UsedGpuMemory: (u + 1) << 20}, {Pid: 1, UsedGpuMemory: 1 << 30}}, nvml.SUCCESS
		}
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (nvml.EventData, nvml.Return) { return nvml.EventData{}, nvml.ERROR_TIMEOUT },
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	return s
}
