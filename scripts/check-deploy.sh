#!/usr/bin/env bash
# shellcheck disable=SC2016 # the jq filters are single-quoted on purpose
# Checks deploy/ against the public contract (ARCHITECTURE.md §3) and itself:
# the ECS task definitions, services, target groups and worker autoscaling
# (JSON, with jq), and the Prometheus rules, their unit tests and the scrape
# configs (promtool). Installs jq and promtool (Debian's prometheus package)
# with apt-get when missing, as root. Reports every failed check, then exits
# 1 if there was one. Run by .ci/run; takes a few seconds once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[deploy] %s\n' "$*" >&2; }

failures=0
fail() { log "FAIL: $*"; failures=$((failures + 1)); }

# --- tools ------------------------------------------------------------------

ensure_tools() {
  local need=()
  command -v jq >/dev/null || need+=(jq)
  command -v promtool >/dev/null || need+=(prometheus)
  [ "${#need[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${need[*]} (promtool comes with Debian's prometheus package); install and re-run"
    exit 1
  fi
  log "installing ${need[*]}"
  # The prometheus package's postinst starts a server on :9090 through
  # invoke-rc.d. A policy-rc.d answering 101 forbids that during the install;
  # one already there (as on Docker-style machines) is left as it is.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT # also if apt-get is interrupted
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    rc=$?
  if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; trap - EXIT; fi
  if [ "$rc" -ne 0 ]; then log "apt-get install ${need[*]} failed ($rc)"; exit 1; fi
  if [[ " ${need[*]} " == *" prometheus "* ]]; then
    # Only promtool is wanted: make sure the server is neither running nor
    # started at boot (both are no-ops when policy-rc.d held).
    if [ -x /etc/init.d/prometheus ]; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
  if ! command -v jq >/dev/null || ! command -v promtool >/dev/null; then
    log "jq or promtool still missing after the install"
    exit 1
  fi
}

ensure_tools

# --- helpers ----------------------------------------------------------------

ECS=deploy/ecs
PROM=deploy/prometheus

# check FILE DESCRIPTION JQ-FILTER [jq args...]: the filter must yield true.
check() {
  local file=$1 what=$2 filter=$3
  shift 3
  if ! jq -e "$@" "$filter" "$file" >/dev/null 2>&1; then
    fail "$file: $what"
  fi
}

# env FILE NAME: the `environment` value NAME of the first container.
env_of() {
  jq -r --arg n "$2" '.containerDefinitions[0].environment[]? | select(.name == $n) | .value' "$1"
}

# --- JSON parses --------------------------------------------------------------

json_ok=1
for f in "$ECS"/*.json; do
  if ! jq empty "$f" 2>/dev/null; then
    fail "$f is not valid JSON: $(jq empty "$f" 2>&1 | head -n1)"
    json_ok=0
  fi
done
if [ "$json_ok" -eq 0 ]; then
  log "stopping: the checks below need the JSON to parse"
  exit 1
fi

# --- task definitions ---------------------------------------------------------

# role file, the command it runs, the ARRAKIS_HTTP_LISTEN port (§3.1).
declare -A HTTP_PORT=([ingest]=9100 [proxy]=9101 [worker]=9102)
declare -A COMMAND=([ingest]=ingest [proxy]=proxy [worker]=work [migrate]=migrate)
# Fargate's valid cpu -> memory (MiB) sizes, for the sizes used here.
declare -A FARGATE_MEM=(
  [256]="512 1024 2048"
  [512]="1024 2048 3072 4096"
  [1024]="2048 3072 4096 5120 6144 7168 8192"
)

image=""
for role in ingest proxy worker migrate; do
  f="$ECS/$role.json"
  [ -f "$f" ] || { fail "$f is missing"; continue; }
  check "$f" "family, awsvpc, FARGATE, cpu, memory, roles, one container" '
    (.family | type == "string") and .networkMode == "awsvpc"
    and (.requiresCompatibilities | index("FARGATE"))
    and (.cpu | test("^[0-9]+$")) and (.memory | test("^[0-9]+$"))
    and (.executionRoleArn | type == "string") and (.taskRoleArn | type == "string")
    and (.containerDefinitions | length == 1)'
  check "$f" "container name, image, essential, command [\"${COMMAND[$role]}\"]" '
    .containerDefinitions[0] as $c
    | ($c.name | type == "string") and ($c.image | type == "string")
      and $c.essential == true and $c.command == [$cmd]' --arg cmd "${COMMAND[$role]}"
  check "$f" "logConfiguration: awslogs with group, region and stream prefix" '
    .containerDefinitions[0].logConfiguration as $l
    | $l.logDriver == "awslogs"
      and ($l.options | has("awslogs-group") and has("awslogs-region") and has("awslogs-stream-prefix"))'
  check "$f" "stopTimeout between 2 and 120 s (Fargate's limit)" '
    .containerDefinitions[0].stopTimeout as $t | ($t | type == "number") and $t >= 2 and $t <= 120'
  check "$f" "no container healthCheck (the image has no shell or curl; see docs/OPERATIONS.md)" '
    .containerDefinitions[0] | has("healthCheck") | not'
  check "$f" "no secret or credential-bearing URL in plain environment values" '
    [.containerDefinitions[0].environment[]?
     | select((.name | test("TOKEN|SECRET|PASSWORD|^AMQP_URL$|^REDIS_URL$|^DATABASE_URL$|^ARRAKIS_CHAIN_RPC_URLS$"))
              or (.value | test("://[^/@]*:[^/@]*@")))] | length == 0'
  check "$f" "every secret comes from Secrets Manager (valueFrom is an ARN)" '
    [.containerDefinitions[0].secrets[]? | .valueFrom | test("^arn:aws:secretsmanager:")] | all'
  cpu=$(jq -r .cpu "$f")
  mem=$(jq -r .memory "$f")
  if [[ " ${FARGATE_MEM[$cpu]:-} " != *" $mem "* ]]; then
    fail "$f: cpu $cpu with memory $mem MiB is not a Fargate size"
  fi
  this_image=$(jq -r '.containerDefinitions[0].image' "$f")
  if [ -z "$image" ]; then image=$this_image; elif [ "$this_image" != "$image" ]; then
    fail "$f: image $this_image differs from $image (one image for every role)"
  fi
  if [ -n "${HTTP_PORT[$role]:-}" ]; then
    port=${HTTP_PORT[$role]}
    [ "$(env_of "$f" ARRAKIS_HTTP_LISTEN)" = "0.0.0.0:$port" ] ||
      fail "$f: ARRAKIS_HTTP_LISTEN must be 0.0.0.0:$port (the contract's port, reachable from the VPC)"
    check "$f" "portMappings has $port/tcp (containerPort = hostPort)" '
      [.containerDefinitions[0].portMappings[]? | select(.containerPort == $p and .hostPort == $p)] | length == 1' \
      --argjson p "$port"
  fi
done

# Which secret goes where. DISCORD_TOKEN: ingest and proxy only, as a secret.
for role in ingest proxy worker migrate; do
  f="$ECS/$role.json"
  [ -f "$f" ] || continue
  secrets=" $(jq -r '[.containerDefinitions[0].secrets[]?.name] | join(" ")' "$f") "
  environment=" $(jq -r '[.containerDefinitions[0].environment[]?.name] | join(" ")' "$f") "
  case $role in ingest | proxy) want_token=1 ;; *) want_token=0 ;; esac
  if [ "$want_token" -eq 1 ] && [[ "$secrets" != *" DISCORD_TOKEN "* ]]; then
    fail "$f: DISCORD_TOKEN must be in secrets"
  fi
  if [ "$want_token" -eq 0 ] && [[ "$secrets$environment" == *" DISCORD_TOKEN "* ]]; then
    fail "$f: DISCORD_TOKEN must not reach $role (only ingest and proxy hold the token)"
  fi
  [[ "$environment" != *" DISCORD_TOKEN "* ]] || fail "$f: DISCORD_TOKEN as a plain environment value"
  case $role in
    proxy | worker)
      [[ "$secrets" == *" ARRAKIS_PROXY_SECRET "* ]] || fail "$f: ARRAKIS_PROXY_SECRET must be in secrets" ;;
    *)
      [[ "$secrets$environment" != *" ARRAKIS_PROXY_SECRET "* ]] || fail "$f: ARRAKIS_PROXY_SECRET is not for $role" ;;
  esac
  if [ "$role" = worker ]; then
    [[ "$secrets" == *" ARRAKIS_ADMIN_SECRET "* ]] || fail "$f: ARRAKIS_ADMIN_SECRET (the /dlq dashboard) must be in secrets"
  else
    [[ "$secrets$environment" != *" ARRAKIS_ADMIN_SECRET "* ]] || fail "$f: ARRAKIS_ADMIN_SECRET is for the worker only"
  fi
done

# The REST proxy's own listener, and the worker's way to it.
f="$ECS/proxy.json"
[ "$(env_of "$f" ARRAKIS_PROXY_LISTEN)" = "0.0.0.0:8090" ] || fail "$f: ARRAKIS_PROXY_LISTEN must be 0.0.0.0:8090"
check "$f" "portMappings has 8090/tcp" \
  '[.containerDefinitions[0].portMappings[]? | select(.containerPort == 8090 and .hostPort == 8090)] | length == 1'
[[ "$(env_of "$ECS/worker.json" ARRAKIS_REST_URL)" == http*://*:8090/api/v10 ]] ||
  fail "$ECS/worker.json: ARRAKIS_REST_URL must point at the proxy's :8090/api/v10"

# stopTimeout covers each role's shutdown: ingest closes shards (5 s bound),
# drains confirms (ARRAKIS_DRAIN_SECS), saves checkpoints (5 s bound); the
# worker drains consumers (DRAIN + 2 s) and the scheduler (5 s); the proxy
# drains requests (DRAIN).
for role in ingest proxy worker; do
  f="$ECS/$role.json"
  drain=$(env_of "$f" ARRAKIS_DRAIN_SECS)
  drain=${drain:-10}
  case $role in ingest) budget=$((drain + 10)) ;; worker) budget=$((drain + 7)) ;; proxy) budget=$drain ;; esac
  stop=$(jq -r '.containerDefinitions[0].stopTimeout // 30' "$f")
  [ "$stop" -gt "$budget" ] ||
    fail "$f: stopTimeout $stop s must exceed the $budget s the $role shutdown may take (ARRAKIS_DRAIN_SECS=$drain)"
done

# --- services, target groups ----------------------------------------------------

f="$ECS/service-ingest.json"
check "$f" "ingest: fixed desiredCount 1, deployment min 0 % / max 100 % (never two ingestors on the same shards)" '
  .taskDefinition == "arrakis-ingest" and .desiredCount == 1
  and .deploymentConfiguration.minimumHealthyPercent == 0
  and .deploymentConfiguration.maximumPercent == 100'
check "$f" "ingest: no load balancer (nothing connects to it but Prometheus)" '(.loadBalancers // []) | length == 0'
check "$f" "ingest: AZ rebalancing off (it would start a second task first)" '.availabilityZoneRebalancing == "DISABLED"'

# Nothing under deploy/ecs may autoscale the ingest service.
if grep -lE '"ResourceId"[[:space:]]*:[[:space:]]*"service/[^"]*/arrakis-ingest' "$ECS"/*.json >/dev/null 2>&1; then
  fail "an Application Auto Scaling resource targets arrakis-ingest ($(grep -lE 'service/[^"]*/arrakis-ingest' "$ECS"/*.json | paste -sd " " -)): ingest is never autoscaled"
fi

for pair in proxy:8090 worker:9102; do
  role=${pair%%:*} port=${pair##*:}
  f="$ECS/service-$role.json"
  check "$f" "$role: task definition arrakis-$role, rolling with min 100 % / max 200 %" '
    .taskDefinition == $td and .deploymentConfiguration.minimumHealthyPercent == 100
    and .deploymentConfiguration.maximumPercent == 200' --arg td "arrakis-$role"
  check "$f" "$role: load balancer on container arrakis, port $port, target group arrakis-$role" '
    .loadBalancers | length == 1 and .[0].containerName == "arrakis" and .[0].containerPort == $p
    and (.[0].targetGroupArn | test(":targetgroup/" + $tg + "/"))' --argjson p "$port" --arg tg "arrakis-$role"
done

f="$ECS/target-groups.json"
check "$f" "proxy target group: traffic 8090, health GET /healthz on 9101" '
  .targetGroups[] | select(.Name == "arrakis-proxy")
  | .Port == 8090 and .TargetType == "ip" and .HealthCheckPath == "/healthz" and .HealthCheckPort == "9101"'
check "$f" "worker target group: traffic 9102, health GET /healthz on the traffic port" '
  .targetGroups[] | select(.Name == "arrakis-worker")
  | .Port == 9102 and .TargetType == "ip" and .HealthCheckPath == "/healthz" and .HealthCheckPort == "traffic-port"'

# --- worker autoscaling -----------------------------------------------------------

f="$ECS/worker-autoscaling.json"
check "$f" "scalable target: service/arrakis/arrakis-worker, 2 to 20 tasks" '
  .scalableTarget | .ServiceNamespace == "ecs" and .ResourceId == "service/arrakis/arrakis-worker"
  and .ScalableDimension == "ecs:service:DesiredCount" and .MinCapacity == 2 and .MaxCapacity == 20'
check "$f" "both policies act on the same scalable target" '
  .scalableTarget.ResourceId as $r | [.scaleOutPolicy, .scaleInPolicy] | map(.ResourceId == $r) | all'
check "$f" "scale-out adds, scale-in removes" '
  ([.scaleOutPolicy.StepScalingPolicyConfiguration.StepAdjustments[].ScalingAdjustment] | all(. > 0))
  and ([.scaleInPolicy.StepScalingPolicyConfiguration.StepAdjustments[].ScalingAdjustment] | all(. < 0))'
check "$f" "alarms sum arrakis_queue_messages of arrakis.events and arrakis.interactions" '
  .alarms | length == 2 and all(
    [.Metrics[] | select(.MetricStat) | .MetricStat.Metric
     | select(.MetricName == "arrakis_queue_messages") | .Dimensions[] | select(.Name == "queue") | .Value]
    | sort == ["arrakis.events", "arrakis.interactions"])'

# --- Prometheus -------------------------------------------------------------------

# The OOM alert divides by arrakis:task_memory_limit_bytes{job}: it must
# equal each task definition's memory.
for role in ingest proxy worker; do
  job="arrakis-$role"
  want=$(($(jq -r .memory "$ECS/$role.json") * 1048576))
  got=$(awk -v job="$job" '
    /record: arrakis:task_memory_limit_bytes/ { inrec = 1; v = ""; next }
    inrec && /expr:/ { if (match($0, /vector\([0-9]+\)/)) v = substr($0, RSTART + 7, RLENGTH - 8) }
    inrec && /job:/ { if ($2 == job) print v; inrec = 0 }
  ' "$PROM/alerts.yml")
  [ "$got" = "$want" ] ||
    fail "$PROM/alerts.yml: arrakis:task_memory_limit_bytes{job=\"$job\"} is '${got:-missing}', $ECS/$role.json says $want"
done

# Every runbook_url anchor, and every #link inside the runbook, is a heading
# of docs/OPERATIONS.md (anchors as GitHub makes them; code blocks skipped).
if [ -f docs/OPERATIONS.md ]; then
  anchors=$(awk '/^```/ { code = !code; next } !code && /^#{1,6} / { sub(/^#+ /, ""); print }' docs/OPERATIONS.md |
    tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9 _-]//g; s/ /-/g')
  while read -r anchor; do
    grep -qxF "$anchor" <<<"$anchors" || fail "$PROM/alerts.yml: runbook anchor #$anchor has no heading in docs/OPERATIONS.md"
  done < <(grep -o 'OPERATIONS\.md#[a-z0-9_-]*' "$PROM/alerts.yml" | cut -d'#' -f2 | sort -u)
  while read -r anchor; do
    grep -qxF "$anchor" <<<"$anchors" || fail "docs/OPERATIONS.md: link to #$anchor, which is no heading"
  done < <(grep -o '](#[a-z0-9_-]*)' docs/OPERATIONS.md | sed 's/^](#//; s/)$//' | sort -u)
else
  fail "docs/OPERATIONS.md is missing (the alerts' runbook)"
fi
check_alert_fields() {
  # Every alert has for, severity, summary, description and runbook_url.
  awk '
    function done() {
      if (name != "") {
        if (!f || !s || !su || !d || !r) { printf "%s lacks%s%s%s%s%s\n", name, f ? "" : " for", s ? "" : " severity", su ? "" : " summary", d ? "" : " description", r ? "" : " runbook_url" }
      }
    }
    /^ *- (alert|record):/ { done(); name = ($2 == "alert:") ? $3 : ""; f = s = su = d = r = 0; next }
    /^ *for:/ { f = 1 } /^ *severity:/ { s = 1 } /^ *summary:/ { su = 1 } /^ *description:/ { d = 1 } /^ *runbook_url:/ { r = 1 }
    END { done() }
  ' "$PROM/alerts.yml"
}
missing_fields=$(check_alert_fields)
[ -z "$missing_fields" ] || fail "$PROM/alerts.yml: $missing_fields"

promtool_run() { # description, command...
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    log "ok: $what"
  else
    fail "$what"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  fi
}
promtool_run "promtool check rules $PROM/alerts.yml" promtool check rules "$PROM/alerts.yml"
promtool_run "promtool test rules $PROM/alerts_test.yml" promtool test rules "$PROM/alerts_test.yml"
promtool_run "promtool check config $PROM/prometheus.yml" promtool check config "$PROM/prometheus.yml"
promtool_run "promtool check config $ECS/cloudwatch-agent-prometheus.yml" \
  promtool check config "$ECS/cloudwatch-agent-prometheus.yml"

if [ "$failures" -gt 0 ]; then
  log "$failures check(s) failed"
  exit 1
fi
log "deploy/ is consistent: task definitions, services, autoscaling, alerts and their tests"
