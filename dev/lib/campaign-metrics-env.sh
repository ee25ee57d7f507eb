# Shared by ./dev/failover and ./dev/scale-out (sourced, not run): the local broker, a registry of the script's
# own, the project's topology with extra campaign-metrics processor entries, generated events, and helpers to start
# instances and wait for them. The caller sets `work` (its scratch folder) and `name` (its registry topic suffix)
# and calls `setup_campaign_metrics_env APP...` with the processor names it measures.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adstream/target}"
export ADSTREAM_CACHE="${ADSTREAM_CACHE:-$HOME/.cache/adstream}"
export ADSTREAM_BOOTSTRAP_SERVERS="${ADSTREAM_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY_PORT="${ADSTREAM_REGISTRY_PORT:-8091}"
export ADSTREAM_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT"
METRICS_PORT="${ADSTREAM_METRICS_PORT:-9474}"
EVENTS="${EVENTS:-20000}"
CAMPAIGNS="${CAMPAIGNS:-24}"
DAYS="${DAYS:-7}"
PROFILE="${PROFILE:-debug}"
bin="$CARGO_TARGET_DIR/$PROFILE/adstream"
step() { printf '\n==> %s\n' "$*"; }

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Builds adstream, starts the broker and a registry, writes the topology with one campaign-metrics entry per
# argument, applies it and produces EVENTS generated events (CAMPAIGNS campaigns over DAYS days).
setup_campaign_metrics_env() {
  mkdir -p "$work"
  rm -f "$work"/*.log
  ./dev/kafka up
  step "build adstream ($PROFILE)"
  if [ "$PROFILE" = release ]; then
    cargo build --locked --release --bin adstream
  else
    cargo build --locked --bin adstream
  fi

  step "schema registry on $ADSTREAM_REGISTRY_URL"
  "$bin" registry serve --listen "127.0.0.1:$REGISTRY_PORT" --topic "_schemas-$name" >"$work/registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "$ADSTREAM_REGISTRY_URL/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "$ADSTREAM_REGISTRY_URL/" >/dev/null || { tail -20 "$work/registry.log"; exit 1; }

  step "topology, schemas and $EVENTS events ($CAMPAIGNS campaigns, $DAYS days)"
  # One processor entry per measurement, so that each has a consumer group, changelogs and transactional ids of
  # its own.
  export ADSTREAM_TOPOLOGY="$work/topology.yaml"
  {
    cat topology/adstream.yaml
    for app in "$@"; do
      printf '\n  - name: %s\n    job: campaign-metrics\n    inputs: [ads.impressions, ads.clicks, ads.campaigns, attribution.credits]\n    outputs: [metrics.campaign.hourly, metrics.campaign.daily, alerts.campaign]\n    key: campaign_id\n' "$app"
    done
  } >"$ADSTREAM_TOPOLOGY"
  "$bin" topology apply >/dev/null
  "$bin" schemas register >/dev/null
  "$bin" produce generate --events "$EVENTS" --campaigns "$CAMPAIGNS" --days "$DAYS" \
    --manifest "$work/manifest.json" >/dev/null
}

# Starts campaign-metrics as application $1, instance $2, metrics on port $3, with extra flags $4..; prints its pid.
start_instance() {
  local app="$1" instance="$2" port="$3"
  shift 3
  ADSTREAM_LOG=info "$bin" process campaign-metrics --application-id "$app" --instance-id "$instance" \
    --metrics-listen "127.0.0.1:$port" "$@" >>"$work/$app-$instance.log" 2>&1 &
  echo $!
}

# Waits for process $1 to be gone (it is not this shell's child).
wait_gone() {
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

# p50 and max of the numbers in column $1 (default 1) on stdin.
summarize() {
  awk -v c="${1:-1}" 'NF { print $c }' | sort -n | awk 'NF { v[++n] = $1 } END { if (n == 0) { print "no rounds"; exit } printf "p50 %.2f s, max %.2f s over %d kills\n", v[int((n + 1) / 2)], v[n], n }'
}
