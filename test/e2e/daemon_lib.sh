# Helpers for end-to-end scripts that run ocicached (source after lib.sh).
: "${OCICACHED_BIN:?built ocicached binary}"

# start_daemon NAME FLAGS...: starts ocicached on a free port; sets $NAME to
# 127.0.0.1:PORT, ${NAME}_HTTP to the HTTP cache endpoint's 127.0.0.1:PORT (a
# free port too, unless FLAGS say otherwise) and ${NAME}_PID. Output in
# $WORK/NAME.out, log in $WORK/NAME.err.
start_daemon() {
  local var=$1; shift
  rm -f "$WORK/$var.port" "$WORK/$var.hport"
  "$OCICACHED_BIN" --listen=127.0.0.1:0 --port_file="$WORK/$var.port" \
    --http_port_file="$WORK/$var.hport" --shutdown_grace=3s "$@" \
    >"$WORK/$var.out" 2>"$WORK/$var.err" &
  local pid=$!
  REG_PIDS+=("$pid")
  printf -v "${var}_PID" '%s' "$pid"
  for _ in $(seq 1 100); do
    [[ -s $WORK/$var.port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -s $WORK/$var.port ]] || { cat "$WORK/$var.err" >&2; return 1; }
  printf -v "$var" '127.0.0.1:%s' "$(cat "$WORK/$var.port")"
  printf -v "${var}_HTTP" '127.0.0.1:%s' "$(cat "$WORK/$var.hport" 2>/dev/null)"
}

# start_http NAME DIR [FLAGS]: start_daemon over $REPO with local tier DIR,
# failing unless the HTTP endpoint's ${NAME}_HTTP was set.
start_http() {
  local var=$1 dir=$2; shift 2
  start_daemon "$var" --repo="$REPO" --dir="$dir" "$@" || return 1
  local http=${var}_HTTP
  [[ ${!http} =~ ^127\.0\.0\.1:[0-9]+$ ]] || { echo "no HTTP port for $var" >&2; return 1; }
}

# http_status HOSTPORT PROTOCOL: "requests hits misses" of PROTOCOL (kv, bazel,
# turbo, nx) from the HTTP endpoint's GET /status; "unreadable ..." otherwise.
http_status() {
  curl -s --max-time 5 "http://$1/status" | python3 -c '
import json, sys
try:
    p = json.load(sys.stdin)["protocols"][sys.argv[1]]
    print(p["requests"], p["hits"], p["misses"])
except Exception as e:
    print("unreadable", e)' "$2"
}

# stop_daemon NAME: SIGTERM, then waits; returns its exit code.
stop_daemon() {
  local pid_var=${1}_PID
  kill -TERM "${!pid_var}" 2>/dev/null
  wait "${!pid_var}"
}

# metrics_url NAME: the metrics URL a daemon started with --metrics_listen logged.
metrics_url() {
  for _ in $(seq 1 50); do grep -q 'metrics on' "$WORK/$1.err" && break; sleep 0.1; done
  grep -o 'http://[^ ]*/metrics' "$WORK/$1.err" | head -1
}

# make_pki DIR: with the openssl command, a CA (ca.pem), a server certificate for
# 127.0.0.1 and localhost (server.pem, server-key.pem), a client certificate from
# the same CA (client.pem, client-key.pem), and a second CA (other-ca.pem) with a
# client certificate of its own (stranger.pem, stranger-key.pem). ECDSA P-256, 2 days.
make_pki() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d" || exit 1
    for ca in ca other-ca; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=ocicache e2e $ca" -keyout "$ca-key.pem" -out "$ca.pem" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || exit 1
    done
    leaf() {  # leaf NAME CA EXTENSIONS
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null &&
        printf '%s\n' "$3" >"$1.ext" &&
        openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial \
          -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    }
    leaf server ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth" &&
      leaf client ca "extendedKeyUsage=clientAuth" &&
      leaf stranger other-ca "extendedKeyUsage=clientAuth"
  )
}
