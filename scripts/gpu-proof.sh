#!/usr/bin/env bash
# Compares modelwatch's GPU metrics with nvidia-smi on a machine with an NVIDIA
# GPU, while PyTorch keeps the GPU busy. nvidia-smi reports memory in whole
# MiB, rounded; modelwatch in bytes, shown here in MiB. Usage:
#   scripts/gpu-proof.sh BINARY [SAMPLES]
# BINARY is a modelwatch built with cgo. Needs nvidia-smi, curl and python3
# with torch. Prints one line per sample and per reading: nvidia-smi's value,
# modelwatch's, and their difference.
set -euo pipefail
bin=${1:?usage: gpu-proof.sh BINARY [SAMPLES]}
samples=${2:-5}
port=18000
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" serve --listen-address 127.0.0.1:$port --gpu-metrics on --log-format json >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf localhost:$port/health >/dev/null && break; sleep 0.1; done
grep '"GPU metrics on"' "$work/serve.log"

# A real load: 16 GiB held, and bf16 matrix products in a loop.
python3 - "$((samples * 2 + 10))" >"$work/load.log" 2>&1 <<'PY' &
import sys, time, torch
hold = torch.empty(16 << 30, dtype=torch.uint8, device="cuda")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + float(sys.argv[1])
print("load started", flush=True)
while time.time() < end:
    for _ in range(20):
        b = a @ a
    torch.cuda.synchronize()
PY
for _ in $(seq 100); do grep -q "load started" "$work/load.log" && break; sleep 0.2; done
sleep 3

metric() { # name -> value of the first series of that name (label values may hold spaces)
  awk -v n="$1" 'index($0, n"{") == 1 || index($0, n" ") == 1 {print $NF; exit}' "$work/metrics"
}
printf '%-8s %-28s %16s %16s %12s\n' sample reading nvidia-smi modelwatch difference
for i in $(seq "$samples"); do
  curl -sf localhost:$port/metrics >"$work/metrics"
  IFS=', ' read -r mem_used mem_total util temp power sm <<<"$(nvidia-smi --id=0 \
    --query-gpu=memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw,clocks.sm \
    --format=csv,noheader,nounits)"
  row() { printf '%-8s %-28s %16s %16s %12s\n' "$i" "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN{printf "%.2f", b-a}')"; }
  row "memory.used MiB" "$mem_used" "$(awk -v v="$(metric gpu_memory_used_bytes)" 'BEGIN{printf "%.2f", v/1048576}')"
  row "memory.total MiB" "$mem_total" "$(awk -v v="$(metric gpu_memory_total_bytes)" 'BEGIN{printf "%.2f", v/1048576}')"
  row "utilization.gpu %" "$util" "$(metric gpu_utilization_percent)"
  row "temperature.gpu C" "$temp" "$(metric gpu_temperature_celsius)"
  row "power.draw W" "$power" "$(metric gpu_power_watts)"
  row "clocks.sm MHz" "$sm" "$(awk -v v="$(metric gpu_sm_clock_hertz)" 'BEGIN{printf "%d", v/1e6}')"
  sleep 1
done
echo "--- modelwatch GPU series at the last sample"
grep -E '^(gpu_|process_gpu_)' "$work/metrics"
echo "--- nvidia-smi processes"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader || true
echo "--- modelwatch pid: $(pgrep -f "$bin serve" | head -1)"
